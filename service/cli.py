"""`todo-service serve | migrate`. Owns the embedded PostgreSQL's life when
NEON_DATABASE_URL is unset: started before serving, stopped on exit or SIGTERM."""

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

import uvicorn
from fastapi import FastAPI

from service import migrations
from service.app import create_app
from service.db import direct_url
from service.embedded import EmbeddedPostgres
from service.logs import configure_logging
from service.settings import Settings, get_settings

log = logging.getLogger("service.cli")

_MAX_BACKOFF_SECONDS = 10.0


def build_app() -> FastAPI:
    """The factory each uvicorn worker calls."""
    settings = get_settings()
    configure_logging(settings.log_level)
    return create_app(settings)


@contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """NEON_DATABASE_URL when set; otherwise an embedded PostgreSQL for as long as the
    block runs."""
    if settings.database_url:
        yield settings.database_url
        return
    embedded = EmbeddedPostgres(settings.data_dir)
    url = embedded.start()
    log.info(
        "NEON_DATABASE_URL is unset: using the embedded PostgreSQL",
        extra={"data_dir": str(embedded.pgdata), "url": url, "log": str(embedded.logfile)},
    )
    print(f"todo-service: embedded PostgreSQL at {url}, data in {embedded.pgdata}", flush=True)
    try:
        yield url
    finally:
        embedded.stop()
        log.info("embedded PostgreSQL stopped", extra={"data_dir": str(embedded.pgdata)})


def migrate_with_retry(url: str) -> None:
    """A database that is still waking up (or not up yet) is waited for, with backoff."""
    delay = 0.5
    while True:
        try:
            migrations.upgrade(url)
            log.info("schema is at the newest version")
            return
        except Exception as error:
            log.warning(
                "database not reachable for migrations, retrying",
                extra={"error": type(error).__name__, "retry_in_s": delay},
            )
            time.sleep(delay)
            delay = min(delay * 2, _MAX_BACKOFF_SECONDS)


def _migration_url(settings: Settings, url: str) -> str:
    return settings.direct_database_url or direct_url(url)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # uvicorn re-raises SIGTERM after its graceful shutdown; exiting through
    # SystemExit lets the `finally` blocks stop the embedded PostgreSQL.
    raise SystemExit(0)


def serve(settings: Settings, host: str, port: int, workers: int) -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with database_url(settings) as url:
        migrate_with_retry(_migration_url(settings, url))
        os.environ["NEON_DATABASE_URL"] = url
        get_settings.cache_clear()
        uvicorn.run(
            "service.cli:build_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=10,
        )


def migrate(settings: Settings) -> None:
    with database_url(settings) as url:
        migrations.upgrade(_migration_url(settings, url))
        log.info("schema is at the newest version")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="todo-service", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="migrate, then serve the API")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8000)
    serve_parser.add_argument("--workers", type=int, default=1)
    commands.add_parser("migrate", help="migrate the schema to the newest version")
    args = parser.parse_args(argv)

    settings = get_settings()
    configure_logging(settings.log_level)
    try:
        if args.command == "serve":
            serve(settings, args.host, args.port, args.workers)
        else:
            migrate(settings)
    except KeyboardInterrupt:
        sys.exit(130)
