"""2.0's lists: filters and search (FR-201), sorts (FR-202), pages by default with
cursors bound to their filters and sort (FR-203), count and ETag (FR-204); each only
ever over the caller's own todos."""

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from api import TODOS, as_user, fields
from fastapi.testclient import TestClient
from sql_audit import violations
from sqlalchemy import text
from sqlalchemy.engine import Engine
from test_v2_todo import V2, create_v2, patch_v2

from service.db import Database
from service.settings import Settings
from service.store import lists

Params = list[tuple[str, str | int | float | bool | None]]
SORTS = list(lists.SORTS)


def listed(client: TestClient, user: str, params: Params) -> dict[str, Any]:
    answer = client.get(V2, params=params, headers=as_user(user))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert body["count"] == len(body["items"])
    return body


def titles(client: TestClient, user: str, params: Params) -> list[str]:
    return [t["title"] for t in listed(client, user, [*params, ("sort", "title")])["items"]]


def walk(
    client: TestClient, user: str, params: Params, between: Callable[[], None] = lambda: None
) -> list[dict[str, Any]]:
    """Every page, following next_cursor (and checking Link says the same)."""
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        answer = client.get(
            V2, params=[*params, *([("cursor", cursor)] if cursor else [])], headers=as_user(user)
        )
        assert answer.status_code == 200, answer.text
        page = answer.json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            assert "link" not in answer.headers
            return seen
        assert f"cursor={cursor}" in answer.headers["link"]
        between()


@pytest.fixture
def four(client: TestClient, alice: str, bob: str) -> dict[str, str]:
    """Alice's four todos, by title; Bob holds look-alikes of each, which no list of
    Alice's may ever show."""
    made: dict[str, str] = {}
    for user in (bob, alice):
        for body in (
            dict(title="Buy milk", priority="high", tags=["home", "errands"],
                 due_at="2026-12-01T10:00:00Z"),
            dict(title="Write report", description="for finance", priority="medium",
                 tags=["work"], due_at="2026-12-05T10:00:00+00:00"),
            dict(title="Call mom", priority="none"),
            dict(title="Pay taxes", priority="low", tags=["home", "money"],
                 due_at="2026-11-30T00:00:00Z"),
        ):  # fmt: skip
            todo = create_v2(client, user, **body)
            made[str(body["title"])] = todo["id"]
        for done in ("Write report", "Pay taxes"):
            patch_v2(client, user, made[done], is_completed=True)
    return made


FILTERED: list[tuple[Params, list[str]]] = [
    ([("completed", "true")], ["Pay taxes", "Write report"]),
    ([("completed", "false")], ["Buy milk", "Call mom"]),
    ([("priority", "high"), ("priority", "low")], ["Buy milk", "Pay taxes"]),
    ([("priority", "none")], ["Call mom"]),
    ([("tag", "home")], ["Buy milk", "Pay taxes"]),
    ([("tag", "home"), ("tag", "money")], ["Pay taxes"]),
    ([("tag", "Home")], []),
    ([("due_after", "2026-12-01T10:00:00Z")], ["Write report"]),
    ([("due_after", "2026-12-01T11:00:00+01:00")], ["Write report"]),
    ([("due_before", "2026-12-01T10:00:00Z")], ["Pay taxes"]),
    ([("due_after", "2026-11-30T00:00:00Z"), ("due_before", "2026-12-05T10:00:00Z")], ["Buy milk"]),
    ([("completed", "false"), ("tag", "home")], ["Buy milk"]),
    (
        [
            ("completed", "true"),
            ("priority", "medium"),
            ("due_after", "2026-01-01T00:00:00Z"),
            ("q", "FINANCE"),
        ],
        ["Write report"],
    ),
    ([("completed", "true"), ("tag", "work"), ("priority", "low")], []),
    ([("unknown", "ignored")], ["Buy milk", "Call mom", "Pay taxes", "Write report"]),
]


@pytest.mark.req("FR-201", "FR-204")
@pytest.mark.parametrize(("params", "expected"), FILTERED)
def test_each_filter_alone_and_combined_lists_the_todos_meeting_all_of_them(
    client: TestClient, alice: str, four: dict[str, str], params: Params, expected: list[str]
) -> None:
    assert titles(client, alice, params) == expected


