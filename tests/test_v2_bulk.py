"""Many at once (FR-211 to FR-213): PATCH and DELETE /api/v2/todos change or delete every
todo of the caller that meets the list's filters, in one atomic step, never another
user's, and never more than the filters say."""

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import pytest
from api import Answer, as_user, fields, problem
from conftest import make_settings
from fastapi.testclient import TestClient
from test_v2_todo import V2, create_v2, patch_v2

from service.app import create_app
from service.db import Database


def bulk_patch(
    client: TestClient, user: str, query: str, headers: dict[str, str] | None = None, **body: Any
) -> Answer:
    answer: Answer = client.patch(
        f"{V2}?{query}", json=body, headers={**as_user(user), **(headers or {})}
    )
    return answer


def bulk_delete(
    client: TestClient, user: str, query: str, headers: dict[str, str] | None = None
) -> Answer:
    answer: Answer = client.delete(f"{V2}?{query}", headers={**as_user(user), **(headers or {})})
    return answer


def todos_of(client: TestClient, user: str) -> dict[str, dict[str, Any]]:
    listed = client.get(f"{V2}?limit=1000", headers=as_user(user))
    assert listed.status_code == 200, listed.text
    return {todo["id"]: todo for todo in listed.json()["items"]}


def etag_of(client: TestClient, user: str, todo_id: str) -> str:
    return str(client.get(f"{V2}/{todo_id}", headers=as_user(user)).headers["etag"])


def list_etag(client: TestClient, user: str) -> str:
    return str(client.get(V2, headers=as_user(user)).headers["etag"])


@pytest.mark.req("FR-211")
def test_toggle_all_completes_every_open_todo_and_counts_them(
    client: TestClient, alice: str
) -> None:
    opened = [create_v2(client, alice, title=f"open {n}") for n in range(3)]
    done = create_v2(client, alice, title="done")
    done = patch_v2(client, alice, done["id"], is_completed=True)
    done_tag = etag_of(client, alice, done["id"])

    toggled = bulk_patch(client, alice, "completed=false", is_completed=True)
    assert (toggled.status_code, toggled.json()) == (200, {"updated": 3})
    after = todos_of(client, alice)
    assert all(todo["is_completed"] and todo["completed_at"] for todo in after.values())
    for todo in opened:
        assert after[todo["id"]]["updated_at"] > todo["updated_at"]
    assert after[done["id"]] == done, "the completed todo is untouched"
    assert etag_of(client, alice, done["id"]) == done_tag

    reopened = bulk_patch(client, alice, "all=true", is_completed=False)
    assert reopened.json() == {"updated": 4}
    assert not any(todo["completed_at"] for todo in todos_of(client, alice).values())


@pytest.mark.req("FR-211")
def test_a_todo_already_holding_every_value_given_keeps_its_updated_at_and_etag(
    client: TestClient, alice: str
) -> None:
    due = "2026-12-24T18:00:00+00:00"
    holding = create_v2(client, alice, title="holds", priority="high", due_at=due)
    low = create_v2(client, alice, title="low", priority="low", due_at=due)
    undated = create_v2(client, alice, title="undated", priority="high")
    kept = etag_of(client, alice, holding["id"])

    changed = bulk_patch(client, alice, "all=true", priority="high", due_at=due)
    assert changed.json() == {"updated": 2}
    after = todos_of(client, alice)
    assert after[holding["id"]] == holding
    assert etag_of(client, alice, holding["id"]) == kept
    assert after[low["id"]]["priority"] == "high" and after[undated["id"]]["due_at"] == due
    cleared = bulk_patch(client, alice, "priority=high", due_at=None)
    assert cleared.json() == {"updated": 3}
    assert all(todo["due_at"] is None for todo in todos_of(client, alice).values())
    assert bulk_patch(client, alice, "priority=high", due_at=None).json() == {"updated": 0}


