"""Bounded consumption (FR-151, FR-152): a quota of todos per user, exact under
concurrency, and a rate limit per caller held in PostgreSQL, so every process of the
service shares it; both off unless set, and then absent."""

import logging
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from api import TODOS, Answer, as_user, create, problem, todo_url
from conftest import make_settings
from fastapi.testclient import TestClient
from httpx2 import Response  # what TestClient answers (Starlette prefers httpx2)
from served import Serve
from sql_audit import StatementLog
from sqlalchemy import text
from sqlalchemy.engine import Engine

from service.app import create_app
from service.db import RATE_LIMIT_STEP, Database
from service.store import todos

POLICY = re.compile(r'^"user";q=(\d+);w=(\d+)$')
LIMIT = re.compile(r'^"user";r=(\d+);t=(\d+)$')


@pytest.fixture
def quota_of_five(postgres_url: str, admin_engine: Engine) -> TestClient:
    settings = make_settings(postgres_url, TODO_MAX_TODOS_PER_USER=5)
    return TestClient(create_app(settings, Database(settings)), raise_server_exceptions=False)


def _count(admin_engine: Engine, user: str) -> int:
    with admin_engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM todos WHERE user_id = :u"), {"u": user}
            ).scalar_one()
        )


@pytest.mark.req("FR-151")
def test_of_twenty_concurrent_creates_at_one_below_the_quota_exactly_one_succeeds(
    quota_of_five: TestClient, admin_engine: Engine, alice: str
) -> None:
    for n in range(4):
        create(quota_of_five, alice, title=f"t{n}")
    start = threading.Barrier(20)

    def post(n: int) -> Response:
        start.wait()
        answer: Response = quota_of_five.post(
            TODOS, json={"title": f"race {n}"}, headers=as_user(alice)
        )
        return answer

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(post, range(20)))
    assert sorted(a.status_code for a in answers) == [201] + [409] * 19
    refused = next(a for a in answers if a.status_code == 409)
    body = problem(refused, 409, "QUOTA_EXCEEDED")
    assert body["limit"] == 5
    assert _count(admin_engine, alice) == 5

    some = quota_of_five.get(TODOS, headers=as_user(alice)).json()["items"][0]["id"]
    assert quota_of_five.delete(todo_url(some), headers=as_user(alice)).status_code == 204
    assert (
        quota_of_five.post(TODOS, json={"title": "room"}, headers=as_user(alice)).status_code == 201
    )
    assert _count(admin_engine, alice) == 5


@pytest.mark.req("FR-151", "FR-121")
def test_a_replayed_create_is_answered_at_the_quota_and_a_new_key_is_not(
    quota_of_five: TestClient, admin_engine: Engine, alice: str, bob: str
) -> None:
    key = {**as_user(alice), "Idempotency-Key": "before"}
    first = quota_of_five.post(TODOS, json={"title": "kept"}, headers=key)
    for n in range(4):
        create(quota_of_five, alice, title=f"t{n}")
    again = quota_of_five.post(TODOS, json={"title": "kept"}, headers=key)
    assert (again.status_code, again.content) == (201, first.content)
    assert again.headers["idempotent-replayed"] == "true"
    fresh = {**as_user(alice), "Idempotency-Key": "after"}
    problem(quota_of_five.post(TODOS, json={"title": "new"}, headers=fresh), 409, "QUOTA_EXCEEDED")
    assert _count(admin_engine, alice) == 5
    # The refusal kept nothing of the key: with room again, it creates.
    assert (
        quota_of_five.delete(first.headers["location"], headers=as_user(alice)).status_code == 204
    )
    made = quota_of_five.post(TODOS, json={"title": "new"}, headers=fresh)
    assert made.status_code == 201 and "idempotent-replayed" not in made.headers
    # A new user's first create (their users row made in the same statement) fits.
    assert quota_of_five.post(TODOS, json={"title": "x"}, headers=as_user(bob)).status_code == 201


@pytest.mark.req("FR-151")
def test_the_count_stays_right_however_todos_leave(
    quota_of_five: TestClient, admin_engine: Engine, alice: str
) -> None:
    for n in range(5):
        create(quota_of_five, alice, title=f"t{n}")
    with admin_engine.begin() as conn:
        conn.execute(
            text("DELETE FROM todos WHERE user_id = :u AND title IN ('t0', 't1')"), {"u": alice}
        )
        counted = conn.execute(text("SELECT todo_count FROM users WHERE id = :u"), {"u": alice})
        assert counted.scalar_one() == 3
    for n in range(2):
        create(quota_of_five, alice, title=f"again {n}")
    problem(
        quota_of_five.post(TODOS, json={"title": "x"}, headers=as_user(alice)),
        409,
        "QUOTA_EXCEEDED",
    )


def _limit(answer: Answer) -> tuple[int, int, int, int]:
    policy = POLICY.fullmatch(answer.headers["ratelimit-policy"])
    limit = LIMIT.fullmatch(answer.headers["ratelimit"])
    assert policy and limit, answer.headers
    return int(policy[1]), int(policy[2]), int(limit[1]), int(limit[2])


