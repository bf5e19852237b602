"""Safe retries with the IETF Idempotency-Key header (FR-121..123): a retry answers the
first response again and creates nothing, a different request under the same key is
refused, duplicates racing each other never create two todos, and keys are per user
and expire."""

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from api import TODOS, as_user, fields, problem, todo_url
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import text
from sqlalchemy.engine import Engine

from service.store import keys


def _post(
    client: TestClient, user: str, key: str | None, body: dict[str, Any] | None = None
) -> Response:
    headers = as_user(user) if key is None else {**as_user(user), "Idempotency-Key": key}
    answer: Response = client.post(TODOS, json=body or {"title": "Pay rent"}, headers=headers)
    return answer


def _count(engine: Engine, table: str, user: str) -> int:
    column = "id" if table == "users" else "user_id"
    with engine.begin() as conn:
        return int(
            conn.execute(
                text(f"SELECT count(*) FROM {table} WHERE {column} = :u"), {"u": user}
            ).scalar_one()
        )


@pytest.mark.req("FR-121")
def test_a_retry_answers_the_first_response_again_and_creates_nothing(
    client: TestClient, admin_engine: Engine, alice: str
) -> None:
    key = str(uuid.uuid4())
    first = _post(client, alice, key, {"title": "Pay rent", "description": "by the 1st"})
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    path = first.headers["location"]
    # The todo changes meanwhile; the replay is still the first answer.
    client.patch(path, json={"title": "Paid"}, headers=as_user(alice))
    for _ in range(3):
        again = client.post(
            TODOS,
            content=b'{"description": "by the 1st", "title": "Pay rent"}',
            headers={**as_user(alice), "Idempotency-Key": key, "Content-Type": "application/json"},
        )
        assert again.status_code == 201
        assert again.headers["idempotent-replayed"] == "true"
        assert again.content == first.content
        assert again.headers["location"] == path
        assert again.headers["etag"] == first.headers["etag"]
    assert _count(admin_engine, "todos", alice) == 1


@pytest.mark.req("FR-121", "FR-111")
@pytest.mark.parametrize(
    "body",
    [{"title": 'Pay "rent": 50 € \\ tab\t', "description": "by the 1st\n"}, {"title": "Pay rent"}],
    ids=["escaped text", "no description"],
)
def test_a_keyed_create_answers_the_todo_exactly_as_it_is_stored(
    client: TestClient, alice: str, body: dict[str, Any]
) -> None:
    # The keyed answer is spelled before the todo is stored: it must be the same bytes
    # and the same entity tag as every later read of that todo.
    created = _post(client, alice, str(uuid.uuid4()), body)
    read = client.get(created.headers["location"], headers=as_user(alice))
    assert created.status_code == 201
    assert (created.content, created.headers["etag"]) == (read.content, read.headers["etag"])


@pytest.mark.req("FR-121")
def test_a_replay_outlives_the_todo(client: TestClient, admin_engine: Engine, alice: str) -> None:
    first = _post(client, alice, "delete-then-retry")
    client.delete(first.headers["location"], headers=as_user(alice))
    again = _post(client, alice, "delete-then-retry")
    assert (again.status_code, again.content) == (201, first.content)
    assert again.headers["idempotent-replayed"] == "true"
    assert _count(admin_engine, "todos", alice) == 0


@pytest.mark.req("FR-122")
def test_the_same_key_with_a_different_request_is_refused(
    client: TestClient, admin_engine: Engine, alice: str
) -> None:
    key = "order-4711"
    first = _post(client, alice, key, {"title": "Pay rent"})
    for other in ({"title": "Pay rent twice"}, {"title": "Pay rent", "description": "x"}):
        refused = _post(client, alice, key, other)
        body = problem(refused, 422, "IDEMPOTENCY_KEY_REUSED")
        assert "different request" in body["detail"]
    assert _count(admin_engine, "todos", alice) == 1
    assert _post(client, alice, key).content == first.content


@pytest.mark.req("FR-122", "FR-121")
def test_twenty_concurrent_duplicates_create_one_todo(
    client: TestClient, admin_engine: Engine, alice: str
) -> None:
    start = threading.Barrier(20)
    key = str(uuid.uuid4())

    def post(_: int) -> Response:
        start.wait()
        return _post(client, alice, key, {"title": "exactly once"})

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(post, range(20)))
    assert _count(admin_engine, "todos", alice) == 1
    with admin_engine.begin() as conn:
        only = str(
            conn.execute(text("SELECT id FROM todos WHERE user_id = :u"), {"u": alice}).scalar_one()
        )
    succeeded = [a for a in answers if a.is_success]
    assert succeeded, [a.status_code for a in answers]
    for answer in answers:
        assert answer.status_code in {201, 409}, answer.text
    for answer in succeeded:
        assert answer.json()["id"] == only
        assert answer.headers["location"] == todo_url(only)
    assert sum(1 for a in succeeded if "idempotent-replayed" not in a.headers) == 1