@pytest.mark.req("FR-211", "FR-212", "FR-201")
def test_the_filters_are_the_lists_filters(client: TestClient, alice: str) -> None:
    create_v2(client, alice, title="Call Ana", priority="low", tags=["work", "phone"])
    create_v2(client, alice, title="call the bank", priority="low", tags=["work"])
    create_v2(client, alice, title="Call Bo", priority="high", tags=["work", "phone"])
    create_v2(client, alice, title="Write", priority="low", tags=["phone"])
    query = "priority=low&tag=phone&q=CALL"
    listed = client.get(f"{V2}?{query}", headers=as_user(alice)).json()["count"]
    assert listed == 1
    assert bulk_patch(client, alice, query, is_completed=True).json() == {"updated": 1}
    assert bulk_delete(client, alice, "completed=true&tag=work").json() == {"deleted": 1}
    assert {t["title"] for t in todos_of(client, alice).values()} == {
        "call the bank",
        "Call Bo",
        "Write",
    }


@pytest.mark.req("FR-212")
def test_clear_completed_deletes_every_completed_todo_and_counts_them(
    client: TestClient, alice: str
) -> None:
    kept = create_v2(client, alice, title="open")
    for n in range(3):
        done = create_v2(client, alice, title=f"done {n}")
        patch_v2(client, alice, done["id"], is_completed=True)
    cleared = bulk_delete(client, alice, "completed=true")
    assert (cleared.status_code, cleared.json()) == (200, {"deleted": 3})
    assert list(todos_of(client, alice)) == [kept["id"]]
    assert bulk_delete(client, alice, "completed=true").json() == {"deleted": 0}
    assert bulk_delete(client, alice, "all=true").json() == {"deleted": 1}
    assert todos_of(client, alice) == {}


@pytest.mark.req("FR-213")
@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("", "all"),
        ("complete=true", "complete"),
        ("completed=true&priorty=high", "priorty"),
        ("all=false", "all"),
        ("all=true&all=true", "all"),
        ("all=true&sort=title", "sort"),
        ("completed=true&limit=10", "limit"),
        ("completed=yes", "completed"),
        ("tag=", "tag"),
        # A list reads a q of spaces as no filter: a bulk write must not read it as all.
        ("q=%20%20", "q"),
        ("q=%09", "q"),
    ],
)
def test_a_missing_filter_or_an_unknown_parameter_is_a_422_naming_it_and_nothing_changes(
    client: TestClient, alice: str, query: str, named: str
) -> None:
    todo = create_v2(client, alice, title="t")
    before = list_etag(client, alice)
    patched = bulk_patch(client, alice, query, is_completed=True)
    assert named in fields(patched)
    assert named in fields(bulk_delete(client, alice, query))
    assert list_etag(client, alice) == before
    assert todos_of(client, alice) == {todo["id"]: todo}


@pytest.mark.req("FR-213", "FR-211")
@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({}, "body"),
        ({"title": "x"}, "title"),
        ({"tags": ["a"]}, "tags"),
        ({"is_completed": None}, "is_completed"),
        ({"priority": "urgent"}, "priority"),
        ({"due_at": "tomorrow"}, "due_at"),
    ],
)
def test_a_bulk_patch_takes_only_is_completed_priority_and_due_at_as_a_patch_does(
    client: TestClient, alice: str, body: dict[str, Any], named: str
) -> None:
    create_v2(client, alice, title="t")
    before = list_etag(client, alice)
    refused = bulk_patch(client, alice, "all=true&colour=red", **body)
    assert set(fields(refused)) == {"colour", named}
    assert list_etag(client, alice) == before


@pytest.mark.req("FR-213", "FR-112")
def test_if_match_with_the_lists_etag_and_a_412_after_any_change(
    client: TestClient, alice: str, bob: str
) -> None:
    one = create_v2(client, alice, title="one")
    create_v2(client, alice, title="two")
    etag = list_etag(client, alice)
    matched = bulk_patch(client, alice, "all=true", {"If-Match": etag}, priority="low")
    assert matched.json() == {"updated": 2}
    stale = bulk_patch(client, alice, "all=true", {"If-Match": etag}, priority="high")
    problem(stale, 412, "PRECONDITION_FAILED")

    etag = list_etag(client, alice)
    patch_v2(client, alice, one["id"], title="renamed")  # a change the filter does not meet
    before = todos_of(client, alice)
    for refused in (
        bulk_patch(client, alice, "priority=high", {"If-Match": etag}, is_completed=True),
        bulk_delete(client, alice, "all=true", {"If-Match": etag}),
        bulk_delete(client, alice, "all=true", {"If-Match": list_etag(client, bob)}),
        bulk_delete(client, alice, "all=true", {"If-Match": f"W/{list_etag(client, alice)}"}),
    ):
        problem(refused, 412, "PRECONDITION_FAILED")
    assert todos_of(client, alice) == before

    current = list_etag(client, alice)
    either = f'"{etag[1:-1]}", {current}'
    assert bulk_delete(client, alice, "priority=high", {"If-Match": either}).json() == {
        "deleted": 0
    }
    assert bulk_delete(client, alice, "all=true", {"If-Match": "*"}).json() == {"deleted": 2}


