"""CORS for browser frontends (FR-106): Starlette's CORSMiddleware for exactly the
listed origins; an unlisted origin, or a service with none listed, gets no CORS header
at all; no credentials (cookies) are ever allowed."""

import pytest
from api import TODOS, as_user, create, todo_url
from conftest import make_settings
from fastapi.testclient import TestClient
from httpx import Response

from service.app import create_app
from service.db import Database

FRONTEND = "http://localhost:3000"
ALSO = "https://todos.example.com"
REQUEST_HEADERS = [
    "authorization",
    "x-user-id",
    "content-type",
    "if-match",
    "if-none-match",
    "idempotency-key",
]
EXPOSED = {"location", "etag", "link", "retry-after", "idempotent-replayed", "x-request-id"}


@pytest.fixture
def cors_client(postgres_url: str, database: Database, admin_engine: object) -> TestClient:
    settings = make_settings(postgres_url, TODO_CORS_ORIGINS=f"{FRONTEND}, {ALSO}")
    return TestClient(create_app(settings, database), raise_server_exceptions=False)


def _cors_headers(response: Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


def _preflight(client: TestClient, origin: str, method: str, path: str = TODOS) -> Response:
    answer: Response = client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": ", ".join(REQUEST_HEADERS),
        },
    )
    return answer


@pytest.mark.req("FR-106")
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", TODOS), ("POST", TODOS), ("PATCH", todo_url("x")), ("DELETE", todo_url("x"))],
)
@pytest.mark.parametrize("origin", [FRONTEND, ALSO])
def test_a_preflight_from_a_listed_origin_succeeds_for_the_contracts_methods_and_headers(
    cors_client: TestClient, origin: str, method: str, path: str
) -> None:
    answer = _preflight(cors_client, origin, method, path)
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == origin
    assert method in answer.headers["access-control-allow-methods"]
    allowed = {h.strip().lower() for h in answer.headers["access-control-allow-headers"].split(",")}
    assert set(REQUEST_HEADERS) <= allowed
    assert "access-control-allow-credentials" not in answer.headers
    assert "origin" in answer.headers["vary"].lower()


@pytest.mark.req("FR-106")
def test_responses_to_a_listed_origin_expose_the_contracts_headers(
    cors_client: TestClient, alice: str
) -> None:
    made = cors_client.post(
        TODOS, json={"title": "from the browser"}, headers={**as_user(alice), "Origin": FRONTEND}
    )
    assert made.status_code == 201
    assert made.headers["access-control-allow-origin"] == FRONTEND
    exposed = {h.strip().lower() for h in made.headers["access-control-expose-headers"].split(",")}
    assert exposed == EXPOSED
    assert "access-control-allow-credentials" not in made.headers
    # Errors too: a browser frontend must be able to read a problem.
    missing = cors_client.get(todo_url(made.json()["id"]), headers={"Origin": FRONTEND})
    assert missing.status_code == 400
    assert missing.headers["access-control-allow-origin"] == FRONTEND


@pytest.mark.req("FR-106")
def test_an_unlisted_origin_gets_no_cors_headers_at_all(
    cors_client: TestClient, alice: str
) -> None:
    for origin in ("http://evil.example", "http://localhost:3001", "null", FRONTEND + "/"):
        preflight = _preflight(cors_client, origin, "PATCH", todo_url("x"))
        assert preflight.status_code == 405
        assert _cors_headers(preflight) == {}
        listed = cors_client.get(TODOS, headers={**as_user(alice), "Origin": origin})
        assert listed.status_code == 200
        assert _cors_headers(listed) == {}


@pytest.mark.req("FR-106")
def test_two_origin_lines_are_no_listed_origin(cors_client: TestClient, alice: str) -> None:
    answer = cors_client.get(
        TODOS, headers=[("X-User-ID", alice), ("Origin", FRONTEND), ("Origin", ALSO)]
    )
    assert _cors_headers(answer) == {}


@pytest.mark.req("FR-106")
def test_without_listed_origins_there_are_no_cors_headers(client: TestClient, alice: str) -> None:
    create(client, alice, title="x")
    listed = client.get(TODOS, headers={**as_user(alice), "Origin": FRONTEND})
    assert _cors_headers(listed) == {}
    assert _preflight(client, FRONTEND, "GET").status_code == 405