@pytest.mark.req("FR-201", "FR-202")
@pytest.mark.parametrize(
    ("params", "expected"), [(p, e) for p, e in FILTERED if any(k == "tag" for k, _ in p)]
)
@pytest.mark.parametrize("sort", ["-created_at", "created_at"])
def test_a_tag_filter_read_from_todo_tags_lists_the_same_todos_in_created_order(
    client: TestClient,
    alice: str,
    four: dict[str, str],
    params: Params,
    expected: list[str],
    sort: str,
) -> None:
    created = ["Buy milk", "Write report", "Call mom", "Pay taxes"]
    order = [t for t in created if t in expected]
    items = listed(client, alice, [*params, ("sort", sort)])["items"]
    assert [t["title"] for t in items] == (order[::-1] if sort.startswith("-") else order)


@pytest.mark.req("FR-191", "FR-201", "FR-193")
def test_todo_tags_follows_every_write_of_tags_and_only_its_owner_reads_it(
    client: TestClient, settings: Settings, alice: str, bob: str
) -> None:
    todo = create_v2(client, alice, title="t", tags=["a", "b"])
    create_v2(client, bob, title="theirs", tags=["a"])

    def tagged(tag: str) -> list[str]:
        return [t["id"] for t in listed(client, alice, [("tag", tag)])["items"]]

    assert tagged("a") == tagged("b") == [todo["id"]]
    patch_v2(client, alice, todo["id"], tags=["b", "c"])
    assert (tagged("a"), tagged("b"), tagged("c")) == ([], [todo["id"]], [todo["id"]])
    # A 1.x PATCH leaves the tags, and so their rows, as they are.
    v1 = client.patch(f"{TODOS}/{todo['id']}", json={"title": "v1"}, headers=as_user(alice))
    assert v1.status_code == 200, v1.text
    assert tagged("c") == [todo["id"]]
    db = Database(settings)  # a pool of its own: these statements are none of the service's
    try:
        rows = asyncio.run(db.fetch(uuid.UUID(alice), "SELECT user_id, tag FROM todo_tags", {}))
        assert sorted((str(u), t) for u, t in rows) == [(alice, "b"), (alice, "c")]
        assert client.delete(f"{V2}/{todo['id']}", headers=as_user(alice)).status_code == 204
        assert asyncio.run(db.fetch(uuid.UUID(alice), "SELECT tag FROM todo_tags", {})) == []
    finally:
        db.close()


@pytest.fixture
def texts(client: TestClient, alice: str, bob: str) -> None:
    for user in (bob, alice):
        for title, description in (
            ("Café crème", None),
            ("STRASSE", "groß"),
            ("100% done", None),
            ("100 percent", "half"),
            ("snake_case", None),
            ("snakeXcase", None),
            ("back\\slash", None),
            ("backslash", None),
            ("Buy", "milk"),
        ):
            create_v2(client, user, title=title, description=description)


SEARCHED = [
    ("CAFÉ", ["Café crème"]),
    ("é", ["Café crème"]),
    ("strasse", ["STRASSE"]),
    ("GROSS", ["STRASSE"]),
    ("ß", ["STRASSE"]),
    ("%", ["100% done"]),
    ("100%", ["100% done"]),
    ("_", ["snake_case"]),
    ("e_c", ["snake_case"]),
    ("\\", ["back\\slash"]),
    ("crème café", ["Café crème"]),
    ("  café   missing ", []),
    ("buy MILK", ["Buy"]),
    ("ha 100", ["100 percent"]),
]


@pytest.mark.req("FR-201")
@pytest.mark.parametrize(("q", "expected"), SEARCHED)
def test_q_finds_every_word_in_title_or_description_by_unicode_case_folding(
    client: TestClient, alice: str, texts: None, q: str, expected: list[str]
) -> None:
    assert titles(client, alice, [("q", q)]) == expected


