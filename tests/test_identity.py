"""Verified identity as only the inside sees it: header mode stays the default,
row-level security alone keeps token users apart, and a fresh token of a Better Auth
user is the same user. The rest, with a real Better Auth, is the conformance kit's."""

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from api import TODOS, create, problem, todo_url
from better_auth import BetterAuth, SignedUp
from conftest import jwt_settings, unfiltered_service
from databases import Databases
from fastapi.testclient import TestClient
from httpx2 import Response  # what TestClient answers (Starlette prefers httpx2)
from sqlalchemy import text
from sqlalchemy.engine import Engine

from service.app import create_app
from service.db import Database


def bearer(user: SignedUp, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {user.token}", **more}


def _make(client: TestClient, user: SignedUp, **body: Any) -> dict[str, Any]:
    answer = client.post(TODOS, json=body, headers=bearer(user))
    assert answer.status_code == 201, answer.text
    made: dict[str, Any] = answer.json()
    return made


def _rows(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.begin() as conn:
        found = conn.execute(text("SELECT * FROM todos ORDER BY id")).all()
        users = conn.execute(text("SELECT id, issuer, subject FROM users ORDER BY id")).all()
    return [tuple(row) for row in [*found, *users]]


def _answer(response: Response) -> tuple[int, bytes, dict[str, str]]:
    headers = {k: v for k, v in response.headers.items() if k not in {"date", "x-request-id"}}
    return response.status_code, response.content, headers


@pytest.mark.req("FR-101")
def test_header_mode_stays_the_default(client: TestClient) -> None:
    user = str(uuid.uuid4())
    assert create(client, user, title="v1 client")["user_id"] == user
    answer = client.get(TODOS, headers={"Authorization": "Bearer whatever"})
    problem(answer, 400, "MISSING_USER_CONTEXT")


# Every operation that names a todo, as Bob might try it on Alice's.
OPERATIONS: dict[str, Callable[[TestClient, str, dict[str, str]], Response]] = {
    "get": lambda c, path, h: c.get(path, headers=h),
    "patch": lambda c, path, h: c.patch(path, json={"title": "pwned"}, headers=h),
    "delete": lambda c, path, h: c.delete(path, headers=h),
}


@pytest.fixture
def jwt_client_without_the_application_filter(
    monkeypatch: pytest.MonkeyPatch, postgres_url: str, better_auth: BetterAuth
) -> Iterator[TestClient]:
    settings = jwt_settings(postgres_url, better_auth)
    with unfiltered_service(monkeypatch, settings) as client:
        yield client


@pytest.mark.req("FR-105", "FR-013", "FR-014")
def test_row_level_security_alone_keeps_token_users_apart(
    jwt_client_without_the_application_filter: TestClient,
    better_auth: BetterAuth,
    admin_engine: Engine,
) -> None:
    client = jwt_client_without_the_application_filter
    alice, bob = better_auth.sign_up("Alice"), better_auth.sign_up("Bob")
    victim = _make(client, alice, title="secret")
    _make(client, bob, title="bob's own")
    before = _rows(admin_engine)
    path = todo_url(victim["id"])
    assert client.get(path, headers=bearer(bob)).status_code == 404
    assert client.patch(path, json={"title": "pwned"}, headers=bearer(bob)).status_code == 404
    assert client.delete(path, headers=bearer(bob)).status_code == 404
    assert [t["title"] for t in client.get(TODOS, headers=bearer(bob)).json()["items"]] == [
        "bob's own"
    ]
    assert _rows(admin_engine) == before


@pytest.mark.req("FR-101", "FR-105")
def test_a_fresh_token_of_the_same_user_is_the_same_user(
    jwt_client: TestClient, better_auth: BetterAuth
) -> None:
    alice = better_auth.sign_up("Alice")
    todo = _make(jwt_client, alice, title="mine")
    again = better_auth.fresh_token(alice)
    answer = jwt_client.get(todo_url(todo["id"]), headers={"Authorization": f"Bearer {again}"})
    assert answer.json() == todo


@pytest.mark.req("FR-105")
def test_better_auth_accounts_survive_a_restart_of_the_pages_server(
    tmp_path: Path, databases: Databases, postgres_url: str, database: Database
) -> None:
    """The web example's Better Auth keeps its accounts in PostgreSQL: started again on
    the same database, a user signs in with the same password and is the same user, who
    finds their todos."""
    accounts, email = databases.clone("accounts"), f"alice-{uuid.uuid4().hex[:8]}@example.com"
    first = BetterAuth(tmp_path, accounts)
    before = first.sign_up("Alice", email=email)
    first.stop()
    again = BetterAuth(tmp_path, accounts, port=first.port)
    try:
        after = again.sign_in(email)
        assert after.subject == before.subject
        client = TestClient(create_app(jwt_settings(postgres_url, again), database))
        made = _make(client, before, title="made before the restart")
        assert client.get(todo_url(made["id"]), headers=bearer(after)).json() == made
    finally:
        again.stop()
