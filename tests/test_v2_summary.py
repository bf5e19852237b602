"""The summary (FR-214): the caller's counts in one request, with the list's ETag, never
counting another user's todos."""

import asyncio
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from api import as_user
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine
from test_v2_todo import V2, create_v2, patch_v2

from service.db import Database
from service.models import TodoCreateV2, TodoUpdateV2
from service.settings import Settings
from service.store import Caller, UserId, todos
from service.store.summary import summarize

SUMMARY = f"{V2}/summary"


def summary(client: TestClient, user: str) -> dict[str, Any]:
    answer = client.get(SUMMARY, headers=as_user(user))
    assert answer.status_code == 200, answer.text
    counted: dict[str, Any] = answer.json()
    return counted


@pytest.mark.req("FR-214")
def test_the_summary_counts_open_completed_overdue_priorities_and_tags(
    client: TestClient, alice: str, bob: str
) -> None:
    now = datetime.now(UTC)
    past, future = (now - timedelta(minutes=5)).isoformat(), (now + timedelta(hours=1)).isoformat()
    create_v2(client, alice, title="overdue", priority="high", due_at=past, tags=["work"])
    create_v2(client, alice, title="due later", priority="high", due_at=future, tags=["work"])
    create_v2(client, alice, title="undated", tags=["home", "work"])
    done = create_v2(client, alice, title="done", priority="low", due_at=past, tags=["done"])
    patch_v2(client, alice, done["id"], is_completed=True)
    for n in range(3):
        create_v2(client, bob, title=f"bob {n}", priority="low", due_at=past, tags=["work"])
    assert summary(client, alice) == {
        "total": 4,
        "open": 3,
        "completed": 1,
        "overdue": 1,
        "by_priority": {"none": 1, "low": 0, "medium": 0, "high": 2},
        "by_tag": {"home": 1, "work": 3},
    }


@pytest.mark.req("FR-214")
def test_a_user_with_no_todos_gets_zeros_and_every_priority(client: TestClient, alice: str) -> None:
    assert summary(client, alice) == {
        "total": 0,
        "open": 0,
        "completed": 0,
        "overdue": 0,
        "by_priority": {"none": 0, "low": 0, "medium": 0, "high": 0},
        "by_tag": {},
    }


@pytest.mark.req("FR-214", "FR-204", "FR-112")
def test_the_summary_carries_the_lists_etag_and_answers_304_until_a_todo_changes(
    client: TestClient, alice: str, bob: str
) -> None:
    todo = create_v2(client, alice, title="t")
    first = client.get(SUMMARY, headers=as_user(alice))
    listed = client.get(V2, headers=as_user(alice))
    etag = first.headers["etag"]
    assert etag == listed.headers["etag"]
    again = client.get(SUMMARY, headers={**as_user(alice), "If-None-Match": etag})
    assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag)
    head = client.head(SUMMARY, headers=as_user(alice))
    assert (head.status_code, head.content, head.headers["etag"]) == (200, b"", etag)
    create_v2(client, bob, title="another user's write changes nothing of hers")
    assert client.get(SUMMARY, headers={**as_user(alice), "If-None-Match": etag}).status_code == 304
    patch_v2(client, alice, todo["id"], is_completed=True)
    changed = client.get(SUMMARY, headers={**as_user(alice), "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert changed.json()["completed"] == 1


@pytest.mark.req("FR-214")
def test_summary_is_no_todo_id_and_v1_is_unchanged(client: TestClient, alice: str) -> None:
    """`summary` is a path of its own under /api/v2, not a todo's id; under /api/v1 it
    is what it always was, an id that is no UUID."""
    assert client.get(SUMMARY, headers=as_user(alice)).status_code == 200
    v1 = client.get("/api/v1/todos/summary", headers=as_user(alice))
    assert v1.status_code == 422 and v1.json()["errors"][0]["field"] == "todo_id"


@pytest.mark.req("FR-214", "FR-013")
def test_the_summary_matches_count_after_concurrent_creates_completes_and_deletes(
    settings: Settings, admin_engine: Engine
) -> None:
    """A storm of concurrent writes by two users, each on a connection of its own; then
    every count equals what `count(*)` finds in the table."""
    users = [UserId(uuid.uuid4()), UserId(uuid.uuid4())]
    rng = random.Random(20261207)
    db = Database(settings)

    async def storm(user: UserId) -> None:
        caller = Caller(user)
        now = datetime.now(UTC)
        made: list[uuid.UUID] = []
        for round_ in range(6):
            creates = [
                todos.create(
                    db,
                    caller,
                    TodoCreateV2.model_validate(
                        {
                            "title": f"t{round_}-{n}",
                            "priority": rng.choice(["none", "low", "medium", "high"]),
                            "due_at": (now + timedelta(hours=rng.choice([-2, 2]))).isoformat(),
                            "tags": rng.sample(["a", "b", "c"], rng.randint(0, 2)),
                        }
                    ),
                )
                for n in range(8)
            ]
            made += [uuid.UUID(c.todo_id) for c in await asyncio.gather(*creates)]
            chosen = rng.sample(made, 4)
            writes = [
                todos.patch(db, user, chosen[0], TodoUpdateV2(is_completed=True)),
                todos.patch(db, user, chosen[1], TodoUpdateV2(tags=["c"])),
                todos.remove(db, user, chosen[2]),
                todos.patch(db, user, chosen[3], TodoUpdateV2(is_completed=False)),
            ]
            await asyncio.gather(*writes)
            made.remove(chosen[2])

    async def both() -> None:
        await asyncio.gather(*(storm(user) for user in users))

    try:
        asyncio.run(both())
        for user in users:
            counted = asyncio.run(summarize(db, user))
            with admin_engine.connect() as conn:
                expected = _counted_by_sql(conn, user)
            assert json.loads(counted.json) == expected
    finally:
        db.close()


def _counted_by_sql(conn: Any, user: uuid.UUID) -> dict[str, Any]:
    row = conn.execute(
        text(
            "SELECT count(*), count(*) FILTER (WHERE NOT is_completed),"
            " count(*) FILTER (WHERE is_completed),"
            " count(*) FILTER (WHERE NOT is_completed AND due_at < now())"
            " FROM todo_items WHERE user_id = :u"
        ),
        {"u": user},
    ).one()
    priorities = dict(
        conn.execute(
            text(
                "SELECT p::text, (SELECT count(*) FROM todo_items WHERE user_id = :u"
                " AND NOT is_completed AND priority = p)"
                " FROM unnest(enum_range(NULL::todo_priority)) AS p"
            ),
            {"u": user},
        ).all()
    )
    tags = dict(
        conn.execute(
            text(
                "SELECT tag, count(*) FROM todo_items, unnest(tags) AS tag"
                " WHERE user_id = :u AND NOT is_completed GROUP BY tag"
            ),
            {"u": user},
        ).all()
    )
    total, open_, completed, overdue = row
    return {
        "total": total,
        "open": open_,
        "completed": completed,
        "overdue": overdue,
        "by_priority": priorities,
        "by_tag": tags,
    }