@pytest.mark.req("FR-201", "FR-203")
@pytest.mark.parametrize("sort", ["-created_at", "created_at"])
def test_q_in_created_ats_order_walks_the_same_matches_a_page_of_one_at_a_time(
    client: TestClient, alice: str, bob: str, texts: None, sort: str
) -> None:
    """In created_at's order the page is found through the trigram index (migration
    0008's todo_search_page): the same matches as under any other sort, in the list's
    order, a cursor at a time, with the other filters applied with them."""
    for q, expected in SEARCHED:
        walked = walk(client, alice, [("q", q), ("sort", sort), ("limit", "1")])
        assert sorted(t["title"] for t in walked) == sorted(expected), q
        order = [(t["created_at"], t["id"]) for t in walked]
        assert order == sorted(order, reverse=sort.startswith("-")), q
    many = walk(client, alice, [("q", "c"), ("sort", sort), ("limit", "2")])
    assert sorted(t["title"] for t in many) == sorted(titles(client, alice, [("q", "c")]))
    assert len(many) > 3
    done = listed(client, alice, [("q", "c"), ("sort", sort)])["items"][0]
    answer = client.patch(f"{V2}/{done['id']}", json={"is_completed": True}, headers=as_user(alice))
    assert answer.status_code == 200, answer.text
    completed = listed(client, alice, [("q", "c"), ("sort", sort), ("completed", "true")])
    assert [t["id"] for t in completed["items"]] == [done["id"]]


@pytest.fixture
def ties(admin_engine: Engine, alice: str, bob: str) -> list[dict[str, Any]]:
    """Todos with every kind of tie: equal keys, equal created_at (then id decides),
    and missing due dates; as rows, with Bob's look-alikes beside them."""
    start = datetime(2026, 12, 1, tzinfo=UTC)
    rows: list[dict[str, Any]] = []
    for n in range(14):
        rows.append(
            {
                "id": str(uuid.uuid4()),
                "title": ["b", "B", "a", "é", "E", "z", "ß"][n % 7],
                "priority": ["none", "low", "medium", "high"][n % 4],
                "due_at": None if n % 3 == 0 else start + timedelta(days=n % 2),
                # Pairs share a created_at: the id breaks those ties.
                "created_at": start + timedelta(seconds=n // 2),
            }
        )
    with admin_engine.begin() as conn:
        for user in (bob, alice):
            conn.execute(text("INSERT INTO users (id) VALUES (:u)"), {"u": user})
            for row in rows:
                conn.execute(
                    text(
                        "INSERT INTO todo_items (id, user_id, title, priority, due_at, created_at,"
                        " updated_at, title_folded, description_folded)"
                        " VALUES (:id, :u, :title, CAST(:priority AS todo_priority), :due_at,"
                        " :created_at, :created_at, :folded, '')"
                    ),
                    {
                        **row,
                        "id": row["id"] if user == alice else str(uuid.uuid4()),
                        "u": user,
                        "folded": row["title"].casefold(),
                    },
                )
    return rows


_RANK = {"none": 0, "low": 1, "medium": 2, "high": 3}
_NEVER = datetime.max.replace(tzinfo=UTC)


def expected_order(rows: list[dict[str, Any]], sort: str) -> list[str]:
    descending = sort.startswith("-")
    name = sort.lstrip("-")

    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        tie = (row["created_at"], uuid.UUID(row["id"]))
        if name == "created_at":
            return tie
        if name == "priority":
            return (_RANK[row["priority"]], *tie)
        if name == "title":
            return (row["title"].casefold(), *tie)
        return tie  # due_at: below

    if name != "due_at":
        return [r["id"] for r in sorted(rows, key=key, reverse=descending)]
    due = [r for r in rows if r["due_at"] is not None]
    undue = [r for r in rows if r["due_at"] is None]
    ordered = sorted(due, key=lambda r: (r["due_at"], *key(r)), reverse=descending)
    return [r["id"] for r in ordered + sorted(undue, key=key, reverse=descending)]


@pytest.mark.req("FR-202", "FR-203")
@pytest.mark.parametrize("sort", SORTS)
def test_every_sort_breaks_ties_by_created_at_then_id_and_puts_missing_due_dates_last(
    client: TestClient, alice: str, ties: list[dict[str, Any]], sort: str
) -> None:
    whole = listed(client, alice, [("sort", sort)])
    assert whole["next_cursor"] is None
    assert [t["id"] for t in whole["items"]] == expected_order(ties, sort)
    paged = walk(client, alice, [("sort", sort), ("limit", "3")])
    assert [t["id"] for t in paged] == expected_order(ties, sort)


@pytest.mark.req("FR-203", "FR-204")
def test_a_page_is_the_default_of_fifty(
    client: TestClient, admin_engine: Engine, alice: str
) -> None:
    with admin_engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id) VALUES (:u)"), {"u": alice})
        conn.execute(
            text(
                "INSERT INTO todos (user_id, title)"
                " SELECT :u, 'n' || n FROM generate_series(1, 51) n"
            ),
            {"u": alice},
        )
    first = listed(client, alice, [])
    assert (first["count"], first["next_cursor"] is not None) == (50, True)
    assert len(walk(client, alice, [("q", "N")])) == 51