@pytest.mark.req("FR-213", "FR-121", "FR-122")
def test_a_replay_under_an_idempotency_key_answers_the_same_and_writes_nothing(
    client: TestClient, alice: str
) -> None:
    todos = [create_v2(client, alice, title=f"t{n}") for n in range(3)]
    etag = list_etag(client, alice)
    keyed = {"Idempotency-Key": "toggle-1", "If-Match": etag}
    first = bulk_patch(client, alice, "completed=false", keyed, is_completed=True)
    assert first.json() == {"updated": 3} and "idempotent-replayed" not in first.headers
    patch_v2(client, alice, todos[0]["id"], is_completed=False)
    # The same request, its If-Match now stale: the first answer, and nothing written.
    again = bulk_patch(client, alice, "completed=false", keyed, is_completed=True)
    assert (again.status_code, again.content) == (200, first.content)
    assert again.headers["idempotent-replayed"] == "true"
    assert not todos_of(client, alice)[todos[0]["id"]]["is_completed"]

    other = bulk_patch(client, alice, "completed=false", keyed, priority="high")
    problem(other, 422, "IDEMPOTENCY_KEY_REUSED")
    problem(bulk_delete(client, alice, "completed=false", keyed), 422, "IDEMPOTENCY_KEY_REUSED")
    created = client.post(V2, json={"title": "t"}, headers={**as_user(alice), **keyed})
    problem(created, 422, "IDEMPOTENCY_KEY_REUSED")

    cleared = {"Idempotency-Key": "clear-1"}
    assert bulk_delete(client, alice, "completed=true", cleared).json() == {"deleted": 2}
    replayed = bulk_delete(client, alice, "completed=true", cleared)
    assert replayed.json() == {"deleted": 2}
    assert replayed.headers["idempotent-replayed"] == "true"
    assert list(todos_of(client, alice)) == [todos[0]["id"]]


@pytest.mark.req("FR-213", "FR-121", "FR-112")
def test_a_412_keeps_no_key_so_a_retry_with_the_new_etag_writes(
    client: TestClient, alice: str
) -> None:
    create_v2(client, alice, title="t")
    stale = list_etag(client, alice)
    create_v2(client, alice, title="u")
    keyed = {"Idempotency-Key": "retry-1"}
    refused = bulk_delete(client, alice, "all=true", {**keyed, "If-Match": stale})
    problem(refused, 412, "PRECONDITION_FAILED")
    fresh = {**keyed, "If-Match": list_etag(client, alice)}
    retried = bulk_delete(client, alice, "all=true", fresh)
    assert retried.json() == {"deleted": 2} and "idempotent-replayed" not in retried.headers


@pytest.mark.req("FR-213", "FR-112")
def test_a_new_users_list_etag_matches_their_empty_list(client: TestClient, alice: str) -> None:
    etag = list_etag(client, alice)
    answer = bulk_patch(client, alice, "all=true", {"If-Match": etag}, is_completed=True)
    assert answer.json() == {"updated": 0}


@pytest.mark.req("FR-213", "FR-121")
def test_a_creates_key_is_refused_to_a_bulk_write(client: TestClient, alice: str) -> None:
    key = {"Idempotency-Key": "made-1"}
    made = client.post(V2, json={"title": "t"}, headers={**as_user(alice), **key})
    assert made.status_code == 201
    problem(bulk_delete(client, alice, "all=true", key), 422, "IDEMPOTENCY_KEY_REUSED")
    assert len(todos_of(client, alice)) == 1


