"""CORS unset means no CORS header at all: a setting the kit cannot know (with an origin
given, the conformance kit checks the rest)."""

import pytest
from api import TODOS, as_user, create
from conftest import make_settings
from fastapi.testclient import TestClient
from httpx2 import Response  # what TestClient answers (Starlette prefers httpx2)

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
def test_without_listed_origins_there_are_no_cors_headers(client: TestClient, alice: str) -> None:
    create(client, alice, title="x")
    listed = client.get(TODOS, headers={**as_user(alice), "Origin": FRONTEND})
    assert _cors_headers(listed) == {}
    assert _preflight(client, FRONTEND, "GET").status_code == 405
