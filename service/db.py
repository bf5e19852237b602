"""The engine and its pool, the one place statements reach PostgreSQL, and outages
turned into 503."""

import asyncio
import functools
import select
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import sqlalchemy
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine

from service.errors import ServiceUnavailable
from service.pool import AsyncPool, PoolTimeout
from service.settings import Settings

_DRIVER_SCHEME = "postgresql+psycopg2"

# The role requests run as (made by migration 0002): it owns nothing and cannot bypass
# the row-level policies.
REQUEST_ROLE = "todo_app"

# Sent in the same query string as the statement it guards. PostgreSQL runs a
# multi-statement simple query as one implicit transaction, so these transaction-local
# settings bind exactly that statement: one round trip, nothing left behind on the
# connection, and safe behind a transaction pooler. TimeZone is pinned so that the
# JSON PostgreSQL writes spells every timestamp with the explicit offset +00:00.
_REQUEST_CONTEXT = (
    f"SELECT set_config('role', '{REQUEST_ROLE}', true),"
    " set_config('app.user_id', %(_request_user)s, true),"
    " set_config('statement_timeout', %(_request_timeout)s, true),"
    " set_config('TimeZone', 'UTC', true);\n"
)
_SCOPE = "request_scope"
_CURSOR_KEY = "SELECT secret FROM signing_keys WHERE purpose = 'cursor'"

# What an unreachable, restarting or overloaded database raises: wrapped by SQLAlchemy on
# a Connection, unwrapped from the pool and the driver.
_OUTAGES = (
    exc.OperationalError,
    exc.InterfaceError,
    exc.TimeoutError,  # the pool's: no connection free within pool_timeout
    exc.DisconnectionError,
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    PoolTimeout,  # the hot path's pool: no connection free within pool_timeout
    TimeoutError,  # its connect timeout
)

T = TypeVar("T")


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