@pytest.mark.req("FR-203")
@pytest.mark.parametrize("sort", SORTS)
def test_a_walk_under_every_sort_meets_each_steady_todo_once_while_others_write(
    client: TestClient, alice: str, sort: str
) -> None:
    made = [
        create_v2(
            client, alice, title=f"t{n % 4}", priority=["low", "high"][n % 2],
            due_at=None if n % 3 else f"2026-12-0{1 + n % 5}T00:00:00Z", tags=["steady"],
        )["id"]
        for n in range(12)
    ]  # fmt: skip
    writes = iter(range(100))

    def others_write() -> None:
        n = next(writes)
        create_v2(client, alice, title=f"t{n % 5}", priority="medium", tags=["steady"])
        if n < 3:
            client.delete(f"{V2}/{made[-1 - n]}", headers=as_user(alice))
        # A change that keeps every sort key: the todo stays steady.
        patch_v2(client, alice, made[n % 8], description=f"write {n}", is_completed=n % 2 == 0)

    seen = [
        t["id"]
        for t in walk(
            client, alice, [("sort", sort), ("limit", "2"), ("tag", "steady")], others_write
        )
    ]
    assert len(seen) == len(set(seen)), "a todo met twice"
    assert set(made[:-3]) <= set(seen)


@pytest.mark.req("FR-203")
def test_a_cursor_belongs_to_its_filters_and_sort(client: TestClient, alice: str, bob: str) -> None:
    for n in range(3):
        create_v2(client, alice, title=f"a{n}", tags=["x"])
        create_v2(client, bob, title=f"b{n}", tags=["x"])
    asked = [("tag", "x"), ("sort", "title"), ("q", "A")]
    cursor = listed(client, alice, [*asked, ("limit", "1")])["next_cursor"]
    assert cursor is not None
    # Another limit is the same list; other filters or another sort are not.
    assert listed(client, alice, [*asked, ("limit", "5"), ("cursor", cursor)])["count"] == 2
    for other in (
        [("tag", "x"), ("sort", "-title"), ("q", "A")],
        [("tag", "x"), ("sort", "title")],
        [("tag", "x"), ("tag", "y"), ("sort", "title"), ("q", "A")],
        [("tag", "x"), ("sort", "title"), ("q", "B")],
        [*asked, ("completed", "false")],
    ):
        answer = client.get(V2, params=[*other, ("cursor", cursor)], headers=as_user(alice))
        assert set(fields(answer)) == {"cursor"}, other
    # A 1.x cursor is no 2.0 one, nor the other way round.
    old = client.get(f"{TODOS}?limit=1", headers=as_user(alice)).json()["next_cursor"]
    assert set(fields(client.get(V2, params=[("cursor", old)], headers=as_user(alice)))) == {
        "cursor"
    }
    answer = client.get(TODOS, params=[("limit", "1"), ("cursor", cursor)], headers=as_user(alice))
    assert set(fields(answer)) == {"cursor"}
    # A position is no permission: Bob's walk from Alice's cursor meets only Bob's.
    hers = listed(client, alice, [*asked[:2], ("limit", "1")])["next_cursor"]
    theirs = listed(client, bob, [*asked[:2], ("limit", "5"), ("cursor", hers)])["items"]
    assert [t["title"] for t in theirs] == ["b0", "b1", "b2"]


