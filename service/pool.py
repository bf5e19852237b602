"""The worker's one pool of PostgreSQL connections: psycopg2's asynchronous
connections, driven by the event loop.

A statement is sent and its answer awaited on the loop itself (the socket registered
with add_reader), so a request costs no thread hop. Still psycopg2 and libpq: only the
waiting moved. Each statement is its own implicit transaction (asynchronous
connections are always autocommit), which the request context relies on anyway.

At most `size + overflow` connections are open at once, whatever holds them: a
statement (`fetch`) or a stream that keeps one for its whole life (`lease`). Up to
`size` idle ones are kept; an overflow connection is closed when it comes back.
Within one event loop (a uvicorn worker has exactly one) waiters queue in arrival
order; across loops (a test client runs each request on a loop of its own) a
thread-safe count keeps the bound, and a waiter polls for a free place, which only
ever happens in tests."""

import asyncio
import select
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg2
from psycopg2 import extensions

from service import telemetry

_CONTENDED_POLL_SECONDS = 0.005

Rows = list[tuple[Any, ...]]


class PoolTimeout(Exception):
    """No connection came free within the pool timeout."""


async def _ready(fd: int, reading: bool) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    if reading:
        loop.add_reader(fd, wake)
    else:
        loop.add_writer(fd, wake)
    try:
        await ready
    finally:
        if reading:
            loop.remove_reader(fd)
        else:
            loop.remove_writer(fd)


async def wait(connection: Any) -> None:
    """Until libpq has finished what it was doing on `connection` (connecting, or
    sending a query and reading its answer); a failure raises psycopg2's error."""
    while True:
        state = connection.poll()
        if state == extensions.POLL_OK:
            return
        if state == extensions.POLL_READ:
            await _ready(connection.fileno(), reading=True)
        elif state == extensions.POLL_WRITE:
            await _ready(connection.fileno(), reading=False)
        else:
            raise psycopg2.OperationalError(f"unexpected poll state {state}")


async def run(connection: Any, sql: str, parameters: dict[str, Any] | None = None) -> Rows:
    """The rows of `sql`'s last statement (none for a command), in one round trip."""
    with connection.cursor() as cursor:
        cursor.execute(sql, parameters)
        await wait(connection)
        return cursor.fetchall() if cursor.description is not None else []


def _closed_by_the_server(connection: Any) -> bool:
    # An idle, healthy connection has nothing to read. One the server dropped (restart,
    # pg_terminate_backend, a scaled-to-zero compute) has an error message or EOF
    # waiting. Looking costs no round trip.
    return bool(connection.closed) or bool(select.select([connection], [], [], 0)[0])


def _reusable_after(error: BaseException) -> bool:
    # A statement's error leaves its connection idle and usable (its implicit
    # transaction is over); a connection's error, or an interrupted wait, does not.
    return isinstance(error, psycopg2.Error) and not isinstance(
        error, psycopg2.OperationalError | psycopg2.InterfaceError
    )


class AsyncPool:
    def __init__(
        self,
        dsn: str,
        size: int,
        overflow: int,
        timeout: float,
        recycle: float,
        connect_timeout: float,
        answer_timeout: float,
        connect_args: dict[str, Any],
    ) -> None:
        self._dsn = dsn
        self._keep = size
        self._capacity = size + overflow
        self._timeout = timeout
        self._recycle = recycle
        self._connect_timeout = connect_timeout
        self._answer_timeout = answer_timeout
        self._connect_args = connect_args
        self._idle: deque[tuple[Any, float]] = deque()
        # Connections out of the pool, with a statement or a stream.
        self._used = 0
        self._slots = threading.BoundedSemaphore(self._capacity)
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]
        self._gates = weakref.WeakKeyDictionary()
        telemetry.listener.pool_opened(self.state)

    def state(self) -> telemetry.PoolState:
        return telemetry.PoolState(self._used, len(self._idle), self._capacity)

    def _gate(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        gate = self._gates.get(loop)
        if gate is None:
            gate = self._gates[loop] = asyncio.Semaphore(self._capacity)
        return gate

    async def _slot(self, deadline: float) -> None:
        while not self._slots.acquire(blocking=False):
            if time.monotonic() >= deadline:
                raise PoolTimeout
            await asyncio.sleep(_CONTENDED_POLL_SECONDS)

    async def _open(self) -> Any:
        connection = psycopg2.connect(self._dsn, async_=1, **self._connect_args)
        try:
            async with asyncio.timeout(self._connect_timeout):
                await wait(connection)
        except BaseException:
            connection.close()
            raise
        return connection

    def _take_idle(self) -> tuple[Any, float] | None:
        now = time.monotonic()
        while True:
            try:
                connection, opened = self._idle.pop()
            except IndexError:
                return None
            if now - opened < self._recycle and not _closed_by_the_server(connection):
                return connection, opened
            connection.close()

    async def _enter(self) -> asyncio.Semaphore:
        """A place among the connections open at once, or PoolTimeout."""
        deadline = time.monotonic() + self._timeout
        gate = self._gate()
        try:
            async with asyncio.timeout(self._timeout):
                await gate.acquire()
        except TimeoutError:
            raise PoolTimeout from None
        try:
            await self._slot(deadline)
        except BaseException:
            gate.release()
            raise
        return gate

    def _give_back(self, connection: Any, opened: float, reusable: bool) -> None:
        idle = extensions.TRANSACTION_STATUS_IDLE
        if (
            reusable
            and not connection.closed
            and len(self._idle) < self._keep
            and connection.get_transaction_status() == idle
        ):
            self._idle.append((connection, opened))
        else:
            connection.close()

    async def fetch(
        self, sql: str, parameters: dict[str, Any], listen: bool = False
    ) -> tuple[Rows, list[str]]:
        """The rows of `sql`'s last statement, sent in one round trip; and, when asked
        to `listen`, the notices the server sent with them."""
        asked = time.perf_counter()
        gate = await self._enter()
        try:
            connection, opened = self._take_idle() or (await self._open(), time.monotonic())
            telemetry.listener.connection_waited(time.perf_counter() - asked)
            self._used += 1
            reusable = False
            try:
                # PostgreSQL's statement timeout cannot end a statement it has not been
                # given: one a pooler queues, or one lost on the way. This can.
                async with asyncio.timeout(self._answer_timeout):
                    rows = await run(connection, sql, parameters)
                notices: list[str] = []
                if listen:
                    # psycopg2 hands an asynchronous connection's notices over at its
                    # next poll; this one reads nothing more from the socket.
                    connection.poll()
                    notices, connection.notices = connection.notices, []
                reusable = True
                return rows, notices
            except BaseException as error:
                reusable = _reusable_after(error)
                raise
            finally:
                self._used -= 1
                self._give_back(connection, opened, reusable)
        finally:
            self._slots.release()
            gate.release()

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[Any]:
        """One connection of the pool for as long as the block runs (a stream's
        transaction). It goes back only if it ended idle, outside any transaction."""
        asked = time.perf_counter()
        gate = await self._enter()
        try:
            connection, opened = self._take_idle() or (await self._open(), time.monotonic())
            telemetry.listener.connection_waited(time.perf_counter() - asked)
            self._used += 1
            reusable = False
            try:
                yield connection
                reusable = True
            except BaseException as error:
                reusable = _reusable_after(error)
                raise
            finally:
                self._used -= 1
                self._give_back(connection, opened, reusable)
        finally:
            self._slots.release()
            gate.release()

    def close(self) -> None:
        """Closes the idle connections; the pool opens new ones if used again."""
        while self._idle:
            connection, _ = self._idle.pop()
            connection.close()
