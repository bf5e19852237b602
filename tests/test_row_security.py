"""The second wall: PostgreSQL's row-level policies hold on their own, with the
application's user filter gone."""

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
from api import TODOS, as_user, create, todo_url
from conftest import make_settings, unfiltered_service
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine

from service.db import Database
from service.settings import Settings


def _everything(admin_engine: Engine) -> list[tuple[Any, ...]]:
    with admin_engine.begin() as conn:
        return [tuple(r) for r in conn.execute(text("SELECT * FROM todos ORDER BY id"))]


class Caller:
    """Statements sent exactly as the service sends them, in a request context for
    one caller (None: a caller who owns no rows), on a Database of their own: these
    tests send unfiltered statements on purpose, which the SQL audit would rightly flag."""

    def __init__(self, db: Database, user: str | None) -> None:
        self.db, self.user = db, None if user is None else uuid.UUID(user)

    def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        return asyncio.run(self.db.fetch(self.user, sql, params))

    def ids(self, sql: str, **params: Any) -> set[str]:
        return {str(row[0]) for row in self.rows(sql, **params)}

    def one(self, sql: str, **params: Any) -> Any:
        [(value,)] = self.rows(sql, **params)
        return value


@pytest.fixture
def unaudited(settings: Settings) -> Iterator[Database]:
    db = Database(settings)
    yield db
    db.close()


@pytest.fixture
def two_users(client: TestClient, alice: str, bob: str) -> tuple[set[str], set[str]]:
    mine = {create(client, alice, title=f"alice {n}")["id"] for n in range(3)}
    theirs = {create(client, bob, title=f"bob {n}")["id"] for n in range(2)}
    return mine, theirs


@pytest.mark.req("FR-013", "SC-005")
def test_requests_run_as_a_role_that_cannot_bypass_the_policies(
    unaudited: Database, admin_engine: Engine, alice: str
) -> None:
    [role] = Caller(unaudited, alice).rows(
        "SELECT current_user, rolsuper, rolbypassrls, current_setting('app.user_id')"
        " FROM pg_roles WHERE rolname = current_user"
    )
    assert role == ("todo_app", False, False, alice)
    with admin_engine.begin() as conn:
        flags = conn.execute(
            text(
                "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class"
                " WHERE relname IN ('todo_items', 'todo_tags', 'users') ORDER BY relname"
            )
        ).all()
        owns = conn.execute(
            text("SELECT count(*) FROM pg_tables WHERE tableowner = 'todo_app'")
        ).scalar_one()
    # FORCE: even the tables' owner is bound unless it holds BYPASSRLS.
    assert [tuple(f) for f in flags] == [
        ("todo_items", True, True),
        ("todo_tags", True, True),
        ("users", True, True),
    ]
    assert owns == 0


# The table, and 1.x's view of it that 1.x builds name (migration 0007): the same wall.
TODO_RELATIONS = pytest.mark.parametrize("todos", ["todo_items", "todos"])


@pytest.mark.req("FR-013", "SC-005", "FR-221")
def test_1_x_view_is_bound_by_the_tables_policy_as_its_reader(admin_engine: Engine) -> None:
    """A view reads its table with its owner's rights unless it is security_invoker; the
    owner (the migrations' role) would see every user's todos."""
    with admin_engine.begin() as conn:
        kind, options = conn.execute(
            text("SELECT relkind, reloptions FROM pg_class WHERE relname = 'todos'")
        ).one()
    assert (kind, options) == ("v", ["security_invoker=true"])


