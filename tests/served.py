"""`todo-service serve` as a real process: started, waited for, stopped with SIGTERM,
its output kept in a file (a pipe could fill and stall a busy server) and handed to
the run's log scan."""

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import environment
import httpx
import pytest
from ports import free_port
from run_logs import RunLogs
from waits import until

EXECUTABLE = Path(sys.executable).with_name("todo-service")


class ServedService:
    def __init__(
        self,
        workdir: Path,
        logs: RunLogs,
        database_url: str | None = None,
        workers: int = 1,
        extra_env: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
    ) -> None:
        self.workdir = workdir
        self.database_url = database_url
        self.port = port or free_port()
        self.base = f"http://{host}:{self.port}"
        metrics_port = (extra_env or {}).get("TODO_METRICS_PORT")
        metrics_host = (extra_env or {}).get("TODO_METRICS_HOST") or host
        self.metrics_url = f"http://{metrics_host}:{metrics_port}/metrics" if metrics_port else None
        self.output_path = workdir / f"serve-{self.port}.log"
        self._logs = logs
        self._stopped = False
        # Stopped at once, unless a test drains: nothing balances load here.
        env = environment.child(
            NEON_DATABASE_URL=database_url,
            **{"TODO_SHUTDOWN_GRACE_SECONDS": "0", **(extra_env or {})},
        )
        workdir.mkdir(parents=True, exist_ok=True)
        logs.follow(f"serve on port {self.port}", self.output_path)
        with self.output_path.open("w") as output:
            self.process = subprocess.Popen(
                [
                    *(str(EXECUTABLE), "serve", "--host", host, "--port", str(self.port)),
                    *("--workers", str(workers)),
                ],
                cwd=workdir,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                text=True,
            )

    @property
    def output(self) -> str:
        return self.output_path.read_text()

    def ready_status(self) -> int | None:
        """/health/ready's status, or None while nothing listens."""
        try:
            return httpx.get(f"{self.base}/health/ready", timeout=2).status_code
        except httpx.TransportError:
            return None

    def wait_ready(self, seconds: float = 60, in_a_row: int = 1) -> None:
        """Until readiness answers 200 `in_a_row` times on fresh connections: with
        several workers, each migrates before it is ready, and which one accepts a
        connection is the kernel's choice."""
        ready = 0

        def answered() -> bool:
            nonlocal ready
            ready = ready + 1 if self.ready_status() == 200 else 0
            assert ready or self.process.poll() is None, self.output
            return ready >= in_a_row

        try:
            until(answered, seconds, "serve to be ready", every=0.1)
        except AssertionError as late:
            pytest.fail(f"{late}:\n{self.output[-3000:]}")

    def stop(self, seconds: float = 30) -> str:
        """SIGTERM, then the whole output; bounded, so a stuck server fails the test."""
        if self._stopped:
            return self.output
        self._stopped = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"serve did not stop within {seconds} s of SIGTERM")
        finally:
            password_file = self.workdir / ".todo-service" / "password"
            if password_file.exists():
                self._logs.secret(password_file.read_text().strip())
        return self.output


# The `serve` fixture: starts one (arguments as ServedService's, bar the logs).
Serve = Callable[..., ServedService]
