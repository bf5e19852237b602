"""A user with thousands of todos: past WHOLE_LIST_LIMIT the list is streamed from one
snapshot, and is the same answer, complete and newest first."""

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from api import TODOS, as_user, create, todo_url
from conftest import make_settings
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine

from service.app import create_app
from service.db import Database
from service.store import UserId, todos

MANY = 2 * todos.WHOLE_LIST_LIMIT + 7


def _give(admin_engine: Engine, user: str, count: int) -> list[str]:
    """`count` todos made straight in the database, newest first as listed."""
    with admin_engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id) VALUES (:u)"), {"u": user})
        return list(
            conn.execute(
                text(
                    "INSERT INTO todos (user_id, title, created_at, updated_at)"
                    " SELECT :u, 'todo ' || n, t, t FROM generate_series(1, :count) AS n,"
                    " LATERAL (SELECT timestamptz '2026-01-01' + n * interval '1 ms') AS s(t)"
                    " RETURNING id::text"
                ),
                {"u": user, "count": count},
            ).scalars()
        )[::-1]


def _open_transactions(admin_engine: Engine) -> int:
    """The service's connections left inside a transaction, in this test's database: none
    once a request has been answered, whatever its stream did (a stream another test
    abandoned gives its connection back as it is closed)."""
    with admin_engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name ="
                    " 'todo-service' AND state LIKE 'idle in transaction%'"
                    # The services other tests serve use databases of their own.
                    " AND datname = current_database()"
                )
            ).scalar_one()
        )


@pytest.fixture
def one_connection(postgres_url: str) -> Iterator[TestClient]:
    """A service with a single pooled connection, so each request reuses the last one's."""
    settings = make_settings(postgres_url, TODO_DB_POOL_SIZE=1, TODO_DB_MAX_OVERFLOW=0)
    db = Database(settings)
    yield TestClient(create_app(settings, db), raise_server_exceptions=False)
    db.close()


@pytest.mark.req("FR-009", "SC-002")
def test_a_list_too_long_to_build_whole_is_streamed_complete_and_newest_first(
    client: TestClient, admin_engine: Engine, alice: str
) -> None:
    ids = _give(admin_engine, alice, MANY)
    answer = client.get(TODOS, headers=as_user(alice))
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["count"] == MANY
    assert [t["id"] for t in body["items"]] == ids
    newest = client.get(todo_url(ids[0]), headers=as_user(alice)).json()
    assert body["items"][0] == newest


@pytest.mark.req("FR-009", "FR-013")
def test_a_streamed_list_leaves_nothing_behind_on_its_connection(
    one_connection: TestClient, admin_engine: Engine, alice: str, bob: str
) -> None:
    _give(admin_engine, alice, MANY)
    assert one_connection.get(TODOS, headers=as_user(alice)).json()["count"] == MANY
    assert _open_transactions(admin_engine) == 0
    mine = create(one_connection, bob, title="bob's only")
    assert one_connection.get(TODOS, headers=as_user(bob)).json()["items"] == [mine]


@pytest.mark.req("FR-009")
def test_a_stream_abandoned_midway_rolls_back_before_its_connection_is_reused(
    postgres_url: str, admin_engine: Engine, alice: str
) -> None:
    _give(admin_engine, alice, MANY)
    settings = make_settings(postgres_url, TODO_DB_POOL_SIZE=1, TODO_DB_MAX_OVERFLOW=0)
    db = Database(settings)

    async def abandon_then_list() -> todos.Items | None:
        _, batches = await todos.stream_all(db, UserId(uuid.UUID(alice)))
        await anext(batches)
        assert _open_transactions(admin_engine) == 1  # the cursor's, while it is read
        await batches.aclose()  # what a client that hangs up amounts to
        assert _open_transactions(admin_engine) == 0
        return await todos.list_all(db, UserId(uuid.uuid4()))

    assert asyncio.run(abandon_then_list()) == todos.Items(0, "[]", 0)
    db.close()


@pytest.mark.req("FR-009")
def test_head_of_a_streamed_list_reads_no_list(
    client: TestClient, admin_engine: Engine, alice: str
) -> None:
    _give(admin_engine, alice, MANY)
    got = client.get(TODOS, headers=as_user(alice))
    head = client.head(TODOS, headers=as_user(alice))
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["etag"] == got.headers["etag"]
    assert "content-length" not in head.headers
    assert _open_transactions(admin_engine) == 0
