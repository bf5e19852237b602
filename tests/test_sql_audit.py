"""FR-013 / SC-005 proven by what was sent: every statement on todos that the
service sent during the whole run is restricted to one user."""

import re

import pytest
from api import TODOS, as_user, create, todo_url
from fastapi.testclient import TestClient
from sql_audit import StatementLog, violations

KINDS = {
    "insert": re.compile(r"INSERT INTO todos"),
    "select": re.compile(r"^SELECT .*FROM todos", re.DOTALL),
    "update": re.compile(r"^UPDATE todos"),
    "delete": re.compile(r"^DELETE FROM todos"),
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

    on_todos = [s for s in statement_log.statements if "todos" in s]
    seen = {kind for s in on_todos for kind, shape in KINDS.items() if shape.search(s)}
    assert seen == set(KINDS)
    problems = {s: violations(s) for s in set(statement_log.statements)}
    assert {s: p for s, p in problems.items() if p} == {}
    print(f"audited {len(statement_log.statements)} statements, {len(on_todos)} on todos")
