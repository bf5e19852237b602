"""The operations and the data model, as a client sees them."""

import uuid
from datetime import datetime, timedelta
from itertools import pairwise

import pytest
from api import TODOS, as_user, create, todo_url
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine


def _timestamp(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0), f"{value} must carry an explicit UTC offset"
    return parsed


@pytest.mark.req("FR-001", "FR-008", "SC-001")
def test_create_returns_the_full_todo_with_its_location(client: TestClient, alice: str) -> None:
    response = client.post(
        TODOS, json={"title": "Buy milk", "description": "2 l"}, headers=as_user(alice)
    )
    assert response.status_code == 201
    todo = response.json()
    assert set(todo) == {
        "id",
        "user_id",
        "title",
        "description",
        "is_completed",
        "created_at",
        "updated_at",
    }
    assert todo["title"] == "Buy milk"
    assert todo["description"] == "2 l"
    assert todo["user_id"] == alice
    assert response.headers["location"] == f"{TODOS}/{todo['id']}"


@pytest.mark.req("FR-002", "FR-003", "FR-004")
def test_server_assigns_id_timestamps_and_open_state(client: TestClient, alice: str) -> None:
    before = datetime.now().astimezone()
    first = create(client, alice, title="one")
    second = create(client, alice, title="two")
    assert uuid.UUID(first["id"]).version == 4
    assert first["id"] != second["id"]
    assert first["is_completed"] is False
    created = _timestamp(first["created_at"])
    assert (
        before - timedelta(seconds=5)
        <= created
        <= datetime.now().astimezone() + timedelta(seconds=5)
    )
    assert first["updated_at"] == first["created_at"]


@pytest.mark.req("FR-002", "FR-003")
def test_client_cannot_supply_server_fields(client: TestClient, alice: str) -> None:
    for field, value in [
        ("id", str(uuid.uuid4())),
        ("created_at", "2020-01-01T00:00:00+00:00"),
        ("updated_at", "2020-01-01T00:00:00+00:00"),
        ("user_id", alice),
        ("is_completed", True),
    ]:
        response = client.post(TODOS, json={"title": "x", field: value}, headers=as_user(alice))
        assert response.status_code == 422, field
    assert client.get(TODOS, headers=as_user(alice)).json()["count"] == 0


@pytest.mark.req("FR-009", "SC-002")
def test_list_returns_every_todo_newest_first(client: TestClient, alice: str) -> None:
    created = [create(client, alice, title=f"todo {n}") for n in range(1000)]
    response = client.get(TODOS, headers=as_user(alice))
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1000
    expected = sorted(created, key=lambda t: (t["created_at"], t["id"]), reverse=True)
    assert [t["id"] for t in body["items"]] == [t["id"] for t in expected]


@pytest.mark.req("FR-009")
def test_ties_on_created_at_are_ordered_by_id_descending(
    client: TestClient, alice: str, admin_engine: Engine
) -> None:
    ids = [create(client, alice, title=f"t{n}")["id"] for n in range(5)]
    with admin_engine.begin() as conn:
        conn.execute(text("UPDATE todos SET created_at = '2026-01-01T00:00:00Z'"))
    listed = [t["id"] for t in client.get(TODOS, headers=as_user(alice)).json()["items"]]
    assert listed == sorted(ids, key=uuid.UUID, reverse=True)


@pytest.mark.req("FR-009")
def test_unknown_user_has_an_empty_list(client: TestClient, alice: str) -> None:
    response = client.get(TODOS, headers=as_user(alice))
    assert response.json() == {"items": [], "count": 0}


@pytest.mark.req("FR-010")
def test_get_returns_the_same_todo(client: TestClient, alice: str) -> None:
    todo = create(client, alice, title="read me")
    response = client.get(todo_url(todo["id"]), headers=as_user(alice))
    assert response.status_code == 200
    assert response.json() == todo


