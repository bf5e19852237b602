"""FR-013 / SC-005 proven by what was sent: every statement on todos that the
service sent during the whole run is restricted to one user; and every statement it
sent is one written out as SQL in the repository."""

import re
import uuid

import pytest
from api import TODOS, as_user, create, todo_url
from conftest import make_settings
from fastapi.testclient import TestClient
from sql_audit import StatementLog, sendable, violations
from sqlalchemy import text
from sqlalchemy.engine import Engine

from service.app import create_app
from service.db import Database
from service.store import todos

# The service names the table, todo_items; `todos` is 1.x's view of it (migration 0007).
KINDS = {
    "insert": re.compile(r"\bINSERT INTO todo_items\b"),
    "select": re.compile(r"\bSELECT\b.*\bFROM todo_items\b", re.DOTALL),
    "update": re.compile(r"\bUPDATE todo_items\b"),
    "delete": re.compile(r"\bDELETE FROM todo_items\b"),
}


@pytest.mark.req("FR-013", "SC-005")
@pytest.mark.parametrize(
    "statement",
    [
        "SELECT todos.id FROM todos WHERE todos.id = %(id_1)s",
        "SELECT id FROM todos",
        "SELECT id FROM todos WHERE user_id = %(u)s OR true",
        "UPDATE todos SET title = %(t)s WHERE id = %(id)s",
        "DELETE FROM todos WHERE todos.id = %(id)s",
        "INSERT INTO todos (title) VALUES (%(t)s)",
        "SELECT * FROM (SELECT id FROM todos) AS t WHERE user_id = %(u)s",
        "SELECT count(*) FROM users JOIN todos ON todos.user_id = users.id",
        "SELECT id FROM todo_items WHERE id = %(id)s",
        "UPDATE todo_items SET title = %(t)s",
    ],
)
def test_the_auditor_flags_unrestricted_statements(statement: str) -> None:
    assert violations(statement)


@pytest.mark.req("FR-013", "SC-005")
def test_the_auditor_accepts_restricted_statements() -> None:
    assert not violations(
        "SELECT todos.id FROM todos WHERE todos.user_id = %(user_id_1)s AND todos.id = %(id_1)s"
    )
    assert not violations(
        "INSERT INTO todos (user_id, title) VALUES (%(u)s, %(t)s) RETURNING todos.id"
    )
    assert not violations("SELECT set_config('statement_timeout', %(ms)s, true)")


@pytest.mark.audit_last
@pytest.mark.req("FR-013", "SC-005")
def test_every_statement_the_service_sent_on_todos_was_restricted_to_one_user(
    client: TestClient, statement_log: StatementLog, alice: str
) -> None:
    # Drive each operation once so the audit stands even when run alone.
    todo = create(client, alice, title="audited")
    client.get(TODOS, headers=as_user(alice))
    client.get(todo_url(todo["id"]), headers=as_user(alice))
    client.patch(todo_url(todo["id"]), json={"is_completed": True}, headers=as_user(alice))
    client.delete(todo_url(todo["id"]), headers=as_user(alice))

    everything = statement_log.everything()
    on_todos = [s for s in everything if "todo_items" in s]
    seen = {kind for s in on_todos for kind, shape in KINDS.items() if shape.search(s)}
    assert seen == set(KINDS)
    # 1.x's view is for 1.x builds: this one goes to the table.
    assert not [s for s in everything if re.search(r"\b(FROM|INTO|UPDATE) todos\b", s)]
    problems = {s: violations(s) for s in set(everything)}
    assert {s: p for s, p in problems.items() if p} == {}
    print(f"audited {len(everything)} statements, {len(on_todos)} on todos")


@pytest.mark.req("FR-013", "SC-005", "FR-123")
@pytest.mark.parametrize(
    "statement",
    [
        "SELECT body FROM idempotency_keys WHERE key = %(k)s",
        "DELETE FROM idempotency_keys WHERE created_at < now()",
        "INSERT INTO idempotency_keys (key, body) VALUES (%(k)s, %(b)s)",
        "UPDATE users SET version = version + 1",
        "SELECT version FROM users WHERE users.id = %(u)s OR true",
        "INSERT INTO users (issuer, subject) VALUES (%(i)s, %(s)s)",
        "WITH c AS (INSERT INTO todos (user_id, title) VALUES (%(u)s, 't') RETURNING id)"
        " SELECT count(*) FROM todos",
    ],
)
def test_the_auditor_flags_unrestricted_statements_on_every_users_table(statement: str) -> None:
    assert violations(statement)