@pytest.mark.req("FR-211", "FR-212", "FR-011")
def test_another_users_todos_are_never_changed_or_deleted(
    client: TestClient, alice: str, bob: str
) -> None:
    bobs = [create_v2(client, bob, title=f"bob {n}") for n in range(3)]
    create_v2(client, alice, title="alice")
    bob_tag = list_etag(client, bob)
    assert bulk_patch(client, alice, "all=true", is_completed=True).json() == {"updated": 1}
    assert bulk_delete(client, alice, "all=true").json() == {"deleted": 1}
    assert todos_of(client, bob) == {todo["id"]: todo for todo in bobs}
    assert list_etag(client, bob) == bob_tag


@pytest.mark.req("FR-213", "FR-152")
@pytest.mark.usefixtures("admin_engine")
def test_each_bulk_write_is_one_request_to_the_rate_limit(postgres_url: str, alice: str) -> None:
    """Whatever it answers: a write, a 412 (whose step the failed statement rolled
    back), a replay (two statements), a 422."""
    settings = make_settings(postgres_url, TODO_RATE_LIMIT="100/60")
    db = Database(settings)
    try:
        limited = TestClient(create_app(settings, db), raise_server_exceptions=False)
        create_v2(limited, alice, title="t")
        stale = list_etag(limited, alice)
        keyed = {"Idempotency-Key": "once"}
        answers = [
            bulk_patch(limited, alice, "all=true", is_completed=True),
            bulk_patch(limited, alice, "all=true", {"If-Match": stale}, is_completed=False),
            bulk_delete(limited, alice, "completed=true", keyed),
            bulk_delete(limited, alice, "completed=true", keyed),
            bulk_delete(limited, alice, ""),
        ]
        assert [a.status_code for a in answers] == [200, 412, 200, 200, 422]
        left = [int(re.findall(r";r=(\d+);", a.headers["ratelimit"])[0]) for a in answers]
        assert left == list(range(left[0], left[0] - 5, -1)), left
    finally:
        db.close()


@pytest.mark.req("FR-211", "FR-212")
def test_api_v1_has_no_bulk_writes(client: TestClient, alice: str) -> None:
    answer = client.delete("/api/v1/todos?all=true", headers=as_user(alice))
    assert answer.status_code == 405


def _race(*calls: Any) -> list[Answer]:
    """Each call on a thread of its own, all let go at once."""
    start = threading.Barrier(len(calls))

    def run(call: Any) -> Answer:
        start.wait()
        answer: Answer = call()
        return answer

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


@pytest.mark.req("FR-213", "FR-013")
def test_a_concurrent_single_write_sees_a_bulk_write_whole_or_not_at_all(
    client: TestClient, alice: str
) -> None:
    """Each round races a single write of one todo X against a bulk write that would
    change or delete X: whichever comes second sees all of the first, and neither
    deadlocks (PostgreSQL would end one of them, a 500)."""
    mine = as_user(alice)
    began = time.monotonic()
    rounds = 0
    while rounds < 40 and time.monotonic() - began < 1.5:
        rounds += 1
        for todo_id in todos_of(client, alice):
            assert client.delete(f"{V2}/{todo_id}", headers=as_user(alice)).status_code == 204
        x = create_v2(client, alice, title="x")["id"]
        for n in range(3):
            create_v2(client, alice, title=f"open {n}")
        # A PATCH completing X against a bulk PATCH completing and raising every open one.
        single, whole = _race(
            partial(client.patch, f"{V2}/{x}", json={"is_completed": True}, headers=mine),
            partial(
                bulk_patch, client, alice, "completed=false", is_completed=True, priority="high"
            ),
        )
        assert (single.status_code, whole.status_code) == (200, 200), (single.text, whole.text)
        bulk_first = whole.json() == {"updated": 4}
        assert bulk_first or whole.json() == {"updated": 3}
        assert single.json()["priority"] == ("high" if bulk_first else "none")
        after = todos_of(client, alice)
        assert all(t["is_completed"] for t in after.values())
        assert [t["priority"] for t in after.values()].count("high") == (4 if bulk_first else 3)

        # A DELETE of X against a bulk DELETE of every completed todo, X among them.
        single, whole = _race(
            partial(client.delete, f"{V2}/{x}", headers=mine),
            partial(bulk_delete, client, alice, "completed=true"),
        )
        deleted = whole.json()["deleted"]
        assert (single.status_code, deleted) in {(204, 3), (404, 4)}, (single.text, whole.text)
        assert todos_of(client, alice) == {}
    assert rounds >= 5, "too few rounds to mean anything"


