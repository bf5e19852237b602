"""Ambiguous input is refused, never guessed at (FR-108): where a proxy that reads the
first value and a service that reads the last could disagree about who is calling or
what was sent, the request is refused and changes nothing. Lists stay lists."""

import json
from typing import Any

import pytest
from api import TODOS, as_user, create, fields, problem, todo_url
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine

JSON = ("Content-Type", "application/json")


def _everything(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.begin() as conn:
        rows = conn.execute(text("SELECT * FROM todos ORDER BY id")).all()
        users = conn.execute(text("SELECT id, version FROM users ORDER BY id")).all()
        keys = conn.execute(text("SELECT user_id, key FROM idempotency_keys")).all()
    return [tuple(r) for r in [*rows, *users, *keys]]


@pytest.mark.req("FR-108", "FR-015")
@pytest.mark.parametrize("same", [True, False], ids=["same value twice", "two users"])
def test_a_repeated_x_user_id_is_refused_and_changes_nothing(
    client: TestClient, admin_engine: Engine, alice: str, bob: str, same: bool
) -> None:
    todo = create(client, alice, title="alice's")
    before = _everything(admin_engine)
    second = alice if same else bob
    twice = [("X-User-ID", alice), ("X-User-ID", second)]
    calls = [
        client.post(TODOS, json={"title": "x"}, headers=twice),
        client.get(TODOS, headers=twice),
        client.get(todo_url(todo["id"]), headers=twice),
        client.patch(todo_url(todo["id"]), json={"title": "y"}, headers=twice),
        client.delete(todo_url(todo["id"]), headers=twice),
        client.get(TODOS, headers=[("X-User-ID", second), ("X-User-ID", alice)]),
    ]
    for answer in calls:
        body = problem(answer, 400, "INVALID_USER_CONTEXT")
        assert "once" in body["detail"]
    assert _everything(admin_engine) == before


@pytest.mark.req("FR-108", "FR-020")
@pytest.mark.parametrize(
    ("raw", "field", "says"),
    [
        (b'{"title": "a", "title": "b"}', "title", "is repeated"),
        (b'{"title": "a", "description": "x", "description": null}', "description", "is repeated"),
        (
            b'{"title": "a", "description": {"k": 1, "k": 2}}',
            "description",
            'repeats the member "k"',
        ),
        (b'{"title": "a", "x": [{"deep": {"k": 1, "k": 1}}]}', "x", 'repeats the member "k"'),
        (b'[{"title": "a", "title": "a"}]', "body", 'repeats the member "title"'),
    ],
)
def test_a_repeated_json_member_on_create_is_refused_naming_it(
    client: TestClient, admin_engine: Engine, alice: str, raw: bytes, field: str, says: str
) -> None:
    answer = client.post(TODOS, content=raw, headers=[("X-User-ID", alice), JSON])
    found = fields(answer)
    assert field in found and says in found[field], found
    assert _everything(admin_engine) == []


@pytest.mark.req("FR-108", "FR-011")
@pytest.mark.parametrize(
    "raw",
    [
        b'{"is_completed": true, "is_completed": false}',
        b'{"title": "b", "title": "b"}',
        b'{"description": null, "description": "x"}',
    ],
)
def test_a_repeated_json_member_on_update_is_refused_and_changes_nothing(
    client: TestClient, admin_engine: Engine, alice: str, raw: bytes
) -> None:
    todo = create(client, alice, title="unchanged")
    before = _everything(admin_engine)
    answer = client.patch(todo_url(todo["id"]), content=raw, headers=[("X-User-ID", alice), JSON])
    repeated = next(iter(json.loads(raw)))
    assert "is repeated" in fields(answer)[repeated]
    assert _everything(admin_engine) == before
    assert client.get(todo_url(todo["id"]), headers=as_user(alice)).json() == todo


@pytest.mark.req("FR-108", "FR-121")
def test_a_repeated_idempotency_key_is_refused_and_creates_nothing(
    client: TestClient, admin_engine: Engine, alice: str
) -> None:
    for keys in (["k-1", "k-1"], ["k-1", "k-2"]):
        answer = client.post(
            TODOS,
            json={"title": "once"},
            headers=[("X-User-ID", alice), *[("Idempotency-Key", k) for k in keys]],
        )
        assert "once" in fields(answer)["Idempotency-Key"]
    assert _everything(admin_engine) == []


@pytest.mark.req("FR-108", "FR-113")
def test_repeated_if_match_lines_are_one_list(client: TestClient, alice: str) -> None:
    todo = create(client, alice, title="v1")
    current = client.get(todo_url(todo["id"]), headers=as_user(alice)).headers["etag"]
    answer = client.patch(
        todo_url(todo["id"]),
        json={"title": "v2"},
        headers=[("X-User-ID", alice), ("If-Match", '"1"'), ("If-Match", current)],
    )
    assert answer.status_code == 200, answer.text


@pytest.mark.req("FR-108", "FR-112")
def test_repeated_if_none_match_lines_are_one_list(client: TestClient, alice: str) -> None:
    todo = create(client, alice, title="v1")
    etag = client.get(todo_url(todo["id"]), headers=as_user(alice)).headers["etag"]
    answer = client.get(
        todo_url(todo["id"]),
        headers=[("X-User-ID", alice), ("If-None-Match", '"1"'), ("If-None-Match", etag)],
    )
    assert answer.status_code == 304
