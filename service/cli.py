"""`todo-service serve | migrate | db-url | mcp`. Owns the embedded PostgreSQL's life when
NEON_DATABASE_URL is unset: started before serving, stopped on exit or SIGTERM.

`serve` is the supervisor of the workers (service.worker) and idles for the service's
whole life, so it loads only what supervising needs: the settings are validated in a
forked child that exits (pydantic is heavy: bench/results/findings.md), the embedded
PostgreSQL's code only when it is used, and the application never."""

import argparse
import ipaddress
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import uvicorn

from service.logs import configure_logging

log = logging.getLogger("service.cli")


@dataclass(frozen=True)
class Supervision:
    """The settings `serve` and `migrate` use themselves."""

    database_url: str | None
    direct_database_url: str | None
    data_dir: Path
    log_level: str
    metrics_port: int | None
    metrics_host: str | None
    tracing: bool
    header_mode: bool
    # TODO_AUTH_MODE was set, not defaulted.
    auth_mode_said: bool


def _validated() -> Supervision | list[str]:
    """Every setting validated, and every TODO_* variable known; what the supervisor
    uses, or what is wrong."""
    from pydantic import ValidationError

    from service.settings import Settings, settings_problems, unknown_variables

    problems = unknown_variables(os.environ)
    try:
        settings = Settings()
    except ValidationError as invalid:
        return problems + settings_problems(invalid)
    if problems:
        return problems
    return Supervision(
        settings.database_url,
        settings.direct_database_url,
        settings.data_dir,
        settings.log_level,
        settings.metrics_port,
        settings.metrics_host,
        settings.tracing,
        settings.auth_mode == "header",
        settings.auth_mode_said,
    )


def _settings() -> Supervision:
    """Refuses to start on a bad setting, saying which variable is wrong and never what
    it holds."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as child:
        found = child.submit(_validated).result()
    if isinstance(found, list):
        for problem in found:
            print(f"todo-service: {problem}", file=sys.stderr)
        sys.exit(2)
    return found


def loopback(host: str) -> bool:
    """Whether `host` is this machine's alone: every address it names is a loopback one."""
    try:
        found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return False
    return all(ipaddress.ip_address(str(address[4][0])).is_loopback for address in found)


def _header_mode_said(settings: Supervision, host: str) -> None:
    """Header mode believes whatever X-User-ID a caller sends: beyond loopback it is
    served only when asked for by name, and says so first."""
    if not settings.header_mode or loopback(host):
        return
    if not settings.auth_mode_said:
        print(
            f"todo-service: --host {host} serves beyond this machine in header mode, where"
            " any caller acts as any user: set TODO_AUTH_MODE=jwt, or TODO_AUTH_MODE=header"
            " to serve unverified callers anyway",
            file=sys.stderr,
        )
        sys.exit(2)
    print(
        f"todo-service: header mode on {host}: callers are not verified; any caller acts"
        " as the user its X-User-ID names",
        file=sys.stderr,
        flush=True,
    )


@contextmanager
def database_url(settings: Supervision) -> Iterator[str]:
    """NEON_DATABASE_URL when set; otherwise an embedded PostgreSQL for as long as the
    block runs."""
    if settings.database_url:
        yield settings.database_url
        return
    from service.embedded import EmbeddedPostgres

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


@contextmanager
def shared_with_workers(settings: Supervision) -> Iterator[Path | None]:
    """With metrics or traces on, a temporary directory the workers share for as long as
    the block runs (TODO_RUN_DIR, set for them): the metrics' files, and when the trace
    exporter last logged. Removed however the block ends, a failed start included."""
    if settings.metrics_port is None and not settings.tracing:
        yield None
        return
    directory = Path(tempfile.mkdtemp(prefix="todo-service-"))
    os.environ["TODO_RUN_DIR"] = str(directory)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def metrics_listener(
    settings: Supervision, shared: Path | None, host: str, api_port: int
) -> Iterator[None]:
    """With TODO_METRICS_PORT, every worker's metrics served on that port (and
    TODO_METRICS_HOST, or the API's host) for as long as the block runs: the workers
    write them to files in PROMETHEUS_MULTIPROC_DIR (or the shared directory), wiped
    first, which this listener reads at each scrape."""
    if settings.metrics_port is None or shared is None:
        yield
        return
    host = settings.metrics_host or host
    if settings.metrics_port == api_port:
        print("todo-service: TODO_METRICS_PORT must not be the API's port", file=sys.stderr)
        sys.exit(2)
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    directory = Path(given) if given else shared / "metrics"
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    # Before prometheus-client is imported here or in a worker: it reads it then.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    from service.metrics_listener import serve_metrics

    try:
        serve_metrics(directory, host, settings.metrics_port)
    except OSError as error:
        print(
            f"todo-service: TODO_METRICS_HOST and TODO_METRICS_PORT ({host}:"
            f"{settings.metrics_port}): {error.strerror or error}",
            file=sys.stderr,
        )
        sys.exit(2)
    log.info("metrics served", extra={"host": host, "port": settings.metrics_port})
    yield


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # uvicorn re-raises SIGTERM after its graceful shutdown; exiting through
    # SystemExit lets the `finally` blocks stop the embedded PostgreSQL.
    raise SystemExit(0)


def serve(settings: Supervision, host: str, port: int, workers: int) -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with (
        shared_with_workers(settings) as shared,
        metrics_listener(settings, shared, host, port),
        database_url(settings) as url,
    ):
        os.environ["NEON_DATABASE_URL"] = url
        uvicorn.run(
            "service.worker:build_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_config=None,
            access_log=False,
            ws="none",
            timeout_graceful_shutdown=10,
        )


def migrate(settings: Supervision) -> None:
    from service import migrations
    from service.db import direct_url

    with database_url(settings) as url:
        try:
            migrations.upgrade(settings.direct_database_url or direct_url(url))
        except Exception as error:
            # Said without a traceback: its text may name the host (never a password).
            log.error("migrations failed", extra={"error": type(error).__name__})
            sys.exit(1)
        log.info("schema is at the newest version")


def db_url(settings: Supervision) -> None:
    """The URL of the database `serve` uses, for a second process to share it:
    NEON_DATABASE_URL, or the embedded PostgreSQL's in TODO_DATA_DIR (running or not)."""
    if settings.database_url:
        print(settings.database_url)
        return
    from service.embedded import EmbeddedPostgres

    url = EmbeddedPostgres(settings.data_dir).known_url()
    if url is None:
        print(
            f"todo-service: no embedded PostgreSQL in {settings.data_dir.resolve()} yet:"
            " `todo-service serve` makes one",
            file=sys.stderr,
        )
        sys.exit(1)
    print(url)


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
    commands.add_parser(
        "db-url", help="print the URL of the database serve uses (the embedded one when unset)"
    )
    mcp_parser = commands.add_parser(
        "mcp",
        help="serve the API's operations as MCP tools over stdio, as a client of a deployment"
        " (acting as TODO_MCP_TOKEN's user, or TODO_MCP_USER_ID's in header mode)",
    )
    mcp_parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    args = parser.parse_args(argv)
    if args.command == "mcp":
        # A client of the API, anywhere: none of the service's own settings apply.
        from service.mcp import stdio

        stdio.run(args.base_url)
        return

    settings = _settings()
    if args.command == "serve":
        _header_mode_said(settings, args.host)
    configure_logging(settings.log_level)
    try:
        if args.command == "serve":
            serve(settings, args.host, args.port, args.workers)
        elif args.command == "db-url":
            db_url(settings)
        else:
            migrate(settings)
    except KeyboardInterrupt:
        sys.exit(130)
