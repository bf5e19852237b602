"""The engine and its pool, the one transaction scope, and outages turned into 503."""

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy
from sqlalchemy import exc, text
from sqlalchemy.engine import Connection, Engine

from service.errors import ServiceUnavailable
from service.settings import Settings

_DRIVER_SCHEME = "postgresql+psycopg2"
_SET_STATEMENT_TIMEOUT = text("SELECT set_config('statement_timeout', :ms, true)")


def sqlalchemy_url(url: str) -> str:
    """Accept Neon's `postgres://` and `postgresql://` URLs, keeping every query option
    (sslmode, channel_binding, ...) for libpq."""
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql", _DRIVER_SCHEME}:
        raise ValueError("the database URL must start with postgres:// or postgresql://")
    return urlunsplit(parts._replace(scheme=_DRIVER_SCHEME))


def direct_url(url: str) -> str:
    """Neon's pooled host `ep-x-pooler.region...` has a direct twin without `-pooler`;
    migrations take session-level catalogue locks and belong on the direct host."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if "-pooler" not in host:
        return url
    return urlunsplit(
        parts._replace(netloc=parts.netloc.replace(host, host.replace("-pooler", "")))
    )


def create_engine(url: str, settings: Settings) -> Engine:
    return sqlalchemy.create_engine(
        sqlalchemy_url(url),
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout,
        pool_recycle=settings.pool_recycle,
        # A restarted or scaled-to-zero database leaves dead sockets in the pool;
        # the ping finds them before a request does.
        pool_pre_ping=True,
        connect_args={
            "connect_timeout": settings.connect_timeout,
            "application_name": "todo-service",
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        },
    )


class Database:
    """The engine plus the service's only way to open a transaction."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self._timeout_ms = str(settings.statement_timeout_ms)
        self._retry_after = settings.retry_after_seconds

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                # Transaction-scoped, so it is safe behind a transaction pooler.
                conn.execute(_SET_STATEMENT_TIMEOUT, {"ms": self._timeout_ms})
                yield conn
        except (exc.OperationalError, exc.InterfaceError, exc.TimeoutError) as error:
            raise self.unavailable() from error
        except exc.DBAPIError as error:
            if error.connection_invalidated:
                raise self.unavailable() from error
            raise

    def ping(self) -> None:
        with self.transaction() as conn:
            conn.execute(text("SELECT 1"))

    def unavailable(self) -> ServiceUnavailable:
        return ServiceUnavailable(
            "The database is unreachable right now; retry shortly.",
            retry_after=self._retry_after,
        )

    def dispose(self) -> None:
        self.engine.dispose()