def _refuse_closed_connections(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    # An idle, healthy connection has nothing to read. One the server dropped (restart,
    # pg_terminate_backend, a scaled-to-zero compute) has an error message or EOF
    # waiting. Looking costs no round trip, where a ping would cost one per request;
    # the pool replaces the connection and retries the checkout.
    if dbapi_connection.closed or select.select([dbapi_connection], [], [], 0)[0]:
        raise exc.DisconnectionError("the server closed this pooled connection")


def _connect_args(settings: Settings) -> dict[str, Any]:
    return {
        "connect_timeout": settings.connect_timeout,
        "application_name": "todo-service",
        # A peer that vanished without closing (a network partition) turns the socket
        # readable within ~25 s, so the checkout test finds it too.
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
    }


def create_engine(url: str, settings: Settings) -> Engine:
    engine = sqlalchemy.create_engine(
        sqlalchemy_url(url),
        # Each statement is its own implicit transaction (see _REQUEST_CONTEXT); no
        # BEGIN or COMMIT round trips.
        isolation_level="AUTOCOMMIT",
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout,
        pool_recycle=settings.pool_recycle,
        # Autocommit leaves no transaction open to roll back when a connection returns.
        pool_reset_on_return=None,
        connect_args=_connect_args(settings),
    )
    event.listen(engine, "checkout", _refuse_closed_connections)
    return engine


def _roll_back(conn: Connection) -> None:
    """Ends a transaction left open, straight on the driver: the request context cannot
    run in an aborted transaction, and the pool does not roll back on return (autocommit
    never needs it). A connection that cannot is discarded, never reused mid-transaction."""
    try:
        with conn.connection.driver_connection.cursor() as cursor:  # type: ignore[union-attr]
            cursor.execute("ROLLBACK")
    except Exception:
        conn.invalidate()


class Database:
    """The service's only ways to reach PostgreSQL: `fetch` (one statement on the event
    loop, the hot path, through psycopg2's asynchronous connections) and, on the
    engine's pool in a worker thread, `scope` (a connection, for streams and checks)."""

    def __init__(self, engine: Engine, settings: Settings, *, schema_ready: bool = True) -> None:
        self.engine = engine
        self._pool = AsyncPool(
            engine.url.set(drivername="postgresql").render_as_string(hide_password=False),
            size=settings.pool_size + settings.max_overflow,
            timeout=settings.pool_timeout,
            recycle=settings.pool_recycle,
            connect_timeout=settings.connect_timeout,
            connect_args=_connect_args(settings),
        )
        # Called with every statement sent in a request context (the SQL audit's hook).
        self.observers: list[Callable[[str], None]] = []
        self._capacity = settings.pool_size + settings.max_overflow
        self._pool_timeout = settings.pool_timeout
        # Per event loop (a uvicorn worker has one): who may hold a connection now.
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]
        self._gates = weakref.WeakKeyDictionary()
        # More threads than connections: a test client runs each request on an event
        # loop of its own, where the gate cannot queue them, and they must still reach
        # the pool's own timeout rather than wait here.
        self._threads = ThreadPoolExecutor(
            max_workers=2 * self._capacity + 8, thread_name_prefix="db"
        )
        self._timeout_ms = str(settings.statement_timeout_ms)
        self._retry_after = settings.retry_after_seconds
        self._cursor_key: bytes | None = None
        self._schema_ready = threading.Event()
        if schema_ready:
            self._schema_ready.set()
        event.listen(engine, "before_cursor_execute", self._in_request_context, retval=True)

    def _in_request_context(
        self,
        conn: Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> tuple[str, Any]:
        user = None if context is None else context.execution_options.get(_SCOPE)
        if user is None:
            return statement, parameters
        if executemany:
            raise exc.ArgumentError("a request scope runs one statement at a time")
        return self.request_sql(user, statement, parameters or {})

    def request_sql(
        self, user: str, statement: str, parameters: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """What is sent for `statement`: the request context first, in one string."""
        for observe in self.observers:
            observe(statement)
        context = {"_request_user": user, "_request_timeout": self._timeout_ms}
        return _REQUEST_CONTEXT + statement, {**parameters, **context}

    async def fetch(
        self, user: uuid.UUID | None, statement: str, parameters: dict[str, Any]
    ) -> list[tuple[Any, ...]]:
        """The hot path: one statement as the request role for `user` (None: a caller
        who owns no rows), its rows fetched, in one round trip, awaited on the event
        loop."""
        sql, values = self.request_sql("" if user is None else str(user), statement, parameters)
        with self._outages_as_503():
            return await self._pool.fetch(sql, values)

    @contextmanager
    def scope(self, user: uuid.UUID | None) -> Iterator[Connection]:
        """A pooled connection on which every statement runs atomically (its own
        transaction) as the request role, under the statement timeout, with `user` as
        the row-level policies' caller; None is a caller who owns no rows. Outages
        become ServiceUnavailable."""
        with self._outages_as_503(), self.engine.connect() as conn:
            # An option of this checkout only: it leaves with the connection.
            conn.execution_options(**{_SCOPE: "" if user is None else str(user)})
            yield conn

    @contextmanager
    def _outages_as_503(self) -> Iterator[None]:
        """The one place an outage (or a schema not yet migrated) becomes a 503."""
        if not self._schema_ready.is_set():
            raise self.unavailable()
        try:
            yield
        except _OUTAGES as error:
            raise self.unavailable() from error
        except exc.DBAPIError as error:
            if error.connection_invalidated:
                raise self.unavailable() from error
            raise

    async def call(self, work: Callable[..., T], *args: Any) -> T:
        """Runs blocking database work on a worker thread, at most as many at once as
        the pool has connections. Waiters queue here, in arrival order, for at most the
        pool timeout; threads parked on the pool instead contend for the GIL and are
        served out of order."""
        loop = asyncio.get_running_loop()
        gate = self._gates.get(loop)
        if gate is None:
            gate = self._gates[loop] = asyncio.Semaphore(self._capacity)
        try:
            async with asyncio.timeout(self._pool_timeout):
                await gate.acquire()
        except TimeoutError:
            raise self.unavailable() from None
        try:
            return await loop.run_in_executor(self._threads, functools.partial(work, *args))
        finally:
            gate.release()

    def stream(
        self, user: uuid.UUID, statement: str, params: dict[str, Any], batch: int
    ) -> Iterator[list[Any]]:
        """`statement`'s rows, `batch` at a time, all from one snapshot (a cursor in a
        transaction of its own), so a long answer is never whole in memory. Closing the
        iterator early rolls the transaction back."""
        with self.scope(user) as conn:
            # The request context goes before BEGIN in the same query string, which turns
            # that implicit transaction into this explicit one: the settings hold for it.
            conn.exec_driver_sql("BEGIN READ ONLY")
            finished = False
            try:
                conn.exec_driver_sql(f"DECLARE stream NO SCROLL CURSOR FOR {statement}", params)
                fetch = f"FETCH {batch} FROM stream"
                while rows := conn.exec_driver_sql(fetch).all():
                    yield [tuple(row) for row in rows]
                conn.exec_driver_sql("COMMIT")
                finished = True
            finally:
                if not finished:
                    _roll_back(conn)

    async def ping(self) -> None:
        await self.fetch(None, "SELECT 1", {})

    async def cursor_key(self) -> bytes:
        """The key that signs page cursors, the same for every process on this database
        (made by migration 0004); read once."""
        if self._cursor_key is None:
            [(secret,)] = await self.fetch(None, _CURSOR_KEY, {})
            self._cursor_key = bytes(secret)
        return self._cursor_key

    def schema_is_ready(self) -> None:
        """Called once the migrations have run; until then every statement is a 503."""
        self._schema_ready.set()

    def unavailable(self) -> ServiceUnavailable:
        return ServiceUnavailable(
            "The database is unreachable right now; retry shortly.",
            retry_after=self._retry_after,
        )

    def dispose(self) -> None:
        """Closes the pooled connections; the pools open new ones if used again."""
        self._pool.close()
        self.engine.dispose()
