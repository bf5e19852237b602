"""The one place statements reach PostgreSQL: each one sent with its request context in
the same round trip, on the worker's one pool, and outages turned into 503."""

import re
import threading
import time
import uuid
from collections.abc import AsyncGenerator, Iterator
from contextlib import closing, contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg2
from psycopg2 import errors as sqlstate

from service import limits, telemetry
from service.errors import PreconditionFailed, QuotaExceeded, RateLimited, ServiceUnavailable
from service.pool import AsyncPool, PoolTimeout, Rows, run
from service.settings import Settings

# Sent in the same query string as the statement it guards. PostgreSQL runs a
# multi-statement simple query as one implicit transaction, so these transaction-local
# settings bind exactly that statement: one round trip, nothing left behind on the
# connection, and safe behind a transaction pooler. The role, todo_app (made by
# migration 0002), owns nothing and cannot bypass the row-level policies. TimeZone is
# pinned so that the JSON PostgreSQL writes spells every timestamp with the explicit
# offset +00:00.
REQUEST_CONTEXT = """\
SELECT set_config('role', 'todo_app', true),
       set_config('app.user_id', %(_request_user)s, true),
       set_config('statement_timeout', %(_request_timeout)s, true),
       set_config('TimeZone', 'UTC', true);
"""

# With TODO_RATE_LIMIT, a request's first statement also takes a step of its caller's
# limit (migration 0005's function), right after the context and in the same round
# trip. Allowed, the step says what is left in a notice; refused, it fails (SQLSTATE
# TD429) and nothing after it runs.
RATE_LIMIT_STEP = "SELECT rate_limit_step(%(_rate_quota)s, %(_rate_window)s);\n"
_RATE_LIMITED = "TD429"

# With TODO_MAX_TODOS_PER_USER, a statement that creates todos is sent with the quota
# too, which the trigger counting them (migration 0006) checks: over it, the statement
# fails (SQLSTATE TD409) and creates nothing.
QUOTA_CONTEXT = "SELECT set_config('app.todo_quota', %(_quota)s, true);\n"
_OVER_QUOTA = "TD409"

# A bulk write's If-Match, checked where the list version moves (migration 0009): a list
# that changed since fails the statement with SQLSTATE TD412, and it writes nothing.
_LIST_CHANGED = "TD412"
_ALLOWANCE = re.compile(r"rate-limit (\d+) (\d+)")

# A stream reads its statement through a cursor, in a transaction of its own, so a long
# answer comes from one snapshot and is never whole in memory. BEGIN after the request
# context turns that implicit transaction into this explicit one: the settings hold.
OPEN_STREAM = "BEGIN READ ONLY;\nDECLARE stream NO SCROLL CURSOR FOR\n"
FETCH_STREAM = "FETCH %(batch)s FROM stream"
CLOSE_STREAM = "COMMIT"

PING = "SELECT 1"
CURSOR_KEY = "SELECT secret FROM signing_keys WHERE purpose = 'cursor'"

# What an unreachable, restarting or overloaded database raises.
_OUTAGES = (
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    PoolTimeout,  # no connection free within the pool timeout
    TimeoutError,  # the connect timeout, or an answer that did not come
)

# What PostgreSQL itself ends for taking too long: the statement timeout (a lock held
# elsewhere, or a statement too slow), or a lock timeout. The database is there.
_TIMEOUTS = (sqlstate.QueryCanceled, sqlstate.LockNotAvailable)

# Each 503 says which of these it is, in its detail and in the metrics' `cause`. An
# answer that never came is `unreachable`: a database that is there ends a slow
# statement itself, at the statement timeout, a second before the service gives up.
_UNAVAILABLE = {
    "timeout": "The database did not finish the request in time: a lock held elsewhere,"
    " or a load, kept it past the statement timeout; retry shortly.",
    "unreachable": "The database is unreachable right now; retry shortly.",
    "pool": "Every database connection is busy; retry shortly.",
    "migrating": "The database schema is being migrated; retry shortly.",
}

UserKey = uuid.UUID | None


def _cause(outage: Exception) -> str:
    if isinstance(outage, PoolTimeout):
        return "pool"
    if isinstance(outage, _TIMEOUTS):
        return "timeout"
    return "unreachable"