@pytest.mark.req("FR-013", "FR-014", "SC-005")
@TODO_RELATIONS
def test_unfiltered_statements_touch_only_the_callers_rows(
    unaudited: Database,
    admin_engine: Engine,
    alice: str,
    two_users: tuple[set[str], set[str]],
    todos: str,
) -> None:
    mine, theirs = two_users
    caller = Caller(unaudited, alice)
    assert caller.ids(f"SELECT id FROM {todos}") == mine
    assert caller.one("SELECT count(*) FROM users") == 1
    assert caller.ids(f"UPDATE {todos} SET title = 'rewritten' RETURNING id") == mine
    assert caller.ids(f"DELETE FROM {todos} RETURNING id") == mine
    left = _everything(admin_engine)
    assert {str(row[0]) for row in left} == theirs
    assert all(row[2].startswith("bob ") for row in left)


@pytest.mark.req("FR-013", "SC-005")
@TODO_RELATIONS
def test_with_no_caller_set_unfiltered_statements_touch_nothing(
    unaudited: Database, admin_engine: Engine, two_users: tuple[set[str], set[str]], todos: str
) -> None:
    before = _everything(admin_engine)
    nobody = Caller(unaudited, None)
    assert nobody.rows(f"SELECT id FROM {todos}") == []
    assert nobody.rows("SELECT id FROM users") == []
    assert nobody.rows(f"UPDATE {todos} SET title = 'x' RETURNING id") == []
    assert nobody.rows(f"DELETE FROM {todos} RETURNING id") == []
    assert _everything(admin_engine) == before


@pytest.mark.req("FR-014", "SC-005")
@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO todos (user_id, title) VALUES (%(victim)s, 'planted')",
        "UPDATE todos SET user_id = %(victim)s",
        "INSERT INTO todo_items (user_id, title) VALUES (%(victim)s, 'planted')",
        "UPDATE todo_items SET user_id = %(victim)s",
        "INSERT INTO users (id) VALUES (%(stranger)s)",
    ],
)
def test_writing_rows_for_another_user_is_refused(
    unaudited: Database,
    admin_engine: Engine,
    alice: str,
    bob: str,
    two_users: tuple[set[str], set[str]],
    statement: str,
) -> None:
    before = _everything(admin_engine)
    with pytest.raises(psycopg2.Error, match="row-level security"):
        Caller(unaudited, alice).rows(statement, victim=bob, stranger=str(uuid.uuid4()))
    assert _everything(admin_engine) == before


@pytest.fixture
def without_the_application_filter(
    monkeypatch: pytest.MonkeyPatch, postgres_url: str
) -> Iterator[TestClient]:
    with unfiltered_service(monkeypatch, make_settings(postgres_url)) as client:
        yield client


@pytest.mark.req("FR-013", "FR-014", "SC-005")
def test_the_database_alone_keeps_users_apart(
    without_the_application_filter: TestClient,
    admin_engine: Engine,
    alice: str,
    bob: str,
) -> None:
    client = without_the_application_filter
    victim = create(client, alice, title="secret")
    create(client, bob, title="bob's own")
    before = _everything(admin_engine)

    path = todo_url(victim["id"])
    assert client.get(path, headers=as_user(bob)).status_code == 404
    assert client.patch(path, json={"title": "pwned"}, headers=as_user(bob)).status_code == 404
    assert client.delete(path, headers=as_user(bob)).status_code == 404
    listed = client.get(TODOS, headers=as_user(bob)).json()
    assert [t["title"] for t in listed["items"]] == ["bob's own"]
    many = "/api/v2/todos?q=secret"
    changed = client.patch(many, json={"is_completed": True}, headers=as_user(bob))
    assert changed.json() == {"updated": 0}
    assert client.delete(many, headers=as_user(bob)).json() == {"deleted": 0}
    counted = client.get("/api/v2/todos/summary", headers=as_user(bob)).json()
    assert (counted["total"], counted["open"]) == (1, 1)
    assert _everything(admin_engine) == before
    every = "/api/v2/todos?all=true"
    changed = client.patch(every, json={"priority": "high"}, headers=as_user(bob))
    assert changed.json() == {"updated": 1}
    assert client.get(path, headers=as_user(alice)).json() == victim