@pytest.mark.req("FR-123")
def test_keys_belong_to_their_user(
    client: TestClient, admin_engine: Engine, alice: str, bob: str
) -> None:
    mine = _post(client, alice, "shared-key", {"title": "alice's"})
    theirs = _post(client, bob, "shared-key", {"title": "bob's"})
    assert theirs.status_code == 201
    assert "idempotent-replayed" not in theirs.headers
    assert theirs.json()["user_id"] == bob and theirs.json()["id"] != mine.json()["id"]
    assert _post(client, bob, "shared-key", {"title": "bob's"}).content == theirs.content
    assert (_count(admin_engine, "todos", alice), _count(admin_engine, "todos", bob)) == (1, 1)


@pytest.mark.req("FR-123")
def test_a_key_expires_after_24_hours(client: TestClient, admin_engine: Engine, alice: str) -> None:
    first = _post(client, alice, "monthly", {"title": "Pay rent"})
    with admin_engine.begin() as conn:
        conn.execute(
            text("UPDATE idempotency_keys SET created_at = now() - interval '24 hours 1 second'")
        )
    later = _post(client, alice, "monthly", {"title": "Pay rent, next month"})
    assert later.status_code == 201 and "idempotent-replayed" not in later.headers
    assert later.json()["id"] != first.json()["id"]
    assert _count(admin_engine, "todos", alice) == 2
    assert (
        _post(client, alice, "monthly", {"title": "Pay rent, next month"}).content == later.content
    )


@pytest.mark.req("FR-123")
def test_expired_keys_of_every_user_are_swept_so_the_table_stays_bounded(
    client: TestClient, admin_engine: Engine, alice: str
) -> None:
    idle = [str(uuid.uuid4()) for _ in range(40)]
    for user in idle:
        for n in range(5):
            _post(client, user, f"once-{n}")
    with admin_engine.begin() as conn:
        conn.execute(text("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'"))
    # Users who never come back: keyed creates sweep their expired keys, four for each
    # key added (up to 256 on every 64th).
    for n in range(keys.SWEEP_EVERY):
        _post(client, alice, f"k{n}")
    with admin_engine.begin() as conn:
        left = conn.execute(
            text(
                "SELECT count(*) FROM idempotency_keys WHERE created_at < now() - interval '1 day'"
            )
        ).scalar_one()
        total = conn.execute(text("SELECT count(*) FROM idempotency_keys")).scalar_one()
    assert left == 0
    assert total == keys.SWEEP_EVERY


@pytest.mark.req("FR-121", "FR-020")
@pytest.mark.parametrize(
    "key",
    [b"", b"x" * 256, "clé".encode(), b"tab\there", b"\x7f"],
    ids=["empty", "256 characters", "not ASCII", "control character", "DEL"],
)
def test_a_key_that_is_not_1_to_255_printable_ascii_characters_is_422(
    client: TestClient, admin_engine: Engine, alice: str, key: bytes
) -> None:
    answer = client.post(
        TODOS,
        json={"title": "x"},
        headers=[(b"X-User-ID", alice.encode()), (b"Idempotency-Key", key)],
    )
    assert "printable ASCII" in fields(answer)["Idempotency-Key"]
    assert _count(admin_engine, "todos", alice) == 0


@pytest.mark.req("FR-121")
def test_255_printable_characters_make_a_key(client: TestClient, alice: str) -> None:
    key = "".join(chr(c) for c in range(0x21, 0x7F)) * 3
    answer = _post(client, alice, key[:255])
    assert answer.status_code == 201
    assert _post(client, alice, key[:255]).headers["idempotent-replayed"] == "true"


@pytest.mark.req("FR-121", "FR-020")
def test_key_and_body_problems_are_listed_together(client: TestClient, alice: str) -> None:
    answer = client.post(
        TODOS,
        json={"title": ""},
        headers=[(b"X-User-ID", alice.encode()), (b"Idempotency-Key", b"")],
    )
    assert set(fields(answer)) == {"title", "Idempotency-Key"}
