"""Keyset pages as only the inside sees them: ties on created_at (made in the database),
every todo spelled with the same bytes in a page as anywhere, and a deep page an index
range scan. The rest is the conformance kit's."""

import asyncio
import base64
import uuid
from typing import Any

import pytest
from api import TODOS, as_user, create, todo_url
from fastapi.testclient import TestClient
from httpx2 import Response  # what TestClient answers (Starlette prefers httpx2)
from sqlalchemy import text
from sqlalchemy.engine import Engine

from service import cursors
from service.db import Database
from service.settings import Settings
from service.store import todos


def _give(admin_engine: Engine, user: str, count: int, same_instant: bool = False) -> list[str]:
    """`count` todos made straight in the database, newest first as listed."""
    created = (
        "timestamptz '2026-01-01'"
        if same_instant
        else "timestamptz '2026-01-01' + n * interval '1 ms'"
    )
    with admin_engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id) VALUES (:u) ON CONFLICT DO NOTHING"), {"u": user})
        conn.execute(
            text(
                "INSERT INTO todos (user_id, title, created_at, updated_at)"
                f" SELECT :u, 'todo ' || n, {created}, {created} FROM generate_series(1, :count) n"
            ),
            {"u": user, "count": count},
        )
        ids = conn.execute(
            text("SELECT id::text FROM todos WHERE user_id = :u ORDER BY created_at DESC, id DESC"),
            {"u": user},
        ).scalars()
        return list(ids)


def _page(client: TestClient, user: str, limit: int, cursor: str | None = None) -> Response:
    query = f"?limit={limit}" + ("" if cursor is None else f"&cursor={cursor}")
    answer: Response = client.get(TODOS + query, headers=as_user(user))
    return answer


def _walk(client: TestClient, user: str, limit: int) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        answer = _page(client, user, limit, cursor)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["count"] == len(body["items"]) <= limit
        seen += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            assert "link" not in answer.headers
            return seen
        assert answer.headers["link"] == f'<{TODOS}?limit={limit}&cursor={cursor}>; rel="next"'


@pytest.mark.req("FR-131")
def test_ties_on_created_at_are_paged_by_id(
    client: TestClient, admin_engine: Engine, alice: str
) -> None:
    ids = _give(admin_engine, alice, 30, same_instant=True)
    assert [t["id"] for t in _walk(client, alice, 4)] == ids


@pytest.mark.req("FR-131")
def test_a_page_spells_each_todo_with_the_same_bytes_as_every_other_answer(
    client: TestClient, alice: str
) -> None:
    made = [
        create(client, alice, title=f"t{n}", description="d" if n % 2 else None) for n in range(3)
    ]
    whole = client.get(TODOS, headers=as_user(alice)).content
    page = _page(client, alice, 3).content
    one = client.get(todo_url(made[-1]["id"]), headers=as_user(alice)).content
    items = whole.split(b'"items":')[1].split(b',"count"')[0]
    assert page.startswith(b'{"items":' + items + b',"count":3,"next_cursor":null}')
    assert items.startswith(b"[" + one)


def _tampered(cursor: str) -> list[str]:
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    flipped = [
        bytes(raw[:i]) + bytes([raw[i] ^ 1]) + bytes(raw[i + 1 :]) for i in (0, 5, 12, 30, 40)
    ]
    spelled = [base64.urlsafe_b64encode(b).rstrip(b"=").decode() for b in flipped]
    return [
        *spelled,
        cursor[:-1],
        cursor + "A",
        cursor + "!",
        cursor + "==",
        cursor.upper(),
        "x",
        base64.urlsafe_b64encode(b"\x01" + b"\x00" * 40).decode(),
        "é" * 10,
    ]


def _cursor_key(admin_engine: Engine) -> bytes:
    with admin_engine.begin() as conn:
        secret = conn.execute(
            text("SELECT secret FROM signing_keys WHERE purpose = 'cursor'")
        ).scalar_one()
    return bytes(secret)


@pytest.mark.req("FR-134")
def test_a_deep_page_is_an_index_range_scan_not_an_offset(
    settings: Settings, client: TestClient, admin_engine: Engine, alice: str
) -> None:
    """What keeps page 500 as cheap as page 1 (the benchmark measures it): the keyset
    condition is the index condition, so PostgreSQL starts reading at the cursor."""
    _give(admin_engine, alice, 300)
    cursor = None
    for _ in range(4):
        cursor = _page(client, alice, 50, cursor).json()["next_cursor"]
    assert cursor is not None
    position = cursors.decode(_cursor_key(admin_engine), cursor)
    assert position is not None
    params = {
        "user_id": alice,
        "limit": 50,
        "after_created_at": position.created_at,
        "after_id": str(position.todo_id),
    }
    # On a pool of its own: EXPLAIN is no statement of the service's, for the audit.
    db = Database(settings)
    try:
        rows = asyncio.run(
            db.fetch(uuid.UUID(alice), f"EXPLAIN (ANALYZE, COSTS OFF) {todos.PAGE}", params)
        )
    finally:
        db.close()
    plan = [row[0] for row in rows]
    scan = next(i for i, line in enumerate(plan) if "todos_user_newest_first" in line)
    assert "rows=51" in plan[scan], "\n".join(plan)
    condition = plan[scan + 1]
    assert "Index Cond" in condition and "created_at" in condition, "\n".join(plan)
    assert not any("Offset" in line for line in plan)
