"""Conditional requests as only the inside sees them: a 304 for the list reads no list,
and a write from outside the service still moves the versions. The rest is the
conformance kit's."""

import pytest
from api import TODOS, as_user, create
from fastapi.testclient import TestClient
from httpx2 import Response  # what TestClient answers (Starlette prefers httpx2)
from sql_audit import StatementLog
from sqlalchemy import text
from sqlalchemy.engine import Engine

from service.store import todos


def _etag(response: Response) -> str:
    etag = response.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"'), "a strong entity tag"
    return etag


def _list_etag(client: TestClient, user: str) -> str:
    return _etag(client.get(TODOS, headers=as_user(user)))


@pytest.mark.req("FR-112")
def test_a_304_for_the_list_does_not_read_the_list(
    client: TestClient, statement_log: StatementLog, alice: str
) -> None:
    for n in range(20):
        create(client, alice, title=f"t{n}")
    client.get(f"{TODOS}?limit=1", headers=as_user(alice))  # the cursor key, read once
    etag = _list_etag(client, alice)
    for path in (TODOS, f"{TODOS}?limit=5"):
        before = len(statement_log.statements)
        answer = client.get(path, headers={**as_user(alice), "If-None-Match": etag})
        assert answer.status_code == 304
        sent = statement_log.statements[before:]
        assert sent == [todos.LIST_VERSION], "one index lookup, no read of todos"
        assert "todo" not in sent[0]  # neither todo_items nor 1.x's view


@pytest.mark.req("FR-111", "FR-112")
def test_the_version_is_bumped_by_writes_from_outside_the_service_too(
    client: TestClient, admin_engine: Engine, alice: str
) -> None:
    todo = create(client, alice, title="v1")
    before = _list_etag(client, alice)
    with admin_engine.begin() as conn:
        conn.execute(text("UPDATE todos SET title = 'by hand' WHERE id = :id"), {"id": todo["id"]})
    assert _list_etag(client, alice) != before
