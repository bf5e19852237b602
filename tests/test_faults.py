"""The faults a serverless database really has: late at start-up, restarted under a
running service, a connection killed mid-request, a pool drained by slow requests, and
the service itself stopped under load. Every wait here has a deadline."""

import asyncio
import contextlib
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import one_off
import pytest
from api import TODOS, as_user, create, problem, todo_url
from conftest import make_settings
from fastapi.testclient import TestClient
from httpx2 import Response  # what TestClient answers (Starlette prefers httpx2)
from ports import free_port
from served import Serve
from sql_audit import StatementLog
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine
from stalling_proxy import StallingProxy
from waits import until

from service.app import create_app
from service.db import Database, sqlalchemy_url
from service.embedded import EmbeddedPostgres
from service.metrics import CAUSES

UNREACHABLE = "The database is unreachable right now; retry shortly."
_COUNTED = re.compile(r'^todo_unavailable_responses_total\{cause="(\w+)"\} (\S+)$', re.MULTILINE)


def _unavailable_counted(scraped: str) -> dict[str, float]:
    return {cause: float(value) for cause, value in _COUNTED.findall(scraped)}


def _service_connections(url: str) -> int:
    engine = create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE application_name = 'todo-service'"
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


def _timed(call: Callable[[], Response]) -> tuple[Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


@contextmanager
def _row_locked(admin_engine: Engine, todo_id: str) -> Iterator[Connection]:
    """Holds the todo's row lock, so a request that writes it waits inside PostgreSQL."""
    with admin_engine.connect() as conn:
        conn.execute(text("SELECT 1 FROM todos WHERE id = :id FOR UPDATE"), {"id": todo_id})
        try:
            yield conn
        finally:
            conn.rollback()


def _waiting_on_a_lock(admin_engine: Engine) -> list[int]:
    """The statements on the todos waiting on a lock in this test's database (the kit's
    jobs, in the background, wait on locks of their own in other databases)."""
    with admin_engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE '%todo_items%' AND pid <> pg_backend_pid()"
                    " AND datname = current_database()"
                )
            ).scalars()
        )


@pytest.mark.req("FR-006", "EC-1", "FR-005", "FR-161")
def test_serve_waits_for_a_database_that_is_down_at_start_up(
    tmp_path: Path, serve: Serve, run_logs: Any
) -> None:
    """And its 503s meanwhile say the database is unreachable, in their detail and in
    the metrics: not that the schema is migrating."""
    late = EmbeddedPostgres(tmp_path / "late", port=free_port())
    url = late.start()  # made and stopped, so serve starts against a closed port
    run_logs.database_url(url)
    late.stop()

    service = serve(url, extra_env={"TODO_METRICS_PORT": str(free_port())})
    until(lambda: service.ready_status() is not None, 30, "serve listens")
    until(lambda: "retrying" in service.output, 30, "a migration attempt to fail")
    for _ in range(3):
        assert service.ready_status() == 503
        answer = one_off.get(f"{service.base}{TODOS}", headers=as_user(str(uuid.uuid4())))
        body = problem(answer, 503, "SERVICE_UNAVAILABLE")
        assert body["detail"] == UNREACHABLE
        time.sleep(0.5)
    assert service.metrics_url
    counted = _unavailable_counted(one_off.get(service.metrics_url).text)
    assert set(counted) == set(CAUSES), counted
    assert counted["unreachable"] >= 6 and counted["timeout"] == counted["pool"] == 0, counted

    late.start()
    try:
        until(lambda: service.ready_status() == 200, 30, "ready once the database is up")
        user = as_user(str(uuid.uuid4()))
        made = one_off.post(f"{service.base}{TODOS}", json={"title": "late"}, headers=user)
        assert made.status_code == 201
        assert one_off.get(f"{service.base}{TODOS}", headers=user).json()["count"] == 1
        service.stop()
    finally:
        late.stop()


@pytest.mark.req("FR-006", "EC-1", "SC-007")
def test_the_first_requests_after_a_database_restart_succeed(
    spare_postgres: EmbeddedPostgres, statement_log: StatementLog, alice: str
) -> None:
    settings = make_settings(spare_postgres.url, TODO_DB_POOL_SIZE=4, TODO_DB_MAX_OVERFLOW=0)
    db = Database(settings)
    statement_log.attach(db)
    client = TestClient(create_app(settings, db), raise_server_exceptions=False)
    todo = create(client, alice, title="before the restart")

    async def fill_the_pool() -> None:
        # Four held at once: four live connections, kept idle after. (Four pings at once
        # need not be: one answered before the next is sent gives its connection back.)
        async with contextlib.AsyncExitStack() as held:
            for _ in range(4):
                await held.enter_async_context(db._pool.lease())

    asyncio.run(fill_the_pool())
    assert _service_connections(spare_postgres.url) == 4

    spare_postgres.stop()
    spare_postgres.start()
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(lambda _: client.get(todo_url(todo["id"]), headers=as_user(alice)), range(8))
        )
    assert [a.status_code for a in answers] == [200] * 8
    assert client.post(TODOS, json={"title": "after"}, headers=as_user(alice)).status_code == 201
    db.close()


