"""Keyset pages (FR-131..134): `limit` and an opaque, tamper-evident `cursor`; a walk
meets each todo that exists throughout exactly once, whatever happens meanwhile; a bad
cursor or limit is 422; a cursor never reaches another user's todos."""

import asyncio
import base64
import random
import threading
import uuid
from typing import Any

import pytest
from api import TODOS, as_user, create, fields, todo_url
from fastapi.testclient import TestClient
from httpx import Response
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
@pytest.mark.parametrize("limit", [1, 7, 100, 250, 1000])
def test_pages_walk_the_whole_list_newest_first(
    client: TestClient, admin_engine: Engine, alice: str, limit: int
) -> None:
    ids = _give(admin_engine, alice, 250)
    walked = _walk(client, alice, limit)
    assert [t["id"] for t in walked] == ids
    whole = client.get(TODOS, headers=as_user(alice)).json()
    assert walked == whole["items"]
    assert set(whole) == {"items", "count"}, "without limit, the 1.0 list"


@pytest.mark.req("FR-131")
def test_ties_on_created_at_are_paged_by_id(
    client: TestClient, admin_engine: Engine, alice: str
) -> None:
    ids = _give(admin_engine, alice, 30, same_instant=True)
    assert [t["id"] for t in _walk(client, alice, 4)] == ids


@pytest.mark.req("FR-131")
def test_an_empty_list_is_one_empty_last_page(client: TestClient, alice: str) -> None:
    answer = _page(client, alice, 10)
    assert answer.json() == {"items": [], "count": 0, "next_cursor": None}
    assert "link" not in answer.headers


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


@pytest.mark.req("FR-132")
def test_a_walk_meets_every_todo_that_exists_throughout_exactly_once(
    client: TestClient, admin_engine: Engine, alice: str
) -> None:
    """2,500 todos in pages of 100 while another client creates and deletes todos:
    between any two pages (so the walk and the changes surely interleave) and, at the
    same time, from a thread of its own."""
    ids = _give(admin_engine, alice, 2500)
    doomed = random.Random(7).sample(ids, 400)
    between, alongside = doomed[:200], doomed[200:]
    steady = set(ids) - set(doomed)
    walking = threading.Event()

    def churn(todo_id: str) -> None:
        client.delete(todo_url(todo_id), headers=as_user(alice))
        create(client, alice, title="made during the walk")

    def alongside_the_walk() -> None:
        while walking.is_set() and alongside:
            churn(alongside.pop())

    walking.set()
    other = threading.Thread(target=alongside_the_walk)
    other.start()
    walked: list[str] = []
    cursor = None
    pages = 0
    try:
        while True:
            body = _page(client, alice, 100, cursor).json()
            walked += [t["id"] for t in body["items"]]
            pages += 1
            for _ in range(5):
                churn(between.pop())
            if (cursor := body["next_cursor"]) is None:
                break
    finally:
        walking.clear()
        other.join()
    assert pages >= 20, "every page was followed by changes"
    assert len(walked) == len(set(walked)), "no todo twice"
    assert steady <= set(walked), "no todo that existed throughout was skipped"


@pytest.mark.req("FR-133", "FR-020")
@pytest.mark.parametrize("limit", ["0", "1001", "-1", "ten", "", "1.5", "1e3", " 5"])
def test_a_limit_out_of_range_is_422_naming_it(client: TestClient, alice: str, limit: str) -> None:
    answer = client.get(TODOS, params={"limit": limit}, headers=as_user(alice))
    assert "from 1 to 1000" in fields(answer)["limit"]


@pytest.mark.req("FR-133", "FR-108")
def test_limit_and_cursor_must_each_come_once(
    client: TestClient, admin_engine: Engine, alice: str
) -> None:
    _give(admin_engine, alice, 5)
    cursor = _page(client, alice, 2).json()["next_cursor"]
    twice = client.get(f"{TODOS}?limit=2&limit=3", headers=as_user(alice))
    assert fields(twice)["limit"] == "must be given once"
    both = client.get(f"{TODOS}?limit=2&cursor={cursor}&cursor={cursor}", headers=as_user(alice))
    assert fields(both)["cursor"] == "must be given once"


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


@pytest.mark.req("FR-133")
def test_a_tampered_or_made_up_cursor_is_422_naming_it(
    client: TestClient, admin_engine: Engine, alice: str
) -> None:
    _give(admin_engine, alice, 5)
    cursor = _page(client, alice, 2).json()["next_cursor"]
    for bad in _tampered(cursor):
        answer = client.get(TODOS, params={"limit": "2", "cursor": bad}, headers=as_user(alice))
        assert "cursor" in fields(answer), bad
    without_limit = client.get(TODOS, params={"cursor": cursor}, headers=as_user(alice))
    assert "limit" in fields(without_limit)


@pytest.mark.req("FR-133", "FR-013", "FR-014")
def test_a_cursor_replayed_by_another_user_shows_only_that_users_todos(
    client: TestClient, admin_engine: Engine, alice: str, bob: str
) -> None:
    _give(admin_engine, alice, 50)
    bobs = set(_give(admin_engine, bob, 50))
    cursor = _page(client, alice, 10).json()["next_cursor"]
    answer = _page(client, bob, 100, cursor)
    assert answer.status_code == 200
    assert {t["id"] for t in answer.json()["items"]} <= bobs
    assert all(t["user_id"] == bob for t in answer.json()["items"])


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
