"""Conditional requests (RFC 9110): strong ETags on every todo response, 304 for one
todo and for the list, and If-Match making PATCH and DELETE conditional, checked and
written in one statement."""

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from api import TODOS, as_user, create, problem, todo_url
from fastapi.testclient import TestClient
from httpx import Response
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


@pytest.mark.req("FR-111")
def test_every_todo_response_carries_a_strong_etag_that_changes_exactly_with_the_todo(
    client: TestClient, alice: str
) -> None:
    made = client.post(TODOS, json={"title": "v1"}, headers=as_user(alice))
    path = todo_url(made.json()["id"])
    created = _etag(made)
    assert _etag(client.get(path, headers=as_user(alice))) == created
    assert _etag(client.get(path, headers=as_user(alice))) == created
    seen = {created}
    for body in ({"title": "v2"}, {"is_completed": True}, {"description": None}, {"title": "v2"}):
        patched = client.patch(path, json=body, headers=as_user(alice))
        etag = _etag(patched)
        assert etag not in seen, "every successful update is a change (updated_at moves)"
        assert _etag(client.get(path, headers=as_user(alice))) == etag
        seen.add(etag)
    # A refused update is no change.
    client.patch(path, json={"title": ""}, headers=as_user(alice))
    assert _etag(client.get(path, headers=as_user(alice))) == etag