@pytest.mark.req("FR-011", "SC-003")
def test_patch_changes_only_given_fields_and_is_visible_next_read(
    client: TestClient, alice: str
) -> None:
    todo = create(client, alice, title="draft", description="notes")
    response = client.patch(
        todo_url(todo["id"]), json={"is_completed": True}, headers=as_user(alice)
    )
    assert response.status_code == 200
    updated = response.json()
    assert updated["is_completed"] is True
    assert (updated["title"], updated["description"]) == ("draft", "notes")
    assert _timestamp(updated["updated_at"]) > _timestamp(todo["updated_at"])
    assert updated["created_at"] == todo["created_at"]
    assert client.get(todo_url(todo["id"]), headers=as_user(alice)).json() == updated

    renamed = client.patch(
        todo_url(todo["id"]), json={"title": "final", "description": None}, headers=as_user(alice)
    ).json()
    assert (renamed["title"], renamed["description"], renamed["is_completed"]) == (
        "final",
        None,
        True,
    )
    assert _timestamp(renamed["updated_at"]) > _timestamp(updated["updated_at"])


@pytest.mark.req("FR-011")
def test_updated_at_moves_forward_on_every_update(client: TestClient, alice: str) -> None:
    todo = create(client, alice, title="tick")
    stamps = [todo["updated_at"]]
    for n in range(20):
        stamps.append(
            client.patch(
                todo_url(todo["id"]), json={"is_completed": n % 2 == 0}, headers=as_user(alice)
            ).json()["updated_at"]
        )
    parsed = [_timestamp(s) for s in stamps]
    assert all(later > earlier for earlier, later in pairwise(parsed))


@pytest.mark.req("FR-012", "SC-004")
def test_delete_removes_for_good(client: TestClient, alice: str) -> None:
    keep = create(client, alice, title="keep")
    gone = create(client, alice, title="gone")
    response = client.delete(todo_url(gone["id"]), headers=as_user(alice))
    assert response.status_code == 204
    assert response.content == b""
    assert client.get(todo_url(gone["id"]), headers=as_user(alice)).status_code == 404
    assert client.delete(todo_url(gone["id"]), headers=as_user(alice)).status_code == 404
    assert [t["id"] for t in client.get(TODOS, headers=as_user(alice)).json()["items"]] == [
        keep["id"]
    ]


@pytest.mark.req("EC-4")
def test_null_and_empty_description_stay_distinct(client: TestClient, alice: str) -> None:
    empty = create(client, alice, title="a", description="")
    absent = create(client, alice, title="b")
    null = create(client, alice, title="c", description=None)
    assert (empty["description"], absent["description"], null["description"]) == ("", None, None)
    for todo in (empty, null):
        assert client.get(todo_url(todo["id"]), headers=as_user(alice)).json() == todo
    cleared = client.patch(
        todo_url(empty["id"]), json={"description": None}, headers=as_user(alice)
    )
    assert cleared.json()["description"] is None
    emptied = client.patch(todo_url(null["id"]), json={"description": ""}, headers=as_user(alice))
    assert emptied.json()["description"] == ""


@pytest.mark.req("FR-001", "FR-017", "FR-018")
def test_text_is_stored_exactly_and_lengths_count_characters(
    client: TestClient, alice: str
) -> None:
    title = "  🎉" * 85  # 255 characters, 1,105 UTF-8 bytes, leading spaces kept
    description = "é\u0301\t\n" * 500  # 2,000 characters, combining mark not normalised
    todo = create(client, alice, title=title, description=description)
    assert (todo["title"], todo["description"]) == (title, description)
    fetched = client.get(todo_url(todo["id"]), headers=as_user(alice)).json()
    assert (fetched["title"], fetched["description"]) == (title, description)


@pytest.mark.req("FR-001")
def test_deleting_a_user_deletes_their_todos(
    client: TestClient, alice: str, admin_engine: Engine
) -> None:
    create(client, alice, title="mine")
    with admin_engine.begin() as conn:
        conn.execute(text("DELETE FROM users WHERE id = :id"), {"id": alice})
        left = conn.execute(text("SELECT count(*) FROM todos WHERE user_id = :id"), {"id": alice})
        assert left.scalar_one() == 0
