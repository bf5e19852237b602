"""/docs in a real browser: headless Chromium, every other host unreachable, renders
every operation of the contract."""

import re
import subprocess
import tempfile
from typing import Any

import yaml
from conftest import CHROMIUM_FLAGS, SPEC_PATH, chromium

SPEC: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())


def test_docs_render_every_operation_offline(live_service: str) -> None:
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [
                chromium(),
                "--headless",
                *CHROMIUM_FLAGS,
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
    # operations-{tag}-{operationId}: 2.0's tag is `todos-v2`, its ids snake_case.
    rendered = set(re.findall(r'id="operations-[^"]+-([A-Za-z_]+)"', dom))
    documented = {
        op["operationId"]
        for item in SPEC["paths"].values()
        for method, op in item.items()
        if method != "parameters"
    }
    assert documented <= rendered, f"not rendered: {sorted(documented - rendered)}"
    assert "Todo Service API" in dom
