"""`todo-service serve | migrate`. Owns the embedded PostgreSQL's life when
NEON_DATABASE_URL is unset: started before serving, stopped on exit or SIGTERM."""

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from service import migrations
from service.app import create_app
from service.db import Database, create_engine, direct_url
from service.embedded import EmbeddedPostgres
from service.logs import configure_logging
from service.settings import Settings, get_settings, settings_problems

log = logging.getLogger("service.cli")

_MAX_BACKOFF_SECONDS = 10.0


def build_app() -> FastAPI:
    """The factory each uvicorn worker calls. It listens at once; the schema is brought
    up to date in the background, and until then readiness and the API answer 503."""
    settings = get_settings()
    configure_logging(settings.log_level)
    assert settings.database_url, "serve sets NEON_DATABASE_URL before starting workers"
    database = Database(
        create_engine(settings.database_url, settings), settings, schema_ready=False
    )
    migration_url = _migration_url(settings, settings.database_url)

    def migrate_then_open() -> None:
        migrate_with_retry(migration_url)
        database.schema_is_ready()

    threading.Thread(target=migrate_then_open, name="migrations", daemon=True).start()
    return create_app(settings, database)


@contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """NEON_DATABASE_URL when set; otherwise an embedded PostgreSQL for as long as the
    block runs."""
    if settings.database_url:
        yield settings.database_url
        return
    embedded = EmbeddedPostgres(settings.data_dir)
    url = embedded.start()
    # The URL carries the password: it is never logged or printed.
    log.info(
        "NEON_DATABASE_URL is unset: using the embedded PostgreSQL",
        extra={"port": embedded.port, "data_dir": str(embedded.pgdata)},
    )
    print(
        f"todo-service: embedded PostgreSQL on 127.0.0.1:{embedded.port}, data in "
        f"{embedded.pgdata} (password in {embedded.password_file})",
        flush=True,
    )
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
    serve_parser = commands.add_parser(
        "serve", help="serve the API, migrating the schema as soon as the database answers"
    )
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8000)
    serve_parser.add_argument("--workers", type=int, default=1)
    commands.add_parser("migrate", help="migrate the schema to the newest version")
    args = parser.parse_args(argv)

    try:
        settings = get_settings()
    except ValidationError as invalid:
        # Refuse to start, saying which variable is wrong and never what it holds.
        for problem in settings_problems(invalid):
            print(f"todo-service: {problem}", file=sys.stderr)
        sys.exit(2)
    configure_logging(settings.log_level)
    try:
        if args.command == "serve":
            serve(settings, args.host, args.port, args.workers)
        else:
            migrate(settings)
    except KeyboardInterrupt:
        sys.exit(130)