def libpq_url(url: str) -> str:
    """Neon's `postgres://` and `postgresql://` URLs as libpq takes them, every query
    option (sslmode, channel_binding, ...) kept."""
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql", "postgresql+psycopg2"}:
        raise ValueError("the database URL must start with postgres:// or postgresql://")
    return urlunsplit(parts._replace(scheme="postgresql"))


def sqlalchemy_url(url: str) -> str:
    """The same URL for SQLAlchemy (Alembic's migrations): the psycopg2 driver."""
    return urlunsplit(urlsplit(libpq_url(url))._replace(scheme="postgresql+psycopg2"))


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


def _connect_args(settings: Settings) -> dict[str, Any]:
    return {
        "connect_timeout": settings.connect_timeout,
        "application_name": "todo-service",
        # A peer that vanished without closing (a network partition) turns the socket
        # readable within ~25 s, so the check before reuse finds it too.
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
    }


@contextmanager
def _reported(statement: str) -> Iterator[None]:
    """Telemetry hears of `statement` (its text, never its values) and how long it took,
    from asking the pool for a connection to its last row."""
    heard = telemetry.listener
    sending = heard.statement_started(statement)
    began, failed = time.perf_counter(), True
    try:
        yield
        failed = False
    except GeneratorExit:
        failed = False  # a stream closed early by its reader: nothing went wrong
        raise
    finally:
        heard.statement_finished(sending, time.perf_counter() - began, failed)


