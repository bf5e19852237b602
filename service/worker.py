"""What each `todo-service serve` worker runs: the app, listening at once, with the
schema brought up to date in the background (until then readiness and the API answer
503). The migrations run in a short-lived child process (`todo-service migrate`), so
Alembic is never loaded into the long-lived workers; a worker that finds the schema at
the newest revision already (a restart, the second worker) starts none: that child
costs a second of CPU and of start-up. A worker dies with its supervisor, and drains on
SIGTERM (service/draining.py)."""

import ctypes
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time

from fastapi import FastAPI

from service import draining, telemetry
from service.app import create_app
from service.db import Database
from service.logs import configure_logging
from service.migrations import newest
from service.settings import Settings, get_settings
from service.telemetry import Listener

log = logging.getLogger("service.worker")

_MAX_BACKOFF_SECONDS = 10.0
_PR_SET_PDEATHSIG = 1


def migrate_with_retry(database: Database) -> None:
    """A database that is still waking up (or not up yet) is waited for, with backoff.
    The child migrates the database this process is configured for (its environment is
    this process's)."""
    delay = 0.5
    while True:
        done = subprocess.run([sys.executable, "-m", "service", "migrate"], check=False)
        if done.returncode == 0:
            return
        database.schema_unreachable()
        log.warning("database not reachable for migrations, retrying", extra={"retry_in_s": delay})
        time.sleep(delay)
        delay = min(delay * 2, _MAX_BACKOFF_SECONDS)


def _reuse_freed_buffers() -> None:
    """A list's answer is a few hundred kilobytes, made fresh at every request. glibc
    maps buffers that large with mmap and gives them back when freed, so every request
    faulted its pages in anew (bench/results/findings.md, "List buffers kept on the
    heap"). Kept on the heap instead, and reused (at most 8 MB held free). Elsewhere
    than glibc, nothing to do."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        m_trim_threshold, m_mmap_threshold = -1, -3
        mallopt(m_mmap_threshold, 1 << 20)
        mallopt(m_trim_threshold, 8 << 20)


def _die_with_the_supervisor() -> None:
    """A worker of `serve --workers N` is killed when its supervisor dies, however it
    dies (kill -9 included): nothing else would restart, drain or scrape it, and it
    would keep the port from the supervisor's restart. Killed, not stopped: a drain
    would keep it accepting for the grace. Linux's parent-death signal; elsewhere, and
    for `serve` without workers (the supervisor serves itself), nothing."""
    supervisor = multiprocessing.parent_process()
    prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)
    if supervisor is None or prctl is None or not sys.platform.startswith("linux"):
        return
    if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning("no parent-death signal", extra={"errno": ctypes.get_errno()})
        return
    if os.getppid() != supervisor.pid:  # it died before the signal was asked for
        os.kill(os.getpid(), signal.SIGKILL)


def _listen(settings: Settings) -> None:
    """Metrics and traces, each only when asked for: off, their libraries are never
    imported."""
    listeners: list[Listener] = []
    if settings.metrics_port is not None or settings.tracing:
        from service.store.named import names

        named = names()
    if settings.metrics_port is not None:
        from service.metrics import Metrics

        listeners.append(Metrics(named))
    if settings.tracing:
        from service.tracing import Tracing

        listeners.append(Tracing(named))
    if listeners:
        telemetry.listen(*listeners)


def build_app() -> FastAPI:
    """The factory each uvicorn worker calls."""
    _die_with_the_supervisor()
    _reuse_freed_buffers()
    settings = get_settings()
    configure_logging(settings.log_level)
    draining.drain_on_sigterm(settings.shutdown_grace_seconds)
    _listen(settings)
    assert settings.database_url, "serve sets NEON_DATABASE_URL before starting workers"
    database = Database(settings, schema_ready=False)

    def migrate_then_open() -> None:
        if database.schema_is_at(newest()):
            log.info("schema is at the newest version already")
        else:
            migrate_with_retry(database)
        database.schema_is_ready()

    threading.Thread(target=migrate_then_open, name="migrations", daemon=True).start()
    return create_app(settings, database)
