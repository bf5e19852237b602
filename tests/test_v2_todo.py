"""The todo of 2.0 (FR-191, FR-192) and the one todo both versions show (FR-193); the
columns a 1.x build does not write, kept for it (FR-221)."""

import sys
import uuid
from typing import Any

import pytest
from api import TODOS, as_user, fields, todo_url
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine

V2 = "/api/v2/todos"
V1_MEMBERS = {"id", "user_id", "title", "description", "is_completed", "created_at", "updated_at"}
V2_MEMBERS = V1_MEMBERS | {"priority", "due_at", "tags", "completed_at"}


def create_v2(client: TestClient, user: str, **body: Any) -> dict[str, Any]:
    response = client.post(V2, json=body, headers=as_user(user))
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"{V2}/{response.json()['id']}"
    todo: dict[str, Any] = response.json()
    return todo


def patch_v2(client: TestClient, user: str, todo_id: str, **body: Any) -> dict[str, Any]:
    response = client.patch(f"{V2}/{todo_id}", json=body, headers=as_user(user))
    assert response.status_code == 200, response.text
    todo: dict[str, Any] = response.json()
    return todo


@pytest.mark.req("FR-191", "FR-192")
def test_a_new_todo_has_the_2_0_members_with_their_defaults(client: TestClient, alice: str) -> None:
    todo = create_v2(client, alice, title="Buy milk")
    assert set(todo) == V2_MEMBERS
    assert (todo["priority"], todo["due_at"], todo["tags"], todo["completed_at"]) == (
        "none",
        None,
        [],
        None,
    )
    assert client.get(f"{V2}/{todo['id']}", headers=as_user(alice)).json() == todo


@pytest.mark.req("FR-191", "FR-192")
def test_a_create_takes_priority_due_at_and_tags(client: TestClient, alice: str) -> None:
    todo = create_v2(
        client,
        alice,
        title="Report",
        priority="high",
        due_at="2026-12-04T17:00:00.5+01:00",
        tags=["work", "Work", "q4 report"],
    )
    # An instant, answered in UTC; tags in the order sent, compared exactly.
    assert todo["due_at"] == "2026-12-04T16:00:00.5+00:00"
    assert (todo["priority"], todo["tags"]) == ("high", ["work", "Work", "q4 report"])


@pytest.mark.req("FR-192")
def test_a_patch_changes_each_2_0_member_and_leaves_the_others(
    client: TestClient, alice: str
) -> None:
    todo = create_v2(
        client, alice, title="T", priority="low", due_at="2026-12-04T17:00:00Z", tags=["a", "b"]
    )
    tagged = patch_v2(client, alice, todo["id"], tags=["c"])
    assert (tagged["tags"], tagged["priority"], tagged["due_at"]) == (
        ["c"],
        "low",
        "2026-12-04T17:00:00+00:00",
    )
    cleared = patch_v2(client, alice, todo["id"], due_at=None, priority="medium", tags=[])
    assert (cleared["due_at"], cleared["priority"], cleared["tags"]) == (None, "medium", [])
    assert cleared["updated_at"] > tagged["updated_at"]


INVALID = [
    ("priority", "urgent"),
    ("priority", 2),
    ("due_at", "2026-12-04T17:00:00"),
    ("due_at", "2026-12-04"),
    ("due_at", "2026-02-30T10:00:00Z"),
    ("due_at", 1764864000),
    ("tags", "work"),
    ("tags", [1]),
    ("tags", [""]),
    ("tags", ["x" * 33]),
    ("tags", [" work"]),
    ("tags", ["work\u3000"]),
    ("tags", ["a\tb"]),
    ("tags", ["a\u0085b"]),
    ("tags", ["work", "work"]),
    ("tags", [f"t{n}" for n in range(11)]),
]


@pytest.mark.req("FR-191", "FR-192")
@pytest.mark.parametrize(("member", "value"), INVALID)
def test_each_invalid_2_0_member_is_a_422_naming_it(
    client: TestClient, alice: str, member: str, value: Any
) -> None:
    refused = client.post(V2, json={"title": "t", member: value}, headers=as_user(alice))
    assert set(fields(refused)) == {member}
    todo = create_v2(client, alice, title="t")
    refused = client.patch(f"{V2}/{todo['id']}", json={member: value}, headers=as_user(alice))
    assert set(fields(refused)) == {member}
    assert client.get(f"{V2}/{todo['id']}", headers=as_user(alice)).json() == todo


@pytest.mark.req("FR-192")
def test_null_priority_and_tags_and_any_completed_at_are_refused_together(
    client: TestClient, alice: str
) -> None:
    todo = create_v2(client, alice, title="t", tags=["kept"])
    body = {"priority": None, "tags": None, "completed_at": None, "title": ""}
    problems = fields(client.patch(f"{V2}/{todo['id']}", json=body, headers=as_user(alice)))
    assert set(problems) == {"priority", "tags", "completed_at", "title"}
    assert "read-only" in problems["completed_at"]
    created = client.post(
        V2, json={"title": "t", "completed_at": "2026-12-04T17:00:00Z"}, headers=as_user(alice)
    )
    assert set(fields(created)) == {"completed_at"}
    nothing = client.patch(f"{V2}/{todo['id']}", json={}, headers=as_user(alice))
    assert "at least one of" in fields(nothing)["body"]
    assert client.get(f"{V2}/{todo['id']}", headers=as_user(alice)).json() == todo