@pytest.mark.req("FR-152")
def test_two_processes_share_one_limit_and_each_refuses_a_caller_over_it(
    postgres_url: str, database: Database, serve: Serve
) -> None:
    limited = {"TODO_RATE_LIMIT": "10/60"}
    one, other = serve(postgres_url, extra_env=limited), serve(postgres_url, extra_env=limited)
    one.wait_ready()
    other.wait_ready()
    caller, bystander = as_user(str(uuid.uuid4())), as_user(str(uuid.uuid4()))
    answers = [
        httpx.get(f"{(one, other)[n % 2].base}{TODOS}", headers=caller, timeout=10)
        for n in range(14)
    ]
    assert [a.status_code for a in answers] == [200] * 10 + [429] * 4, "the total, not twice"
    assert [_limit(a)[2] for a in answers[:10]] == list(range(9, -1, -1))
    assert _limit(answers[0])[:2] == (10, 60)
    for refused in answers[10:]:
        body = problem(refused, 429, "RATE_LIMITED")
        wait = int(refused.headers["retry-after"])
        assert 1 <= wait <= 6, wait
        assert _limit(refused)[2:] == (0, wait), "Retry-After and t agree"
        assert "Too many requests" in body["detail"]
    for process in (one, other):
        assert httpx.get(f"{process.base}{TODOS}", headers=bystander).status_code == 200
    time.sleep(int(answers[-1].headers["retry-after"]) + 0.2)
    again = httpx.get(f"{other.base}{TODOS}", headers=caller)
    assert again.status_code == 200 and _limit(again)[2] == 0


@pytest.mark.req("FR-152")
def test_over_the_limit_nothing_is_done_and_a_refusal_before_identity_costs_nothing(
    postgres_url: str, admin_engine: Engine, alice: str
) -> None:
    settings = make_settings(postgres_url, TODO_RATE_LIMIT="3/60")
    client = TestClient(create_app(settings, Database(settings)), raise_server_exceptions=False)
    twice = [("X-User-ID", alice), ("X-User-ID", alice)]
    for _ in range(10):
        refused = client.get(TODOS, headers=twice)
        assert refused.status_code == 400 and "ratelimit" not in refused.headers
    made = client.post(TODOS, json={"title": "one"}, headers=as_user(alice))
    assert made.status_code == 201 and _limit(made)[2] == 2
    invalid = client.post(TODOS, json={"title": ""}, headers=as_user(alice))
    assert invalid.status_code == 422 and _limit(invalid)[2] == 1, "a 422 is a step too"
    assert client.get(TODOS, headers=as_user(alice)).status_code == 200
    over = client.post(TODOS, json={"title": "two"}, headers=as_user(alice))
    problem(over, 429, "RATE_LIMITED")
    assert _count(admin_engine, alice) == 1, "a refused create created"
    problem(client.post(TODOS, json={"title": ""}, headers=as_user(alice)), 429, "RATE_LIMITED")


@pytest.mark.req("FR-152")
def test_the_access_log_names_each_caller_the_limit_refused_and_no_other(
    postgres_url: str, database: Database, alice: str, bob: str, caplog: pytest.LogCaptureFixture
) -> None:
    """How an operator finds who TodoServiceRateLimiting is about: the log, never a
    metric label."""
    settings = make_settings(postgres_url, TODO_RATE_LIMIT="2/60")
    client = TestClient(create_app(settings, Database(settings)), raise_server_exceptions=False)
    with caplog.at_level(logging.INFO, logger="service.access"):
        answers = [client.get(TODOS, headers=as_user(alice)) for _ in range(3)]
        # Refused before the store (a 422 owes its step too).
        answers.append(client.post(TODOS, json={"title": ""}, headers=as_user(alice)))
        answers.append(client.get(TODOS, headers=as_user(bob)))
    said = [
        (vars(r)["status"], vars(r).get("caller"))
        for r in caplog.records
        if r.name == "service.access"
    ]
    assert [a.status_code for a in answers] == [200, 200, 429, 429, 200]
    assert said == [(200, None), (200, None), (429, alice), (429, alice), (200, None)]


@pytest.mark.req("FR-151", "FR-152")
def test_unset_the_limits_add_no_header_and_no_statement(
    client: TestClient, statement_log: StatementLog, alice: str
) -> None:
    before = len(statement_log.statements), statement_log.steps, statement_log.quotas
    made = client.post(TODOS, json={"title": "free"}, headers=as_user(alice))
    listed = client.get(TODOS, headers=as_user(alice))
    for answer in (made, listed, client.post(TODOS, json={"title": ""}, headers=as_user(alice))):
        assert not {"ratelimit", "ratelimit-policy"} & set(answer.headers)
    sent = statement_log.statements[before[0] :]
    assert (statement_log.steps, statement_log.quotas) == before[1:]
    assert sent == [todos.CREATE, todos.LIST]
    assert not any(RATE_LIMIT_STEP in s for s in sent)