@pytest.mark.req("FR-201", "FR-203")
def test_every_parameter_out_of_its_domain_or_repeated_is_named_in_one_422(
    client: TestClient, alice: str
) -> None:
    bad: Params = [
        ("completed", "yes"),
        ("priority", "urgent"),
        ("tag", " x"),
        ("due_after", "2026-12-01"),
        ("due_before", "2026-12-01T10:00:00"),
        ("q", "x" * 101),
        ("sort", "due"),
        ("limit", "0"),
        ("cursor", "made-up"),
    ]
    assert set(fields(client.get(V2, params=bad, headers=as_user(alice)))) == {n for n, _ in bad}
    for name, value in [
        ("completed", "true"), ("due_after", "2026-12-01T10:00:00Z"),
        ("due_before", "2026-12-01T10:00:00Z"), ("q", "x"), ("sort", "title"), ("limit", "5"),
    ]:  # fmt: skip
        twice = client.get(V2, params=[(name, value), (name, value)], headers=as_user(alice))
        assert set(fields(twice)) == {name}
    for name, value in [
        ("q", ""), ("sort", ""), ("limit", ""), ("limit", "1001"), ("limit", "1.5"),
        ("tag", "x" * 33), ("tag", ""), ("priority", ""), ("completed", ""), ("due_after", ""),
    ]:  # fmt: skip
        assert set(fields(client.get(V2, params=[(name, value)], headers=as_user(alice)))) == {name}
    too_many: Params = [("tag", f"t{n}") for n in range(11)]
    assert set(fields(client.get(V2, params=too_many, headers=as_user(alice)))) == {"tag"}
    # The contract's maxItems, 4 priorities, holds even when they repeat.
    five: Params = [("priority", p) for p in ("none", "low", "medium", "high", "high")]
    assert set(fields(client.get(V2, params=five, headers=as_user(alice)))) == {"priority"}


@pytest.mark.req("FR-204", "FR-203")
@pytest.mark.parametrize(
    "params",
    [
        [],
        [("sort", "title"), ("limit", "1")],
        [("q", "milk"), ("priority", "high")],
        [("completed", "true")],
    ],
)
def test_the_lists_etag_answers_304_for_every_filter_and_sort_until_a_todo_changes(
    client: TestClient, alice: str, params: Params
) -> None:
    todo = create_v2(client, alice, title="milk", priority="high")
    first = client.get(V2, params=params, headers=as_user(alice))
    etag = first.headers["etag"]
    unchanged = client.get(V2, params=params, headers={**as_user(alice), "If-None-Match": etag})
    assert (unchanged.status_code, unchanged.content, unchanged.headers["etag"]) == (304, b"", etag)
    head = client.head(V2, params=params, headers=as_user(alice))
    assert (head.status_code, head.content, head.headers["etag"]) == (200, b"", etag)
    patch_v2(client, alice, todo["id"], tags=["changed"])
    changed = client.get(V2, params=params, headers={**as_user(alice), "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag


@pytest.mark.req("FR-201", "FR-202", "FR-203")
def test_no_filter_sort_search_or_cursor_reaches_another_users_todos(
    client: TestClient, alice: str, bob: str, four: dict[str, str], texts: None
) -> None:
    mine = {t["id"] for t in walk(client, alice, [("limit", "1000")])}
    theirs = {t["id"] for t in walk(client, bob, [("limit", "1000")])}
    assert mine and theirs and not mine & theirs
    sorted_: list[Params] = [[("sort", s), ("limit", "2")] for s in SORTS]
    searched: list[Params] = [
        [("q", q), ("sort", sort), ("limit", "1")]
        for q, _ in SEARCHED
        for sort in ("-created_at", "created_at", "title")
    ]
    asks = sorted_ + [p for p, _ in FILTERED] + searched
    for asked in asks:
        assert {t["id"] for t in walk(client, alice, asked)} <= mine, asked
    for todo in theirs:
        assert client.get(f"{V2}/{todo}", headers=as_user(alice)).status_code == 404


@pytest.mark.req("FR-203", "FR-013")
def test_each_sorts_page_is_restricted_to_one_user_and_read_in_its_index_order(
    settings: Settings, client: TestClient, alice: str
) -> None:
    """The SQL audit holds for every sort's statement, and each ORDER BY is exactly an
    index's order: with sorting taken away, the plan still needs no Sort."""
    create_v2(client, alice, title="t", due_at="2026-12-01T00:00:00Z")
    db = Database(settings)  # a pool of its own: EXPLAIN is none of the service's statements
    try:
        for sort in lists.SORTS.values():
            assert violations(sort.statement) == [], sort.name
            params = {
                "user_id": alice, "limit": 50, "after_created_at": None, "after_id": None,
                "after_key": None, **lists.Filters().values(),
            }  # fmt: skip
            rows = asyncio.run(
                db.fetch(
                    uuid.UUID(alice),
                    "SET LOCAL enable_sort = off; SET LOCAL enable_seqscan = off;"
                    f" EXPLAIN (COSTS OFF) {sort.statement}",
                    params,
                )
            )
            plan = "\n".join(row[0] for row in rows)
            assert "Sort" not in plan and "Index Scan" in plan, (sort.name, plan)
    finally:
        db.close()
