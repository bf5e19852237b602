"""Safe retries as only the inside sees them: a keyed answer is the stored todo's very
bytes, keys expire after 24 hours, and expired keys of every user are swept. The rest
is the conformance kit's."""

import uuid
from typing import Any

import pytest
from api import TODOS, as_user
from fastapi.testclient import TestClient
from httpx2 import Response  # what TestClient answers (Starlette prefers httpx2)
from sqlalchemy import text
from sqlalchemy.engine import Engine

from service.store import keys


def _post(
    client: TestClient, user: str, key: str | None, body: dict[str, Any] | None = None
) -> Response:
    headers = as_user(user) if key is None else {**as_user(user), "Idempotency-Key": key}
    answer: Response = client.post(TODOS, json=body or {"title": "Pay rent"}, headers=headers)
    return answer


def _count(engine: Engine, table: str, user: str) -> int:
    column = "id" if table == "users" else "user_id"
    with engine.begin() as conn:
        return int(
            conn.execute(
                text(f"SELECT count(*) FROM {table} WHERE {column} = :u"), {"u": user}
            ).scalar_one()
        )


@pytest.mark.req("FR-121", "FR-111")
@pytest.mark.parametrize(
    "body",
    [{"title": 'Pay "rent": 50 € \\ tab\t', "description": "by the 1st\n"}, {"title": "Pay rent"}],
    ids=["escaped text", "no description"],
)
def test_a_keyed_create_answers_the_todo_exactly_as_it_is_stored(
    client: TestClient, alice: str, body: dict[str, Any]
) -> None:
    # The keyed answer is spelled before the todo is stored: it must be the same bytes
    # and the same entity tag as every later read of that todo.
    created = _post(client, alice, str(uuid.uuid4()), body)
    read = client.get(created.headers["location"], headers=as_user(alice))
    assert created.status_code == 201
    assert (created.content, created.headers["etag"]) == (read.content, read.headers["etag"])


@pytest.mark.req("FR-123")
def test_a_key_expires_after_24_hours(client: TestClient, admin_engine: Engine, alice: str) -> None:
    first = _post(client, alice, "monthly", {"title": "Pay rent"})
    with admin_engine.begin() as conn:
        conn.execute(
            text("UPDATE idempotency_keys SET created_at = now() - interval '24 hours 1 second'")
        )
    later = _post(client, alice, "monthly", {"title": "Pay rent, next month"})
    assert later.status_code == 201 and "idempotent-replayed" not in later.headers
    assert later.json()["id"] != first.json()["id"]
    assert _count(admin_engine, "todos", alice) == 2
    assert (
        _post(client, alice, "monthly", {"title": "Pay rent, next month"}).content == later.content
    )


@pytest.mark.req("FR-123")
def test_expired_keys_of_every_user_are_swept_so_the_table_stays_bounded(
    client: TestClient, admin_engine: Engine, alice: str
) -> None:
    idle = [str(uuid.uuid4()) for _ in range(40)]
    for user in idle:
        for n in range(5):
            _post(client, user, f"once-{n}")
    with admin_engine.begin() as conn:
        conn.execute(text("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'"))
    # Users who never come back: keyed creates sweep their expired keys, four for each
    # key added (up to 256 on every 64th).
    for n in range(keys.SWEEP_EVERY):
        _post(client, alice, f"k{n}")
    with admin_engine.begin() as conn:
        left = conn.execute(
            text(
                "SELECT count(*) FROM idempotency_keys WHERE created_at < now() - interval '1 day'"
            )
        ).scalar_one()
        total = conn.execute(text("SELECT count(*) FROM idempotency_keys")).scalar_one()
    assert left == 0
    assert total == keys.SWEEP_EVERY
