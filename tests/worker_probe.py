"""A worker as `todo-service serve` runs one, in a process of its own: which of the given
libraries it has imported after serving a few requests (an option that is off imports
nothing of its own)."""

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

_WORKER = """
import json, os, sys, time
import uvicorn
from starlette.testclient import TestClient

config = uvicorn.Config("service.worker:build_app", factory=True)
config.load()
with TestClient(config.loaded_app) as client:
    deadline = time.monotonic() + 60
    while client.get("/health/ready").status_code != 200:
        assert time.monotonic() < deadline, "not ready"
        time.sleep(0.2)
    user = {"X-User-ID": "5f0c1e1e-8a55-4c1e-9a0e-2f1b5d9c7a10"}
    created = client.post("/api/v1/todos", json={"title": "t"}, headers=user)
    assert created.status_code == 201, created.text
    assert client.get("/api/v1/todos", headers=user).status_code == 200
libraries = json.loads(os.environ["PROBED_LIBRARIES"])
print(json.dumps([name for name in libraries if name in sys.modules]))
"""


def loaded_by_a_worker(url: str, cwd: Path, libraries: Sequence[str], **env: str) -> list[str]:
    quiet = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "TODO_", "PROMETHEUS_")) and k != "NEON_DATABASE_URL"
    }
    done = subprocess.run(
        [sys.executable, "-c", _WORKER],
        env={**quiet, "NEON_DATABASE_URL": url, "PROBED_LIBRARIES": json.dumps(libraries), **env},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded
