"""The listener of every worker's metrics, run by `serve` on TODO_METRICS_PORT (the API's
port never serves them): at each scrape it reads the files the workers write to
PROMETHEUS_MULTIPROC_DIR (service/metrics.py) and sums them."""

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
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


def serve_metrics(directory: Path, host: str, port: int) -> None:
    """Listens on `port` from a thread of the calling process."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_LiveWorkers(directory))
    start_http_server(port, addr=host, registry=registry)