@pytest.mark.req("FR-006", "EC-1", "EC-5")
def test_a_connection_killed_mid_request_gets_503_and_writes_nothing(
    client: TestClient, admin_engine: Engine, alice: str, unavailable: list[str | None]
) -> None:
    todo = create(client, alice, title="untouched")
    with ThreadPoolExecutor(1) as pool, _row_locked(admin_engine, todo["id"]):
        waiting: Future[Response] = pool.submit(
            client.patch, todo_url(todo["id"]), json={"title": "half"}, headers=as_user(alice)
        )
        until(lambda: bool(_waiting_on_a_lock(admin_engine)), 10, "the PATCH waits on the lock")
        with admin_engine.connect() as conn:
            for pid in _waiting_on_a_lock(admin_engine):
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        killed = waiting.result(timeout=10)
    body = problem(killed, 503, "SERVICE_UNAVAILABLE")
    assert body["detail"] == UNREACHABLE and unavailable == ["unreachable"]
    assert client.get(todo_url(todo["id"]), headers=as_user(alice)).json() == todo


@pytest.mark.req("FR-006", "EC-1")
def test_a_create_killed_mid_request_leaves_neither_user_nor_todo(
    client: TestClient, admin_engine: Engine
) -> None:
    newcomer = str(uuid.uuid4())
    with ThreadPoolExecutor(1) as pool, admin_engine.connect() as lock:
        lock.execute(text("LOCK TABLE todo_items IN SHARE MODE"))
        waiting = pool.submit(client.post, TODOS, json={"title": "half"}, headers=as_user(newcomer))
        until(lambda: bool(_waiting_on_a_lock(admin_engine)), 10, "the POST waits on the lock")
        with admin_engine.connect() as conn:
            for pid in _waiting_on_a_lock(admin_engine):
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        problem(waiting.result(timeout=10), 503, "SERVICE_UNAVAILABLE")
        lock.rollback()
    with admin_engine.connect() as conn:
        for table, column in (("users", "id"), ("todos", "user_id")):
            found = conn.execute(
                text(f"SELECT count(*) FROM {table} WHERE {column} = :u"), {"u": newcomer}
            ).scalar_one()
            assert found == 0, f"a half-written {table} row survived"
    assert client.post(TODOS, json={"title": "whole"}, headers=as_user(newcomer)).status_code == 201


@pytest.mark.req("FR-007", "SC-007")
def test_slow_requests_drain_the_pool_and_others_get_503_after_the_pool_timeout(
    postgres_url: str,
    admin_engine: Engine,
    client: TestClient,
    alice: str,
    unavailable: list[str | None],
) -> None:
    """Each 503 says why: the slow ones ran past the statement timeout, under a lock the
    database holds for another; the others found no connection free."""
    todo = create(client, alice, title="contended")
    settings = make_settings(
        postgres_url,
        TODO_DB_POOL_SIZE=2,
        TODO_DB_MAX_OVERFLOW=0,
        TODO_DB_POOL_TIMEOUT=1,
        TODO_DB_STATEMENT_TIMEOUT_MS=2500,
    )
    db = Database(settings)
    small = TestClient(create_app(settings, db), raise_server_exceptions=False)

    def patch() -> Response:
        answer: Response = small.patch(
            todo_url(todo["id"]), json={"title": "slow"}, headers=as_user(alice)
        )
        return answer

    with ThreadPoolExecutor(2) as pool, _row_locked(admin_engine, todo["id"]):
        slow = [pool.submit(_timed, patch) for _ in range(2)]
        until(
            lambda: len(_waiting_on_a_lock(admin_engine)) == 2, 10, "both PATCHes hold a connection"
        )
        shut_out, waited = _timed(lambda: small.get(TODOS, headers=as_user(alice)))
        body = problem(shut_out, 503, "SERVICE_UNAVAILABLE")
        assert body["detail"] == "Every database connection is busy; retry shortly."
        assert 0.9 < waited < 2, f"waited {waited:.2f}s for a pool timeout of 1s"
        # The statement timeout bounds the slow ones themselves.
        for future in slow:
            answer, took = future.result(timeout=10)
            body = problem(answer, 503, "SERVICE_UNAVAILABLE")
            assert "statement timeout" in body["detail"] and "unreachable" not in body["detail"]
            assert 2.4 < took < 5, f"a slow statement ran {took:.2f}s under a 2.5s timeout"
    assert unavailable == ["pool", "timeout", "timeout"]
    assert small.get(todo_url(todo["id"]), headers=as_user(alice)).json() == todo
    db.close()


