"""Many implementations of the contract (tests/implementations.py) served at once from
one process tree: the service's code is imported once, then each instance is a forked
child that puts its defect in and serves its own port on its own database. A fork
costs milliseconds; a fresh `uvicorn` importing the service costs each instance about
a second and a half of CPU, and the kit's own tests serve dozens.

    python tests/fleet.py PORTS '[{"name": ..., "implementation": ..., "env": {...}}]'

Each instance's socket is bound (to a port the kernel picks) before the forks, and the
ports are written to the file PORTS as {name: port}: no port is chosen in one process
and bound in another, where something else could take it in between. SIGTERM stops
every instance. The pytest side is `Fleet`."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import environment
import httpx
from waits import until

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Instance:
    """One implementation, served on `port` with `env` (its database among it)."""

    implementation: str
    database_url: str
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Fleet:
    def __init__(self, log: Path, instances: dict[str, Instance]) -> None:
        self.log = log
        specs = [
            {
                "name": name,
                "implementation": i.implementation,
                # Small pools: dozens of instances share one PostgreSQL.
                "env": {"NEON_DATABASE_URL": i.database_url, "TODO_DB_POOL_SIZE": "4", **i.env},
            }
            for name, i in instances.items()
        ]
        ports_file = log.with_suffix(".ports")
        with log.open("w") as output:
            self.process = subprocess.Popen(
                [sys.executable, str(HERE / "fleet.py"), str(ports_file), json.dumps(specs)],
                cwd=HERE,
                env=environment.child(),
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        ports = self._ports(ports_file)
        self.instances = {
            name: Instance(i.implementation, i.database_url, i.env, ports[name])
            for name, i in instances.items()
        }
        self._wait_live()

    def _ports(self, path: Path, seconds: float = 60) -> dict[str, int]:
        until(lambda: self._running() and path.exists(), seconds, "the fleet to bind its ports")
        ports: dict[str, int] = json.loads(path.read_text())
        return ports

    def _wait_live(self, seconds: float = 60) -> None:
        waiting = set(self.instances)

        def live() -> bool:
            self._running()
            for name in sorted(waiting):
                try:
                    answer = httpx.get(f"{self.instances[name].base}/health/live", timeout=2)
                except httpx.TransportError:
                    continue
                if answer.status_code == 200:
                    waiting.discard(name)
            return not waiting

        until(live, seconds, "every instance of the fleet to be live")

    def _running(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()[-3000:]
        return True

    def __getitem__(self, name: str) -> Instance:
        return self.instances[name]

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)
        return self.log.read_text()


def _serve(spec: dict[str, Any], listening: socket.socket) -> None:
    import implementations
    import uvicorn

    os.environ.update(spec["env"])
    app = implementations.build(spec["implementation"])
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[listening])


def _listening() -> socket.socket:
    listening = socket.socket()
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listening.bind(("127.0.0.1", 0))
    listening.listen(512)
    return listening


def main() -> None:
    ports_file, specs = Path(sys.argv[1]), json.loads(sys.argv[2])
    # Everything an instance runs, imported before the forks share it.
    import implementations  # noqa: F401
    import uvicorn  # noqa: F401

    sockets = {spec["name"]: _listening() for spec in specs}
    written = ports_file.with_suffix(".tmp")
    written.write_text(json.dumps({name: s.getsockname()[1] for name, s in sockets.items()}))
    written.rename(ports_file)
    children = []
    for spec in specs:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            for name, other in sockets.items():
                if name != spec["name"]:
                    other.close()
            status = 0
            try:
                _serve(spec, sockets[spec["name"]])
            except BaseException:
                traceback.print_exc()
                status = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        children.append(pid)

    def stop(signum: int, frame: FrameType | None) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    for pid in children:
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
