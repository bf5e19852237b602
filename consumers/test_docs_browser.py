"""/docs in a real browser: headless Chromium, every other host unreachable, renders
every operation of the contract."""

import re
import shutil
import subprocess
import tempfile
from typing import Any

import yaml
from conftest import SPEC_PATH

SPEC: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())


def test_docs_render_every_operation_offline(live_service: str) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium package is required (.ci/run installs it)"
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                # Only the service answers: any other host fails to resolve.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--virtual-time-budget=15000",
                "--dump-dom",
                f"{live_service}/docs",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
    rendered = set(re.findall(r'id="operations-[^"-]+-([A-Za-z]+)"', dom))
    documented = {
        op["operationId"]
        for item in SPEC["paths"].values()
        for method, op in item.items()
        if method != "parameters"
    }
    assert documented <= rendered, f"not rendered: {sorted(documented - rendered)}"
    assert "Todo Service API" in dom
