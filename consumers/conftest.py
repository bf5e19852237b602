"""The consumers' harness: a live `todo-service serve` on its own embedded PostgreSQL,
reached over HTTP exactly as a frontend or a script would."""

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from waits import until  # tests/waits.py (pyproject.toml's pythonpath)

from service.embedded import free_port

REPO = Path(__file__).resolve().parent.parent
SPEC_PATH = REPO / "openapi.yaml"

# Headless Chromium as root on a machine whose network is closed: without the
# background-networking flags it keeps trying to reach Google's hosts.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Debian's chromium package is required (nox -s browser installs it)"
    return found


@pytest.fixture(scope="session")
def live_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("service")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "NEON_DATABASE_URL"}
    env["TODO_SHUTDOWN_GRACE_SECONDS"] = "0"  # no load balancer to drain for
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("todo-service")), "serve", "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert server.poll() is None, "todo-service serve exited"
        return httpx.get(f"{base}/health/ready").status_code == 200

    until(ready, 60, "todo-service serve to come up", ignoring=(httpx.TransportError,), every=0.2)
    try:
        yield base
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