@pytest.fixture
def keys_of_two_users(client: TestClient, alice: str, bob: str) -> None:
    for user, key in ((alice, "a1"), (alice, "a2"), (bob, "b1")):
        made = client.post(
            TODOS, json={"title": key}, headers={**as_user(user), "Idempotency-Key": key}
        )
        assert made.status_code == 201


def _keys(admin_engine: Engine) -> list[tuple[Any, ...]]:
    with admin_engine.begin() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text("SELECT user_id::text, key, body FROM idempotency_keys ORDER BY key")
            )
        ]


@pytest.mark.req("FR-123", "SC-005")
def test_idempotency_keys_are_under_the_same_wall(
    unaudited: Database, admin_engine: Engine, alice: str, bob: str, keys_of_two_users: None
) -> None:
    with admin_engine.begin() as conn:
        forced = conn.execute(
            text(
                "SELECT relrowsecurity, relforcerowsecurity FROM pg_class"
                " WHERE relname = 'idempotency_keys'"
            )
        ).one()
    assert tuple(forced) == (True, True)
    before = _keys(admin_engine)
    caller = Caller(unaudited, alice)
    assert caller.ids("SELECT key FROM idempotency_keys") == {"a1", "a2"}
    assert caller.ids("UPDATE idempotency_keys SET body = 'x' RETURNING key") == {"a1", "a2"}
    assert caller.ids("DELETE FROM idempotency_keys RETURNING key") == {"a1", "a2"}
    assert [k for k in _keys(admin_engine) if k[0] == bob] == [k for k in before if k[0] == bob]
    assert Caller(unaudited, None).rows("SELECT key FROM idempotency_keys") == []
    with pytest.raises(psycopg2.Error, match="row-level security"):
        caller.rows(
            "INSERT INTO idempotency_keys (user_id, key, fingerprint, todo_id, body)"
            " VALUES (%(bob)s, 'planted', '', gen_random_uuid(), '{}')",
            bob=bob,
        )


@pytest.mark.req("FR-123", "SC-005")
def test_the_sweep_deletes_expired_keys_of_every_user_and_nothing_else(
    unaudited: Database, admin_engine: Engine, alice: str, bob: str, keys_of_two_users: None
) -> None:
    with admin_engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE idempotency_keys SET created_at = now() - interval '2 days'"
                " WHERE key <> 'a2'"
            )
        )
    caller = Caller(unaudited, alice)
    # The request role cannot see another user's keys, expired or not...
    assert caller.rows("SELECT key FROM idempotency_keys WHERE user_id <> %(me)s", me=alice) == []
    # ...yet the sweep (running as the owner) removes every expired key, and only those.
    assert caller.one("SELECT sweep_expired_idempotency_keys(100)") == 2
    assert [k[1] for k in _keys(admin_engine)] == ["a2"]


@pytest.mark.req("FR-133", "SC-005")
def test_the_request_role_may_read_the_cursor_key_and_nothing_more(
    unaudited: Database, admin_engine: Engine, alice: str
) -> None:
    caller = Caller(unaudited, alice)
    assert len(caller.one("SELECT secret FROM signing_keys")) == 32
    for statement in ("UPDATE signing_keys SET secret = ''", "DELETE FROM signing_keys"):
        with pytest.raises(psycopg2.Error, match="permission denied"):
            caller.rows(statement)


@pytest.mark.req("FR-112", "SC-005")
def test_a_write_bumps_only_its_callers_list_version(
    unaudited: Database,
    admin_engine: Engine,
    alice: str,
    bob: str,
    two_users: tuple[set[str], set[str]],
) -> None:
    def versions() -> dict[str, int]:
        with admin_engine.begin() as conn:
            return {str(r[0]): r[1] for r in conn.execute(text("SELECT id, version FROM users"))}

    before = versions()
    Caller(unaudited, alice).rows("UPDATE todos SET title = 'again'")
    after = versions()
    assert after[alice] == before[alice] + 1
    assert after[bob] == before[bob]
