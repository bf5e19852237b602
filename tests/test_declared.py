"""Everything the contract declares an answer may carry is something the service sends:
every status of every operation is produced here, and each answer carries every
header declared for it where it applies (FR-153: the OWASP rules ask the contract to
declare rate-limit and CORS headers on every answer; this proves the declarations
true, on a service with every option set)."""

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from api import TODOS
from better_auth import BetterAuth
from conftest import SPEC_PATH, jwt_settings, make_settings, read_yaml
from fastapi.testclient import TestClient
from httpx2 import Response  # what TestClient answers (Starlette prefers httpx2)
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from service.app import create_app
from service.db import Database
from service.settings import Settings

SPEC: dict[str, Any] = read_yaml(SPEC_PATH)
ORIGIN = "https://app.example.com"
FAIL = "x-test-fail-here"
# Headers sent whenever they apply: to a listed origin (every answer here asks from
# one), and the caller's limit (every answer to an identified caller).
RATE_LIMITED = {"ratelimit", "ratelimit-policy"}
# The caller's todos, under either version.
API = "/api/"


def _fails_when_asked(app: ASGIApp) -> ASGIApp:
    """Raises inside the app when a request asks it to: the unexpected, answered 500."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and any(k == FAIL.encode() for k, _ in scope["headers"]):
            raise RuntimeError("failing on purpose")
        await app(scope, receive, send)

    return middleware


def _app(settings: Settings, database: Database | None = None) -> TestClient:
    app = create_app(settings, database or Database(settings))
    app.user_middleware.append(Middleware(_fails_when_asked))
    return TestClient(app, raise_server_exceptions=False)


def _settings(url: str, rate: str, auth: BetterAuth | None = None) -> Settings:
    options: dict[str, Any] = {
        "TODO_CORS_ORIGINS": ORIGIN,
        "TODO_RATE_LIMIT": rate,
        "TODO_MAX_TODOS_PER_USER": 2,
    }
    return jwt_settings(url, auth, **options) if auth else make_settings(url, **options)


class Service:
    """This service with every option set: in header mode (a roomy rate limit, and one
    of two requests a minute), in jwt mode, and with its database not there yet."""

    def __init__(self, url: str, auth: BetterAuth) -> None:
        self.header = _app(_settings(url, "1000/60"))
        self.limited = _app(_settings(url, "2/60"))
        self.jwt = _app(_settings(url, "1000/60", auth))
        down = _settings(url, "1000/60")
        self.down = _app(down, Database(down, schema_ready=False))

    def fresh(self) -> dict[str, str]:
        return {"X-User-ID": str(uuid.uuid4()), "Origin": ORIGIN}

    def todo(self, user: dict[str, str]) -> tuple[str, str]:
        made = self.header.post(TODOS, json={"title": "declared"}, headers=user)
        assert made.status_code == 201, made.text
        return made.json()["id"], made.headers["etag"]


@pytest.fixture(scope="module")
def service(postgres_url: str, database: Database, better_auth: BetterAuth) -> Iterator[Service]:
    yield Service(postgres_url, better_auth)


Produce = Callable[[Service, str, str], Response]


def _call(client: TestClient, method: str, path: str, **kwargs: Any) -> Response:
    answer: Response = client.request(method, path, **kwargs)
    return answer


def _over_the_rate(s: Service, method: str, path: str, user: dict[str, str]) -> Response:
    for _ in range(2):
        _call(s.limited, "GET", TODOS, headers=user)
    body = {"title": "x"} if method in {"POST", "PATCH"} else None
    return _call(s.limited, method, path, json=body, headers=user)


def _on_a_todo(status: int) -> Produce:
    """An answer of `status` from an operation on one todo."""

    def produce(s: Service, method: str, template: str) -> Response:
        user = s.fresh()
        if status == 429:
            # Refused before any lookup: no todo of its own, whose create (under the roomy
            # limit) would move the caller's shared allowance by a step of its own.
            return _over_the_rate(s, method, template.replace("{todo_id}", str(uuid.uuid4())), user)
        todo, etag = s.todo(user)
        path = template.replace("{todo_id}", todo)
        body = {"title": "again"} if method == "PATCH" else None
        headers: dict[str, str] = {}
        if status == 304:
            headers = {"If-None-Match": etag}
        elif status == 404:
            path = template.replace("{todo_id}", str(uuid.uuid4()))
        elif status == 412:
            headers = {"If-Match": '"1"'}
        elif status == 422:
            path = template.replace("{todo_id}", "not-a-uuid")
        return _call(s.header, method, path, json=body, headers={**user, **headers})

    return produce


def _on_the_list(status: int) -> Produce:
    def produce(s: Service, method: str, path: str) -> Response:
        user = s.fresh()
        if status == 429:
            return _over_the_rate(s, method, path, user)
        if method == "POST":
            if status == 201:  # a replay, with Idempotent-Replayed
                keyed = {**user, "Idempotency-Key": "declared"}
                _call(s.header, "POST", path, json={"title": "replayed"}, headers=keyed)
                return _call(s.header, "POST", path, json={"title": "replayed"}, headers=keyed)
            if status == 409:
                s.todo(user)
                s.todo(user)
            title = "" if status == 422 else "over"
            return _call(s.header, "POST", path, json={"title": title}, headers=user)
        s.todo(user)
        if status == 200:  # two todos: a page of one has a next, and its Link
            s.todo(user)
            return _call(s.header, method, f"{path}?limit=1", headers=user)
        if status == 304:
            etag = _call(s.header, "GET", path, headers=user).headers["etag"]
            return _call(s.header, method, path, headers={**user, "If-None-Match": etag})
        assert status == 422
        if path.endswith("/summary"):
            # It takes no query; its one input is a condition, refused over its length.
            too_long = ", ".join(['"x"'] * 2000)
            return _call(s.header, method, path, headers={**user, "If-None-Match": too_long})
        return _call(s.header, method, f"{path}?limit=0", headers=user)

    return produce


def _bulk(status: int) -> Produce:
    """An answer of `status` from a bulk write (PATCH or DELETE on the list)."""

    def produce(s: Service, method: str, path: str) -> Response:
        user = s.fresh()
        if status == 429:
            return _over_the_rate(s, method, path, user)
        s.todo(user)
        body = {"is_completed": True} if method == "PATCH" else None
        if status == 200:  # a replay, with Idempotent-Replayed
            keyed = {**user, "Idempotency-Key": "declared"}
            _call(s.header, method, f"{path}?all=true", json=body, headers=keyed)
            return _call(s.header, method, f"{path}?all=true", json=body, headers=keyed)
        if status == 412:
            stale = {**user, "If-Match": f'"{uuid.UUID(user["X-User-ID"]).hex}-0"'}
            return _call(s.header, method, f"{path}?all=true", json=body, headers=stale)
        assert status == 422
        return _call(s.header, method, path, json=body, headers=user)

    return produce


def _is_bulk(method: str, path: str) -> bool:
    return method in {"PATCH", "DELETE"} and "{todo_id}" not in path


def _anyone(status: int) -> Produce:
    """What does not depend on the operation: who is calling, the body's size and type,
    the unexpected and the database."""

    def produce(s: Service, method: str, template: str) -> Response:
        path = template.replace("{todo_id}", str(uuid.uuid4()))
        body: dict[str, Any] | None = {"title": "x"} if method in {"POST", "PATCH"} else None
        if _is_bulk(method, template):
            # A bulk write the database would be asked for.
            path, body = f"{path}?all=true", body and {"is_completed": True}
        if status == 400:
            return _call(s.header, method, path, json=body, headers={"Origin": ORIGIN})
        if status == 401:
            return _call(s.jwt, method, path, json=body, headers={"Origin": ORIGIN})
        if status == 413:
            big = b'{"title": "' + b"x" * 70_000 + b'"}'
            headers = {**s.fresh(), "Content-Type": "application/json"}
            return _call(s.header, method, path, content=big, headers=headers)
        if status == 415:
            headers = {**s.fresh(), "Content-Type": "text/plain"}
            return _call(s.header, method, path, content=b"x", headers=headers)
        if status == 500:
            return _call(s.header, method, path, json=body, headers={**s.fresh(), FAIL: "1"})
        assert status == 503
        return _call(s.down, method, path, json=body, headers=s.fresh())

    return produce


def _public(status: int) -> Produce:
    def produce(s: Service, method: str, path: str) -> Response:
        if status == 200:
            return _call(s.header, method, path, headers={"Origin": ORIGIN})
        if status == 500:
            return _call(s.header, method, path, headers={"Origin": ORIGIN, FAIL: "1"})
        assert status == 503
        return _call(s.down, method, path, headers={"Origin": ORIGIN})

    return produce


def _producer(method: str, path: str, status: int) -> Produce:
    if not path.startswith(API):
        return _public(status)
    if status in {400, 401, 413, 415, 500, 503}:
        return _anyone(status)
    if _is_bulk(method, path):
        return _bulk(status)
    return _on_a_todo(status) if "{todo_id}" in path else _on_the_list(status)


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = SPEC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


DECLARED = [
    (method.upper(), path, int(status))
    for path, item in SPEC["paths"].items()
    for method, operation in item.items()
    if method != "parameters"
    for status in operation["responses"]
]


@pytest.mark.req("FR-153", "FR-151", "FR-152", "FR-106")
@pytest.mark.parametrize(("method", "path", "status"), DECLARED)
def test_every_declared_answer_is_sent_with_every_header_it_declares(
    service: Service, method: str, path: str, status: int
) -> None:
    answer = _producer(method, path, status)(service, method, path)
    assert answer.status_code == status, answer.text
    declared = _resolve(SPEC["paths"][path][method.lower()]["responses"][str(status)])
    # Answered before the caller is known (413 and 415 come first, then 400 and 401),
    # or past any caller (500, 503): no caller, no limit to tell.
    identified = path.startswith(API) and status not in {400, 401, 413, 415, 500, 503}
    for name in declared.get("headers", {}):
        # The scenarios are those each header applies to (a listed origin asks every
        # time; a page has a next; a create is replayed), but for the caller's limit,
        # which only an identified caller has.
        applies = identified if name.lower() in RATE_LIMITED else True
        assert (name.lower() in answer.headers) == applies, f"{name} on {method} {status}"
    if method == "HEAD":
        assert answer.content == b""