class Database:
    """`fetch` sends one statement as the request role for a user (None: a caller who
    owns no rows), its rows back in one round trip; `stream` reads one statement's rows
    in batches on one connection of the same pool."""

    def __init__(self, settings: Settings, *, schema_ready: bool = True) -> None:
        if not settings.database_url:
            raise RuntimeError("NEON_DATABASE_URL is not set; `todo-service serve` sets it up")
        self._dsn = libpq_url(settings.database_url)
        self._connect_args = _connect_args(settings)
        self._pool = AsyncPool(
            self._dsn,
            size=settings.pool_size,
            overflow=settings.max_overflow,
            timeout=settings.pool_timeout,
            recycle=settings.pool_recycle,
            connect_timeout=settings.connect_timeout,
            # The statement's own timeout, and a second for the way there and back.
            answer_timeout=settings.statement_timeout_ms / 1000 + 1,
            connect_args=self._connect_args,
        )
        self._timeout_ms = str(settings.statement_timeout_ms)
        self.retry_after = settings.retry_after_seconds
        self._rate = settings.rate_limit
        self._quota = settings.max_todos_per_user
        self._cursor_key: bytes | None = None
        self._schema_ready = threading.Event()
        # Why statements wait until the schema is ready: its migrations run, or the
        # database they need cannot be reached.
        self._not_ready = "migrating"
        if schema_ready:
            self._schema_ready.set()

    def request_sql(
        self,
        user: UserKey,
        statement: str,
        parameters: dict[str, Any],
        step: bool = False,
        creates: bool = False,
    ) -> tuple[str, dict[str, Any]]:
        """What is sent for `statement`: the request context first (and the rate limit's
        step, when it is due, and the quota, when the statement creates), in one
        string."""
        context: dict[str, str | int] = {
            "_request_user": "" if user is None else str(user),
            "_request_timeout": self._timeout_ms,
        }
        sql = REQUEST_CONTEXT
        if step and self._rate is not None:
            context["_rate_quota"], context["_rate_window"] = self._rate.quota, self._rate.window
            sql += RATE_LIMIT_STEP
        if creates and self._quota is not None:
            context["_quota"] = str(self._quota)
            sql += QUOTA_CONTEXT
        return sql + statement, {**parameters, **context}

    async def fetch(
        self, user: UserKey, statement: str, parameters: dict[str, Any], creates: bool = False
    ) -> Rows:
        """`creates`: the statement may create todos, so the quota applies to it."""
        step = self._rate is not None and limits.take(user)
        sql, values = self.request_sql(user, statement, parameters, step, creates)
        if not self._schema_ready.is_set():
            raise self.unavailable()
        try:
            with _reported(statement):
                rows, notices = await self._pool.fetch(sql, values, listen=step)
        except _OUTAGES as error:
            raise self.unavailable(error) from error
        except psycopg2.Error as error:
            if error.pgcode == _RATE_LIMITED:
                raise self._refused(error, user) from None
            if error.pgcode == _OVER_QUOTA:
                await self._still_owed(step, user)
                raise QuotaExceeded(
                    f"A user may hold at most {self._quota} todos; delete one to make room.",
                    limit=self._quota or 0,
                ) from None
            if error.pgcode == _LIST_CHANGED:
                await self._still_owed(step, user)
                raise PreconditionFailed(
                    "The caller's todos changed since the list's ETag given in If-Match;"
                    " read the list again and retry."
                ) from None
            raise
        if step:
            self._heard(notices)
        return rows

    async def _still_owed(self, step: bool, user: UserKey) -> None:
        """A refusal rolled the step back with the write: the request still owes it."""
        if step and user is not None:
            limits.owe(user)
            await self.settle_rate_limit()

    async def settle_rate_limit(self) -> None:
        """Takes the step a request still owes, on its own (a request answered before it
        reached the store)."""
        owed = limits.owed()
        if self._rate is not None and owed is not None:
            await self.fetch(owed, PING, {})

    def _heard(self, notices: list[str]) -> None:
        for notice in notices:
            found = _ALLOWANCE.search(notice)
            if found:
                limits.record(limits.Allowance(int(found[1]), int(found[2])))

    def _refused(self, error: psycopg2.Error, user: UserKey) -> RateLimited:
        wait = int(error.diag.message_detail or 1)
        limits.record(limits.Allowance(0, wait))
        if user is not None:
            limits.refuse(user)
        assert self._rate is not None
        return RateLimited(
            f"Too many requests: a caller may send {self._rate.quota} every"
            f" {self._rate.window} seconds; retry in {wait} s.",
            retry_after=wait,
        )

    async def stream(
        self, user: UserKey, statement: str, parameters: dict[str, Any], batch: int
    ) -> AsyncGenerator[Rows, None]:
        """`statement`'s rows, `batch` at a time, from one snapshot. The connection is
        held until the last batch is read; a stream closed early gives it back closed,
        which ends its transaction."""
        sql, values = self.request_sql(user, OPEN_STREAM + statement, parameters)
        if not self._schema_ready.is_set():
            raise self.unavailable()
        try:
            with _reported(statement):
                async with self._pool.lease() as connection:
                    await run(connection, sql, values)
                    while rows := await run(connection, FETCH_STREAM, {"batch": batch}):
                        yield rows
                    await run(connection, CLOSE_STREAM)
        except _OUTAGES as error:
            raise self.unavailable(error) from error

    async def ping(self) -> None:
        await self.fetch(None, PING, {})

    async def cursor_key(self) -> bytes:
        """The key that signs page cursors, the same for every process on this database
        (made by migration 0004); read once."""
        if self._cursor_key is None:
            [(secret,)] = await self.fetch(None, CURSOR_KEY, {})
            self._cursor_key = bytes(secret)
        return self._cursor_key

    def schema_is_at(self, revision: str) -> bool:
        """Whether the schema's revision (Alembic's) is `revision`; False when it cannot
        be read. Asked once, before the pool serves, on a connection of its own."""
        try:
            with (
                closing(psycopg2.connect(self._dsn, **self._connect_args)) as conn,
                conn.cursor() as cursor,
            ):
                cursor.execute("SELECT version_num FROM alembic_version")
                found = [row[0] for row in cursor.fetchall()]
        except psycopg2.OperationalError:
            self.schema_unreachable()
            return False
        except psycopg2.Error:
            return False
        return found == [revision]

    def schema_unreachable(self) -> None:
        """The migrations cannot reach the database: until they can, that is the 503s'
        cause."""
        self._not_ready = "unreachable"

    def schema_is_ready(self) -> None:
        """Called once the migrations have run; until then every statement is a 503."""
        self._schema_ready.set()

    def unavailable(
        self, error: Exception | None = None, cause: str | None = None
    ) -> ServiceUnavailable:
        """The 503 for `error` (an outage), for `cause` when the caller knows it, or,
        with neither, for a schema not ready yet."""
        if cause is None:
            cause = self._not_ready if error is None else _cause(error)
        return ServiceUnavailable(_UNAVAILABLE[cause], retry_after=self.retry_after, cause=cause)

    def close(self) -> None:
        """Closes the idle connections; the pool opens new ones if used again."""
        self._pool.close()