@pytest.mark.req("FR-112")
def test_a_matching_if_none_match_on_one_todo_is_304_with_the_etag_and_no_body(
    client: TestClient, alice: str
) -> None:
    path = todo_url(create(client, alice, title="cached")["id"])
    etag = _etag(client.get(path, headers=as_user(alice)))
    for condition in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
        answer = client.get(path, headers={**as_user(alice), "If-None-Match": condition})
        assert answer.status_code == 304, condition
        assert answer.content == b""
        assert answer.headers["etag"] == etag
    stale = client.get(path, headers={**as_user(alice), "If-None-Match": '"123"'})
    assert stale.status_code == 200 and stale.headers["etag"] == etag
    client.patch(path, json={"title": "changed"}, headers=as_user(alice))
    changed = client.get(path, headers={**as_user(alice), "If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.json()["title"] == "changed"


@pytest.mark.req("FR-112")
def test_the_lists_etag_changes_with_every_write_of_the_caller_and_only_theirs(
    client: TestClient, alice: str, bob: str
) -> None:
    start = _list_etag(client, alice)
    todo = create(client, alice, title="one")
    after_create = _list_etag(client, alice)
    client.patch(todo_url(todo["id"]), json={"is_completed": True}, headers=as_user(alice))
    after_update = _list_etag(client, alice)
    client.delete(todo_url(todo["id"]), headers=as_user(alice))
    after_delete = _list_etag(client, alice)
    assert len({start, after_create, after_update, after_delete}) == 4
    assert _list_etag(client, alice) == after_delete

    theirs = create(client, bob, title="bob's")
    client.patch(todo_url(theirs["id"]), json={"title": "b2"}, headers=as_user(bob))
    client.delete(todo_url(theirs["id"]), headers=as_user(bob))
    assert _list_etag(client, alice) == after_delete
    # A refused or missed write is no change either.
    client.patch(todo_url(uuid.uuid4()), json={"title": "x"}, headers=as_user(alice))
    client.post(TODOS, json={"title": ""}, headers=as_user(alice))
    assert _list_etag(client, alice) == after_delete


@pytest.mark.req("FR-112")
def test_the_list_answers_304_and_another_users_tag_never_matches(
    client: TestClient, alice: str, bob: str
) -> None:
    for n in range(3):
        create(client, alice, title=f"a{n}")
        create(client, bob, title=f"b{n}")
    etag = _list_etag(client, alice)
    for condition in (etag, f"W/{etag}", "*"):
        answer = client.get(TODOS, headers={**as_user(alice), "If-None-Match": condition})
        assert answer.status_code == 304 and answer.content == b""
        assert answer.headers["etag"] == etag
    # Both users have made the same number of writes: the tags still differ.
    bobs = _list_etag(client, bob)
    assert bobs != etag
    answer = client.get(TODOS, headers={**as_user(bob), "If-None-Match": etag})
    assert answer.status_code == 200 and answer.json()["count"] == 3
    page = client.get(f"{TODOS}?limit=2", headers={**as_user(alice), "If-None-Match": etag})
    assert page.status_code == 304


@pytest.mark.req("FR-112")
def test_a_304_for_the_list_does_not_read_the_list(
    client: TestClient, statement_log: StatementLog, alice: str
) -> None:
    for n in range(20):
        create(client, alice, title=f"t{n}")
    etag = _list_etag(client, alice)
    for path in (TODOS, f"{TODOS}?limit=5"):
        before = len(statement_log.statements)
        answer = client.get(path, headers={**as_user(alice), "If-None-Match": etag})
        assert answer.status_code == 304
        sent = statement_log.statements[before:]
        assert sent == [todos.LIST_VERSION], "one index lookup, no read of todos"
        assert "todos" not in sent[0]


@pytest.mark.req("FR-113")
def test_if_match_makes_patch_and_delete_conditional(
    client: TestClient, admin_engine: Engine, alice: str
) -> None:
    todo = create(client, alice, title="v1")
    path = todo_url(todo["id"])
    etag = _etag(client.get(path, headers=as_user(alice)))
    updated = client.patch(path, json={"title": "v2"}, headers={**as_user(alice), "If-Match": etag})
    assert updated.status_code == 200
    fresh = _etag(updated)

    for method, body in (("PATCH", {"title": "lost update"}), ("DELETE", None)):
        for stale in (etag, f"W/{fresh}", '"0"', "garbage"):
            answer = client.request(
                method, path, json=body, headers={**as_user(alice), "If-Match": stale}
            )
            problem(answer, 412, "PRECONDITION_FAILED")
    assert client.get(path, headers=as_user(alice)).json() == updated.json()

    listed = client.patch(
        path, json={"title": "v3"}, headers={**as_user(alice), "If-Match": f'"1", {fresh}'}
    )
    assert listed.status_code == 200
    any_version = client.patch(
        path, json={"title": "v4"}, headers={**as_user(alice), "If-Match": "*"}
    )
    assert any_version.status_code == 200
    gone = client.delete(path, headers={**as_user(alice), "If-Match": _etag(any_version)})
    assert gone.status_code == 204
    problem(client.delete(path, headers={**as_user(alice), "If-Match": "*"}), 404, "NOT_FOUND")


@pytest.mark.req("FR-113", "FR-014")
def test_if_match_on_a_todo_the_caller_cannot_see_is_404_never_412(
    client: TestClient, admin_engine: Engine, alice: str, bob: str
) -> None:
    victim = create(client, alice, title="alice's")
    path = todo_url(victim["id"])
    etag = _etag(client.get(path, headers=as_user(alice)))
    for condition in (etag, '"0"', "*"):
        for method, body in (("PATCH", {"title": "pwned"}), ("DELETE", None)):
            foreign = client.request(
                method, path, json=body, headers={**as_user(bob), "If-Match": condition}
            )
            missing = client.request(
                method,
                todo_url(uuid.uuid4()),
                json=body,
                headers={**as_user(bob), "If-Match": condition},
            )
            assert foreign.status_code == missing.status_code == 404
            assert foreign.content == missing.content
    assert client.get(path, headers=as_user(alice)).json() == victim


@pytest.mark.req("FR-113", "EC-5")
def test_of_20_concurrent_patches_with_the_same_if_match_exactly_one_wins(
    client: TestClient, alice: str
) -> None:
    todo = create(client, alice, title="contended")
    path = todo_url(todo["id"])
    etag = _etag(client.get(path, headers=as_user(alice)))
    start = threading.Barrier(20)

    def patch(n: int) -> Response:
        start.wait()
        answer: Response = client.patch(
            path,
            json={"title": f"writer {n}", "description": f"all of writer {n}"},
            headers={**as_user(alice), "If-Match": etag},
        )
        return answer

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(patch, range(20)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [412] * 19, statuses
    [winner] = [a.json() for a in answers if a.status_code == 200]
    for loser in (a for a in answers if a.status_code == 412):
        problem(loser, 412, "PRECONDITION_FAILED")
    stored: dict[str, Any] = client.get(path, headers=as_user(alice)).json()
    assert stored == winner
    assert stored["description"] == "all of " + stored["title"]


@pytest.mark.req("FR-113")
def test_without_if_match_the_last_write_still_wins(client: TestClient, alice: str) -> None:
    todo = create(client, alice, title="v1")
    path = todo_url(todo["id"])
    client.patch(path, json={"title": "v2"}, headers=as_user(alice))
    assert client.patch(path, json={"title": "v3"}, headers=as_user(alice)).status_code == 200
    assert client.get(path, headers=as_user(alice)).json()["title"] == "v3"


@pytest.mark.req("FR-111", "FR-112")
def test_the_version_is_bumped_by_writes_from_outside_the_service_too(
    client: TestClient, admin_engine: Engine, alice: str
) -> None:
    todo = create(client, alice, title="v1")
    before = _list_etag(client, alice)
    with admin_engine.begin() as conn:
        conn.execute(text("UPDATE todos SET title = 'by hand' WHERE id = :id"), {"id": todo["id"]})
    assert _list_etag(client, alice) != before
