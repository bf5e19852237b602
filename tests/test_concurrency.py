"""Concurrent writers: the last write wins and no update is half-applied."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from api import TODOS, as_user, create, todo_url
from fastapi.testclient import TestClient

WRITERS = [
    {"title": f"writer {n}", "description": f"all of writer {n}", "is_completed": n % 2 == 0}
    for n in range(8)
]


@pytest.mark.req("EC-5")
def test_parallel_updates_leave_exactly_one_writers_full_state(
    client: TestClient, alice: str
) -> None:
    todo = create(client, alice, title="contended")
    for _ in range(5):
        with ThreadPoolExecutor(len(WRITERS)) as pool:
            answers = list(
                pool.map(
                    lambda body: client.patch(
                        todo_url(todo["id"]), json=body, headers=as_user(alice)
                    ),
                    WRITERS,
                )
            )
        assert [a.status_code for a in answers] == [200] * len(WRITERS)
        final = client.get(todo_url(todo["id"]), headers=as_user(alice)).json()
        state = {k: final[k] for k in ("title", "description", "is_completed")}
        assert state in WRITERS
        # The winner is the write with the newest updated_at: the last one applied.
        last = max((a.json() for a in answers), key=lambda t: t["updated_at"])
        assert final == last


@pytest.mark.req("EC-5", "FR-008")
def test_parallel_creates_are_all_kept(client: TestClient, alice: str) -> None:
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda n: client.post(TODOS, json={"title": f"#{n}"}, headers=as_user(alice)),
                range(40),
            )
        )
    assert all(a.status_code == 201 for a in answers)
    listed = client.get(TODOS, headers=as_user(alice)).json()
    assert sorted(t["title"] for t in listed["items"]) == sorted(f"#{n}" for n in range(40))


@pytest.mark.req("EC-5", "FR-012")
def test_parallel_deletes_of_one_todo_give_exactly_one_204(client: TestClient, alice: str) -> None:
    for _ in range(5):
        path = todo_url(create(client, alice, title="going")["id"])
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda p: client.delete(p, headers=as_user(alice)), [path] * 8))
        assert sorted(a.status_code for a in answers) == [204] + [404] * 7
    assert client.get(TODOS, headers=as_user(alice)).json()["count"] == 0
