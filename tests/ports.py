"""Ports for the servers the tests start. Taken below the kernel's ephemeral range, so
that no outgoing connection (the kit's runs open thousands) and no `bind` to port 0
can take one between the moment it is chosen and the moment its server listens; and
never the same one twice in a run."""

import random
import socket
import threading
from pathlib import Path

_EPHEMERAL_START = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
_given: set[int] = set()
_lock = threading.Lock()


def free_port() -> int:
    while True:
        port = random.randrange(10_000, _EPHEMERAL_START)
        with _lock:
            if port in _given:
                continue
            _given.add(port)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
