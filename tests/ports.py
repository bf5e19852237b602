"""Ports for the servers the tests start. Taken below the kernel's ephemeral range, so
that no outgoing connection (the kit's runs open thousands) and no `bind` to port 0
can take one between the moment it is chosen and the moment its server listens; and
never the same one twice in a run, in whichever of its processes (the pytest-xdist
workers, the kit's jobs) asked: they share one registry, a file in the run's directory
(tests/whole_run.py) written under a lock."""

import contextlib
import fcntl
import random
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import whole_run

_EPHEMERAL_START = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
_given: set[int] = set()
_lock = threading.Lock()


@contextlib.contextmanager
def _registry() -> Iterator[set[int]]:
    """The ports given so far in this run, every process's, held until the block ends."""
    directory = whole_run.directory()
    if directory is None:
        yield _given
        return
    with (directory / "ports").open("a+") as registry:
        fcntl.flock(registry, fcntl.LOCK_EX)
        registry.seek(0)
        given = {int(line) for line in registry.read().split()}
        before = set(given)
        yield given
        registry.writelines(f"{port}\n" for port in given - before)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with _lock, _registry() as given:
        while True:
            port = random.randrange(10_000, _EPHEMERAL_START)
            if port in given:
                continue
            given.add(port)
            if _bindable(port):
                return port
