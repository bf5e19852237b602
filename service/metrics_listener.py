"""The listener of every worker's metrics, run by `serve` on TODO_METRICS_HOST and
TODO_METRICS_PORT (the API's port never serves them): at each scrape of `/metrics` (and
of nothing else) it reads the files the workers write to PROMETHEUS_MULTIPROC_DIR
(service/metrics.py) and sums them."""

import os
import socket
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector


class _LiveWorkers(Collector):
    """The workers' files, read at each scrape; a live gauge's file of a worker that
    has died is dropped first (uvicorn does not say when one does)."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._collector = MultiProcessCollector(None, str(directory))

    def collect(self) -> Iterable[Any]:
        for file in self._directory.glob("gauge_live*_*.db"):
            pid = int(file.stem.rsplit("_", 1)[1])
            if not _alive(pid):
                mark_process_dead(pid, str(self._directory))
        return self._collector.collect()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _metrics_only(metrics: WSGIApplication) -> WSGIApplication:
    def answer(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/metrics":
            return metrics(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"Not found: the metrics are at /metrics\n"]

    return answer


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """A scrape is not worth a line."""


def serve_metrics(directory: Path, host: str, port: int) -> None:
    """Listens on `host`:`port` from a thread of the calling process; OSError when it
    cannot."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_LiveWorkers(directory))
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]

    class Server(ThreadingWSGIServer):
        address_family = family

    server = make_server(
        str(address[0]), port, _metrics_only(make_wsgi_app(registry)), Server, _Quiet
    )
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
