"""The data model where it takes the inside to see it: ties on created_at (made in the
database, as no client can), and a user's deletion cascading to their todos. The
operations as a client sees them are the conformance kit's (tests/test_conformance_kit.py)."""

import uuid
from datetime import datetime, timedelta

import pytest
from api import TODOS, as_user, create
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine


def _timestamp(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0), f"{value} must carry an explicit UTC offset"
    return parsed


@pytest.mark.req("FR-009")
def test_ties_on_created_at_are_ordered_by_id_descending(
    client: TestClient, alice: str, admin_engine: Engine
) -> None:
    ids = [create(client, alice, title=f"t{n}")["id"] for n in range(5)]
    with admin_engine.begin() as conn:
        conn.execute(text("UPDATE todos SET created_at = '2026-01-01T00:00:00Z'"))
    listed = [t["id"] for t in client.get(TODOS, headers=as_user(alice)).json()["items"]]
    assert listed == sorted(ids, key=uuid.UUID, reverse=True)


@pytest.mark.req("FR-001")
def test_deleting_a_user_deletes_their_todos(
    client: TestClient, alice: str, admin_engine: Engine
) -> None:
    create(client, alice, title="mine")
    with admin_engine.begin() as conn:
        conn.execute(text("DELETE FROM users WHERE id = :id"), {"id": alice})
        left = conn.execute(text("SELECT count(*) FROM todos WHERE user_id = :id"), {"id": alice})
        assert left.scalar_one() == 0