def _seed_a_long_list(admin_engine: Engine, user: str) -> None:
    with admin_engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id) VALUES (:u)"), {"u": user})
        conn.execute(
            text(
                "INSERT INTO todos (user_id, title) SELECT :u, 'n' || n"
                " FROM generate_series(1, :count) AS n"
            ),
            {"u": user, "count": todos.WHOLE_LIST_LIMIT + 1},
        )


@pytest.mark.audit_last
@pytest.mark.req("FR-013", "SC-005", "FR-113", "FR-121", "FR-131")
def test_every_statement_sent_is_written_out_in_the_repository_and_restricted_to_one_user(
    client: TestClient,
    admin_engine: Engine,
    statement_log: StatementLog,
    postgres_url: str,
    alice: str,
    bob: str,
) -> None:
    # Drive every operation once, so the audit stands even when run alone.
    kept = create(client, alice, title="kept")
    keyed = {**as_user(alice), "Idempotency-Key": "k"}
    todo = client.post(TODOS, json={"title": "audited"}, headers=keyed).json()
    assert client.post(TODOS, json={"title": "audited"}, headers=keyed).json() == todo
    etag = client.get(todo_url(todo["id"]), headers=as_user(alice)).headers["etag"]
    conditional = {**as_user(alice), "If-Match": etag}
    etag = client.patch(todo_url(todo["id"]), json={"title": "x"}, headers=conditional).headers[
        "etag"
    ]
    described = {"description": None}
    client.patch(todo_url(todo["id"]), json=described, headers={**conditional, "If-Match": etag})
    client.patch(todo_url(kept["id"]), json={"title": "y"}, headers=as_user(alice))
    client.patch(todo_url(kept["id"]), json=described, headers=as_user(alice))
    current = client.get(todo_url(todo["id"]), headers=as_user(alice)).headers["etag"]
    client.delete(todo_url(todo["id"]), headers={**as_user(alice), "If-Match": current})
    create(client, alice, title="one more")
    first = client.get(f"{TODOS}?limit=1", headers=as_user(alice))
    cursor = first.json()["next_cursor"]
    client.get(f"{TODOS}?limit=1&cursor={cursor}", headers=as_user(alice))
    client.get(TODOS, headers={**as_user(alice), "If-None-Match": first.headers["etag"]})
    for bulk_key in ({}, {"Idempotency-Key": "bulk"}):
        bulk = {**as_user(alice), **bulk_key}
        client.patch("/api/v2/todos?all=true", json={"priority": "low"}, headers=bulk)
        client.delete("/api/v2/todos?completed=true", headers=bulk)
    _seed_a_long_list(admin_engine, bob)
    assert client.get(TODOS, headers=as_user(bob)).json()["count"] > todos.WHOLE_LIST_LIMIT
    assert client.get("/health/ready").status_code == 200
    # And with a quota and a rate limit, whose statements and step are their own.
    settings = make_settings(postgres_url, TODO_MAX_TODOS_PER_USER=1, TODO_RATE_LIMIT="100/60")
    limited = Database(settings)
    statement_log.attach(limited)
    steps, quotas = statement_log.steps, statement_log.quotas
    bounded = TestClient(create_app(settings, limited), raise_server_exceptions=False)
    carol = str(uuid.uuid4())
    create(bounded, carol, title="within the quota")
    keyed = {**as_user(carol), "Idempotency-Key": "q"}
    assert bounded.post(TODOS, json={"title": "over it"}, headers=keyed).status_code == 409
    # Both creates carry the quota; the refused one's step was rolled back with it, so
    # it takes its step again, on its own.
    assert (statement_log.steps - steps, statement_log.quotas - quotas) == (3, 2)
    limited.close()

    forms = sendable()
    sent = set(statement_log.everything())
    assert sent - set(forms.values()) == set(), "sent, yet written nowhere in the repository"
    assert {name for name, form in forms.items() if form not in sent} == set(), "never sent"
    assert {s: violations(s) for s in sent if violations(s)} == {}
