"""A real Prometheus server (Debian's `prometheus` package, which `nox -s tests`
installs), scraping targets and evaluating its rules every second, asked through its
HTTP API."""

import shutil
import subprocess
from pathlib import Path
from typing import Any

import environment
import httpx
import pytest
import yaml
from ports import free_port
from waits import until


class PrometheusServer:
    def __init__(
        self,
        workdir: Path,
        targets: list[str],
        job: str = "todo",
        rule_files: tuple[Path, ...] = (),
        more_scrape_configs: tuple[dict[str, Any], ...] = (),
        alertmanagers: tuple[str, ...] = (),
    ) -> None:
        """`more_scrape_configs` beside the job scraping `targets`; `alertmanagers`
        (host:port) are sent the alerts."""
        program = shutil.which("prometheus")
        if program is None:
            pytest.fail("Debian's prometheus package is needed (nox -s tests installs it)")
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "prometheus.yml"
        every = {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
        scrape = {"job_name": job, "static_configs": [{"targets": targets}]}
        settings: dict[str, Any] = {
            "global": every,
            "rule_files": [str(path.resolve()) for path in rule_files],
            "scrape_configs": [scrape, *more_scrape_configs],
        }
        if alertmanagers:
            settings["alerting"] = {
                "alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]
            }
        config.write_text(yaml.safe_dump(settings))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._output = (workdir / "prometheus.log").open("w")
        self.process = subprocess.Popen(
            [
                program,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self._output,
            stderr=subprocess.STDOUT,
            env=environment.child(),
        )

        def ready() -> bool:
            assert self.process.poll() is None, (workdir / "prometheus.log").read_text()
            return self._ready()

        until(ready, 60, "prometheus to start", every=0.2)

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.base}/-/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """`promql`'s result now, or at the Unix time `at`."""
        params = {"query": promql, **({"time": str(at)} if at is not None else {})}
        answer = httpx.get(f"{self.base}/api/v1/query", params=params, timeout=10)
        answer.raise_for_status()
        found: list[dict[str, Any]] = answer.json()["data"]["result"]
        return found

    def rules(self) -> list[dict[str, Any]]:
        """Every rule loaded, with its health and last error."""
        answer = httpx.get(f"{self.base}/api/v1/rules", timeout=10)
        answer.raise_for_status()
        return [r for g in answer.json()["data"]["groups"] for r in g["rules"]]

    def __getstate__(self) -> dict[str, Any]:
        """What another process needs to ask it (a job's result, tests/kit_jobs.py): its
        address. Its process stays with the one that started it, which stops it."""
        return {"port": self.port, "base": self.base}

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self._output.close()
