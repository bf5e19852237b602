"""A database outage: clear 503s with Retry-After, fast, and recovery by itself."""

import time
from collections.abc import Callable

import pytest
from api import TODOS, as_user, create, problem, todo_url
from conftest import make_settings
from fastapi.testclient import TestClient
from httpx2 import Response  # what TestClient answers (Starlette prefers httpx2)
from sql_audit import StatementLog
from waits import until

from service.app import create_app
from service.db import Database
from service.embedded import EmbeddedPostgres
from service.settings import Settings

SOME_ID = "0b9f1f6e-3c0a-4b8e-9b7e-6f3f3d2a1c55"


def _timed(call: Callable[[], Response]) -> tuple[Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


@pytest.mark.req("FR-006", "EC-1", "SC-007", "FR-007")
def test_outage_gives_503_and_the_same_process_recovers(
    spare_postgres: EmbeddedPostgres,
    statement_log: StatementLog,
    alice: str,
    unavailable: list[str | None],
) -> None:
    settings = make_settings(spare_postgres.url)
    db = Database(settings)
    statement_log.attach(db)
    client = TestClient(create_app(settings, db), raise_server_exceptions=False)
    todo = create(client, alice, title="before the outage")

    spare_postgres.stop()
    calls: list[Callable[[], Response]] = [
        lambda: client.get(TODOS, headers=as_user(alice)),
        lambda: client.post(TODOS, json={"title": "during"}, headers=as_user(alice)),
        lambda: client.get(todo_url(todo["id"]), headers=as_user(alice)),
        lambda: client.patch(todo_url(SOME_ID), json={"title": "x"}, headers=as_user(alice)),
        lambda: client.delete(todo_url(todo["id"]), headers=as_user(alice)),
        lambda: client.get("/health/ready"),
    ]
    for call in calls:
        response, seconds = _timed(call)
        body = problem(response, 503, "SERVICE_UNAVAILABLE")
        assert int(response.headers["retry-after"]) >= 1
        assert seconds < 5, f"503 took {seconds:.1f}s"
        assert "postgresql://" not in response.text and "psycopg2" not in response.text
        assert body["detail"] == "The database is unreachable right now; retry shortly."
    assert unavailable == ["unreachable"] * len(calls)
    assert client.get("/health/live").status_code == 200

    spare_postgres.start()
    until(
        lambda: client.get("/health/ready").status_code == 200,
        10,
        "the service to recover by itself",
        every=0.2,
    )
    assert client.get(todo_url(todo["id"]), headers=as_user(alice)).json() == todo
    assert client.post(TODOS, json={"title": "after"}, headers=as_user(alice)).status_code == 201
    assert client.get(TODOS, headers=as_user(alice)).json()["count"] == 2
    db.close()


@pytest.mark.req("FR-006", "EC-1")
def test_readiness_follows_the_database(client: TestClient) -> None:
    assert client.get("/health/ready").json() == {"status": "ok"}
    assert client.get("/health/live").json() == {"status": "ok"}


@pytest.mark.req("FR-006", "EC-1", "FR-161")
def test_while_the_schema_migrates_503s_say_so_and_then_that_the_database_is_unreachable(
    settings: Settings, database: Database, alice: str, unavailable: list[str | None]
) -> None:
    """What a worker's 503s say before its migrations are done: they are running, or
    (once an attempt has failed to reach it) the database is unreachable."""
    db = Database(settings, schema_ready=False)
    client = TestClient(create_app(settings, db), raise_server_exceptions=False)
    migrating = "The database schema is being migrated; retry shortly."
    assert problem(client.get("/health/ready"), 503, "SERVICE_UNAVAILABLE")["detail"] == migrating
    listed = client.get(TODOS, headers=as_user(alice))
    assert problem(listed, 503, "SERVICE_UNAVAILABLE")["detail"] == migrating
    db.schema_unreachable()
    ready = problem(client.get("/health/ready"), 503, "SERVICE_UNAVAILABLE")
    assert ready["detail"] == "The database is unreachable right now; retry shortly."
    db.schema_is_ready()
    assert client.get("/health/ready").status_code == 200
    assert unavailable == ["migrating", "migrating", "unreachable"]
    db.close()