@pytest.mark.req("FR-006", "EC-1")
def test_a_statement_whose_answer_never_comes_gets_503_a_second_after_the_statement_timeout(
    postgres_url: str, database: Database, alice: str, unavailable: list[str | None]
) -> None:
    """PostgreSQL ends a statement that runs too long, but not one it never received: a
    pooler holds it while the database refuses connections, or the packets are lost.
    The service gives up on the answer itself, and the next request, once the database
    answers again, is served."""
    with StallingProxy(postgres_url) as proxy:
        settings = make_settings(proxy.url, TODO_DB_STATEMENT_TIMEOUT_MS=1000)
        db = Database(settings)
        client = TestClient(create_app(settings, db), raise_server_exceptions=False)
        assert client.get(TODOS, headers=as_user(alice)).status_code == 200
        proxy.passing.clear()
        stalled, waited = _timed(lambda: client.get(TODOS, headers=as_user(alice)))
        # A database that is there ends a statement at its timeout; this one is not.
        assert problem(stalled, 503, "SERVICE_UNAVAILABLE")["detail"] == UNREACHABLE
        assert unavailable == ["unreachable"]
        assert stalled.headers["retry-after"]
        assert 1.9 < waited < 3, f"waited {waited:.2f} s for a statement timeout of 1 s"
        proxy.passing.set()
        assert client.get(TODOS, headers=as_user(alice)).status_code == 200
        db.close()


@pytest.mark.req("FR-006", "EC-5", "FR-008")
def test_sigterm_under_load_finishes_in_flight_requests_and_loses_no_write(
    postgres_url: str, database: Database, admin_engine: Engine, client: TestClient, serve: Serve
) -> None:
    user = str(uuid.uuid4())
    held = create(client, user, title="held")
    # The PATCH waits on the lock until the test releases it, however long the load
    # takes to flow on a busy machine: not ended by the statement timeout first.
    service = serve(postgres_url, extra_env={"TODO_DB_STATEMENT_TIMEOUT_MS": "60000"})
    service.wait_ready()
    acknowledged: list[str] = []
    unanswered = 0
    stop = threading.Event()
    lock = threading.Lock()

    def write(n: int) -> None:
        nonlocal unanswered
        while not stop.is_set():
            try:
                answer = one_off.post(
                    f"{service.base}{TODOS}",
                    json={"title": f"w{n}"},
                    headers=as_user(user),
                    timeout=15,
                )
            except httpx.ConnectError:
                return  # refused: the server no longer accepts; nothing was sent
            except httpx.TransportError:
                with lock:
                    unanswered += 1
                return
            if answer.status_code == 201:
                with lock:
                    acknowledged.append(answer.json()["id"])
            else:
                assert answer.status_code == 503, answer.text

    with ThreadPoolExecutor(9) as pool, _row_locked(admin_engine, held["id"]) as row_lock:
        in_flight = pool.submit(
            httpx.patch,
            f"{service.base}{todo_url(held['id'])}",
            json={"title": "finished"},
            headers=as_user(user),
            timeout=15,
        )
        # In flight for certain before the load and the SIGTERM: on a busy machine it
        # took longer to be sent (a new client, its TLS context) than the load to flow.
        until(lambda: bool(_waiting_on_a_lock(admin_engine)), 30, "the PATCH to wait on the lock")
        writers = [pool.submit(write, n) for n in range(8)]
        until(lambda: len(acknowledged) >= 50, 30, "load is flowing")
        service.process.terminate()
        time.sleep(1)  # shutting down: the PATCH is still waiting on the row lock
        assert not in_flight.done()
        row_lock.rollback()
        assert in_flight.result(timeout=15).json()["title"] == "finished"
        for writer in writers:
            writer.result(timeout=30)
        stop.set()
    assert service.process.wait(timeout=30) == 0
    with pytest.raises(httpx.ConnectError):
        one_off.get(f"{service.base}/health/live")

    with admin_engine.connect() as conn:
        stored = set(
            conn.execute(
                text("SELECT id::text FROM todos WHERE user_id = :u AND id <> :held"),
                {"u": user, "held": held["id"]},
            ).scalars()
        )
    assert set(acknowledged) <= stored, "an acknowledged write was lost"
    assert len(stored) - len(acknowledged) <= unanswered
