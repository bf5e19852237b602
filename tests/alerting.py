"""What an alert travels through after Prometheus: a real Alertmanager (Debian's
`prometheus-alertmanager`) with deploy/'s routing tree, a real blackbox exporter
(`prometheus-blackbox-exporter`) with deploy/'s probe, and a webhook that records what
reaches it, as a pager's would."""

import json
import re
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import one_off
import pytest
import yaml
from conftest import read_yaml
from ports import free_port


def heading_anchors(page: Path) -> set[str]:
    """The anchors of a Markdown page's headings, as GitHub and remark make them: where
    an alert's runbook_url may point."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


class Webhook:
    """An HTTP server taking Alertmanager's webhook posts: each kept with the
    monotonic time it arrived."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict[str, Any]]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((time.monotonic(), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test says what arrived."""

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def alerts(self) -> list[tuple[float, str, dict[str, Any]]]:
        """Every firing alert that arrived: when, the receiver it was routed to, the alert."""
        return [
            (at, post["receiver"], alert)
            for at, post in list(self.received)
            for alert in post["alerts"]
            if alert["status"] == "firing"
        ]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Process:
    """A program of a Debian package, serving on a free port until stopped."""

    def __init__(self, workdir: Path, program: str, package: str, arguments: list[str]) -> None:
        found = shutil.which(program)
        if found is None:
            pytest.fail(f"Debian's {package} package is needed (nox -s alerts installs it)")
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._log = workdir / f"{program}.log"
        self._output = self._log.open("w")
        self.process = subprocess.Popen(
            [found, *arguments, f"--web.listen-address={self.address}"],
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{program} did not start: {self._log.read_text()}")
            time.sleep(0.2)

    def _ready(self) -> bool:
        try:
            return one_off.get(f"http://{self.address}/-/healthy", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self._output.close()


def to_webhook(shipped: Path, url: str) -> dict[str, Any]:
    """The shipped Alertmanager configuration, its routes and inhibitions as they are,
    each receiver delivering to `url` instead (the webhook's post names the receiver)."""
    config: dict[str, Any] = read_yaml(shipped)
    config["receivers"] = [
        {"name": receiver["name"], "webhook_configs": [{"url": url, "send_resolved": False}]}
        for receiver in config["receivers"]
    ]
    return config


class Alertmanager(_Process):
    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "alertmanager.yml").write_text(yaml.safe_dump(config))
        super().__init__(
            workdir,
            "prometheus-alertmanager",
            "prometheus-alertmanager",
            [
                f"--config.file={workdir / 'alertmanager.yml'}",
                f"--storage.path={workdir / 'data'}",
                # One instance: no gossip, and no fixed cluster port taken.
                "--cluster.listen-address=",
            ],
        )


class Blackbox(_Process):
    def __init__(self, workdir: Path, config: Path) -> None:
        super().__init__(
            workdir,
            "prometheus-blackbox-exporter",
            "prometheus-blackbox-exporter",
            [f"--config.file={config}"],
        )