@pytest.mark.req("FR-213", "FR-112")
def test_a_conditional_bulk_write_racing_a_single_write_applies_only_if_it_came_first(
    client: TestClient, alice: str
) -> None:
    """If-Match is checked in the same step as the write: a bulk PATCH under the list's
    ETag either comes first (and the single PATCH of one of its todos then sees its
    change) or finds the list changed (412, and the single PATCH saw nothing of it)."""
    mine = as_user(alice)
    x = create_v2(client, alice, title="x")["id"]
    for n in range(3):
        create_v2(client, alice, title=f"open {n}")
    began = time.monotonic()
    rounds = 0
    while rounds < 40 and time.monotonic() - began < 1.5:
        rounds += 1
        assert bulk_patch(client, alice, "all=true", priority="none").status_code == 200
        etag = list_etag(client, alice)
        single, whole = _race(
            partial(client.patch, f"{V2}/{x}", json={"title": f"x{rounds}"}, headers=mine),
            partial(
                bulk_patch, client, alice, "completed=false", {"If-Match": etag}, priority="high"
            ),
        )
        assert single.status_code == 200, single.text
        if whole.status_code == 200:
            assert whole.json() == {"updated": 4} and single.json()["priority"] == "high"
        else:
            problem(whole, 412, "PRECONDITION_FAILED")
            assert single.json()["priority"] == "none"
            assert {t["priority"] for t in todos_of(client, alice).values()} == {"none"}
    assert rounds >= 5, "too few rounds to mean anything"


@pytest.mark.req("FR-213", "FR-122")
def test_the_same_keyed_bulk_write_sent_twice_at_once_is_written_once(
    client: TestClient, alice: str
) -> None:
    """Both answers are the first one; the second waits for it and writes nothing."""
    began = time.monotonic()
    rounds = 0
    while rounds < 20 and time.monotonic() - began < 1.0:
        rounds += 1
        for n in range(3):
            create_v2(client, alice, title=f"open {n}")
        keyed = {"Idempotency-Key": f"race-{rounds}"}
        first, second = _race(
            partial(bulk_patch, client, alice, "completed=false", keyed, is_completed=True),
            partial(bulk_patch, client, alice, "completed=false", keyed, is_completed=True),
        )
        assert first.json() == second.json() == {"updated": 3}, (first.text, second.text)
        replayed = [a.headers.get("idempotent-replayed") for a in (first, second)]
        assert sorted(map(str, replayed)) == ["None", "true"], replayed
        assert bulk_delete(client, alice, "all=true").json() == {"deleted": 3}
    assert rounds >= 5, "too few rounds to mean anything"


@pytest.mark.req("FR-213", "FR-013")
def test_concurrent_bulk_writes_in_different_orders_never_deadlock(
    client: TestClient, alice: str
) -> None:
    """Bulk writes whose filters an index would walk in different orders, racing: each
    locks its todos in id order, so all of them finish; under If-Match, exactly those
    that found the list as they were told apply."""
    for n in range(30):
        create_v2(client, alice, title=f"{29 - n:02}", priority=("low", "high")[n % 2])
    began = time.monotonic()
    while time.monotonic() - began < 0.8:
        etag = list_etag(client, alice)
        answers = _race(
            partial(bulk_patch, client, alice, "all=true", {"If-Match": etag}, priority="medium"),
            partial(bulk_patch, client, alice, "completed=false", is_completed=True),
            partial(bulk_patch, client, alice, "all=true", is_completed=False, priority="low"),
            partial(bulk_patch, client, alice, "priority=low", priority="high"),
        )
        assert {a.status_code for a in answers[1:]} == {200}, [a.text for a in answers]
        assert answers[0].status_code in {200, 412}, answers[0].text
