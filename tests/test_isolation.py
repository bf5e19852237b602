"""Cross-user isolation: another user's todo is indistinguishable from a missing one,
and nothing a second user does reaches the first user's data."""

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from api import TODOS, as_user, create, todo_url
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import text
from sqlalchemy.engine import Engine

Call = Callable[[TestClient, str, str], Response]

# Every operation that names a todo, with every kind of body it accepts.
OPERATIONS: dict[str, Call] = {
    "get": lambda c, user, path: c.get(path, headers=as_user(user)),
    "delete": lambda c, user, path: c.delete(path, headers=as_user(user)),
    "patch title": lambda c, user, path: c.patch(
        path, json={"title": "pwned"}, headers=as_user(user)
    ),
    "patch description": lambda c, user, path: c.patch(
        path, json={"description": None}, headers=as_user(user)
    ),
    "patch completed": lambda c, user, path: c.patch(
        path, json={"is_completed": True}, headers=as_user(user)
    ),
    "patch all": lambda c, user, path: c.patch(
        path, json={"title": "x", "description": "y", "is_completed": True}, headers=as_user(user)
    ),
}

# Every way of spelling the victim's todo id that still names it.
SPELLINGS: dict[str, Callable[[str], str]] = {
    "as returned": lambda todo_id: todo_id,
    "upper case": lambda todo_id: todo_id.upper(),
    "mixed case": lambda todo_id: todo_id[:18].upper() + todo_id[18:],
}


def _answer(response: Response) -> tuple[int, bytes, dict[str, str]]:
    headers = {k: v for k, v in response.headers.items() if k not in {"date", "x-request-id"}}
    return response.status_code, response.content, headers


def _snapshot(engine: Engine, user: str) -> list[Any]:
    with engine.begin() as conn:
        rows = conn.execute(
            text("SELECT * FROM todos WHERE user_id = :u ORDER BY id"), {"u": user}
        ).all()
    return [tuple(row) for row in rows]


@pytest.mark.req("FR-014", "FR-013", "SC-005")
@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("spelling", SPELLINGS)
def test_other_users_todo_answers_exactly_like_a_missing_one(
    client: TestClient, admin_engine: Engine, alice: str, bob: str, operation: str, spelling: str
) -> None:
    victim = create(client, alice, title="secret", description="alice only")
    create(client, bob, title="bob's own")
    before = _snapshot(admin_engine, alice)

    call = OPERATIONS[operation]
    foreign = call(client, bob, todo_url(SPELLINGS[spelling](victim["id"])))
    missing = call(client, bob, todo_url(SPELLINGS[spelling](str(uuid.uuid4()))))

    assert foreign.status_code == 404
    assert _answer(foreign) == _answer(missing)
    assert _snapshot(admin_engine, alice) == before
    assert client.get(todo_url(victim["id"]), headers=as_user(alice)).json() == victim


@pytest.mark.req("FR-013", "SC-005")
def test_lists_never_show_another_users_todos(client: TestClient, alice: str, bob: str) -> None:
    mine = {create(client, alice, title=f"a{n}")["id"] for n in range(3)}
    theirs = {create(client, bob, title=f"b{n}")["id"] for n in range(2)}
    alice_list = client.get(TODOS, headers=as_user(alice)).json()
    bob_list = client.get(TODOS, headers=as_user(bob)).json()
    assert {t["id"] for t in alice_list["items"]} == mine
    assert {t["id"] for t in bob_list["items"]} == theirs
    assert alice_list["count"] == 3


@pytest.mark.req("FR-013")
def test_user_id_is_the_same_user_whatever_its_letter_case(client: TestClient) -> None:
    user = str(uuid.uuid4())
    todo = create(client, user.upper(), title="shouty")
    assert todo["user_id"] == user
    listed = client.get(TODOS, headers=as_user(user)).json()["items"]
    assert [t["id"] for t in listed] == [todo["id"]]
    assert client.get(todo_url(todo["id"]), headers=as_user(user.upper())).status_code == 200


@pytest.mark.req("FR-014")
def test_a_user_cannot_take_over_a_todo_by_naming_themselves(
    client: TestClient, alice: str, bob: str
) -> None:
    victim = create(client, alice, title="mine")
    response = client.patch(todo_url(victim["id"]), json={"user_id": bob}, headers=as_user(alice))
    assert response.status_code == 422
    assert client.get(todo_url(victim["id"]), headers=as_user(alice)).json() == victim