@pytest.mark.req("FR-191", "FR-193")
def test_completed_at_is_the_first_completing_write_until_reopened_under_either_version(
    client: TestClient, alice: str
) -> None:
    todo = create_v2(client, alice, title="t")
    done = patch_v2(client, alice, todo["id"], is_completed=True)
    assert done["completed_at"] == done["updated_at"]
    again = patch_v2(client, alice, todo["id"], is_completed=True, title="renamed")
    assert again["completed_at"] == done["completed_at"]
    assert again["updated_at"] > done["updated_at"]
    reopened = patch_v2(client, alice, todo["id"], is_completed=False)
    assert reopened["completed_at"] is None
    by_v1 = client.patch(todo_url(todo["id"]), json={"is_completed": True}, headers=as_user(alice))
    assert by_v1.status_code == 200 and set(by_v1.json()) == V1_MEMBERS
    seen = client.get(f"{V2}/{todo['id']}", headers=as_user(alice)).json()
    assert seen["completed_at"] == by_v1.json()["updated_at"]


@pytest.mark.req("FR-193")
def test_one_todo_two_views_a_write_under_either_is_seen_under_both(
    client: TestClient, alice: str
) -> None:
    made_by_v1 = client.post(TODOS, json={"title": "v1"}, headers=as_user(alice))
    assert set(made_by_v1.json()) == V1_MEMBERS
    in_v2 = client.get(f"{V2}/{made_by_v1.json()['id']}", headers=as_user(alice))
    assert in_v2.json() == {
        **made_by_v1.json(),
        "priority": "none",
        "due_at": None,
        "tags": [],
        "completed_at": None,
    }
    assert in_v2.headers["etag"] == made_by_v1.headers["etag"]

    todo = create_v2(client, alice, title="v2", priority="high", tags=["x"], due_at=None)
    patch_v2(client, alice, todo["id"], description="changed under v2")
    in_v1 = client.get(todo_url(todo["id"]), headers=as_user(alice))
    assert set(in_v1.json()) == V1_MEMBERS
    assert in_v1.json()["description"] == "changed under v2"
    # A 1.x PATCH leaves 2.0's members as they are; and 2.0 members are not 1.x fields.
    renamed = client.patch(todo_url(todo["id"]), json={"title": "x"}, headers=as_user(alice))
    assert set(renamed.json()) == V1_MEMBERS
    refused = client.patch(todo_url(todo["id"]), json={"priority": "low"}, headers=as_user(alice))
    assert set(fields(refused)) == {"priority"}
    after = client.get(f"{V2}/{todo['id']}", headers=as_user(alice))
    assert (after.json()["title"], after.json()["priority"], after.json()["tags"]) == (
        "x",
        "high",
        ["x"],
    )
    assert after.headers["etag"] == renamed.headers["etag"]
    listed = client.get(TODOS, headers=as_user(alice)).json()["items"]
    assert all(set(item) == V1_MEMBERS for item in listed)
    paged = client.get(f"{TODOS}?limit=1", headers=as_user(alice)).json()["items"]
    assert all(set(item) == V1_MEMBERS for item in paged)


@pytest.mark.req("FR-192", "FR-193")
def test_an_idempotent_create_under_v2_replays_the_whole_todo_and_is_its_own_request(
    client: TestClient, alice: str
) -> None:
    keyed = {**as_user(alice), "Idempotency-Key": str(uuid.uuid4())}
    body = {"title": "once", "priority": "low", "tags": ["a"], "due_at": "2026-12-04T17:00:00Z"}
    first = client.post(V2, json=body, headers=keyed)
    again = client.post(V2, json=body, headers=keyed)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content and again.headers["idempotent-replayed"] == "true"
    assert client.get(f"{V2}/{first.json()['id']}", headers=as_user(alice)).json() == first.json()
    other = client.post(V2, json={**body, "priority": "high"}, headers=keyed)
    assert other.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    under_v1 = client.post(TODOS, json={"title": "once"}, headers=keyed)
    assert under_v1.json()["code"] == "IDEMPOTENCY_KEY_REUSED"


@pytest.mark.req("FR-221")
def test_the_databases_fold_is_str_casefold_for_every_character(admin_engine: Engine) -> None:
    """todo_fold, which folds what a 1.x build writes, is Python's own fold: for every
    character that folds, and for a sample of those that do not (which the SQL leaves
    alone by construction)."""
    characters = [chr(c) for c in range(1, sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
    everything = "".join(c for n, c in enumerate(characters) if c.casefold() != c or n % 1009 == 0)
    with admin_engine.begin() as conn:
        folded = conn.execute(text("SELECT todo_fold(:t)"), {"t": everything}).scalar_one()
    assert folded == everything.casefold()


@pytest.mark.req("FR-221", "FR-191", "FR-201")
def test_a_todo_written_as_a_1_x_build_writes_it_gets_its_2_0_columns(
    client: TestClient, admin_engine: Engine, alice: str
) -> None:
    """A 1.3 build sends 1.x's statements, which name none of 2.0's columns."""
    with admin_engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id) VALUES (:u)"), {"u": alice})
        todo_id = conn.execute(
            text(
                "INSERT INTO todos (user_id, title, description) VALUES (:u, 'GROSSE Straße', 'É')"
                " RETURNING id"
            ),
            {"u": alice},
        ).scalar_one()
        conn.execute(
            text(
                "UPDATE todos SET is_completed = true, description = 'ÇA',"
                " updated_at = now() + interval '1 second' WHERE id = :id"
            ),
            {"id": todo_id},
        )
    todo = client.get(f"{V2}/{todo_id}", headers=as_user(alice)).json()
    assert todo["completed_at"] == todo["updated_at"]
    found = client.get(f"{V2}?q=grosse%20STRASSE%20ça", headers=as_user(alice)).json()
    assert [t["id"] for t in found["items"]] == [str(todo_id)]
