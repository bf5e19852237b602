"""openapi.yaml is the source of truth: served byte for byte, rendered offline."""

import re
from typing import Any

import pytest
from conftest import SPEC_PATH, read_yaml
from fastapi.testclient import TestClient
from httpx2 import Response  # what TestClient answers (Starlette prefers httpx2)
from openapi_spec_validator import validate

from service.errors import ServiceError

SPEC: dict[str, Any] = read_yaml(SPEC_PATH)


@pytest.mark.req("FR-020")
def test_the_contract_is_valid_openapi_3_1() -> None:
    assert SPEC["openapi"].startswith("3.1")
    validate(SPEC)


@pytest.mark.req("FR-020")
def test_the_service_serves_the_hand_written_document(client: TestClient) -> None:
    response = client.get("/openapi.yaml")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/yaml")
    assert response.content == SPEC_PATH.read_bytes()


@pytest.mark.req("FR-020")
def test_docs_need_nothing_from_the_internet(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    references = re.findall(r'(?:src|href|url)\s*[=:]\s*"([^"]+)"', page.text)
    assert references, "the page loads its assets and the document"
    for reference in references:
        assert reference.startswith("/"), f"{reference} is not served by the service"
        assert client.get(reference).status_code == 200


@pytest.mark.req("FR-008", "FR-009", "FR-010", "FR-011", "FR-012")
def test_every_operation_of_the_contract_is_documented() -> None:
    operations = {
        (method.upper(), path)
        for path, item in SPEC["paths"].items()
        for method in item
        if method != "parameters"
    }
    gets = {
        ("GET", "/api/v1/todos"),
        ("GET", "/api/v1/todos/{todo_id}"),
        ("GET", "/api/v2/todos"),
        ("GET", "/api/v2/todos/{todo_id}"),
        ("GET", "/api/v2/todos/summary"),
        ("GET", "/health/live"),
        ("GET", "/health/ready"),
        ("GET", "/openapi.yaml"),
        ("GET", "/docs"),
    }
    # HEAD wherever GET works (RFC 9110 9.3.2).
    heads = {("HEAD", path) for _, path in gets}
    assert operations == {
        ("POST", "/api/v1/todos"),
        ("PATCH", "/api/v1/todos/{todo_id}"),
        ("DELETE", "/api/v1/todos/{todo_id}"),
        ("POST", "/api/v2/todos"),
        ("PATCH", "/api/v2/todos"),
        ("DELETE", "/api/v2/todos"),
        ("PATCH", "/api/v2/todos/{todo_id}"),
        ("DELETE", "/api/v2/todos/{todo_id}"),
        *gets,
        *heads,
    }


@pytest.mark.req("FR-107")
def test_the_contract_declares_both_ways_in() -> None:
    schemes = SPEC["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert schemes["bearerAuth"]["bearerFormat"] == "JWT"
    assert schemes["userIdHeader"]["in"] == "header"
    assert schemes["userIdHeader"]["name"] == "X-User-ID"
    assert SPEC["security"] == [{"bearerAuth": []}, {"userIdHeader": []}]
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            if path.startswith("/api/"):
                assert "security" not in operation, "todos use the document's security"
                assert "401" in operation["responses"], f"{method} {path} documents 401"
            else:
                assert operation["security"] == [], f"{method} {path} is public"
    user_header = SPEC["components"]["parameters"]["UserId"]
    assert user_header["required"] is False, "a jwt-mode client need not send X-User-ID"


@pytest.mark.req("FR-107", "FR-020")
def test_the_contract_is_version_2_1_and_lists_every_problem_code() -> None:
    assert SPEC["info"]["version"].startswith("2.1.")
    codes = set(SPEC["components"]["schemas"]["Problem"]["properties"]["code"]["enum"])
    assert {
        "MISSING_TOKEN",
        "INVALID_TOKEN",
        "TOKEN_EXPIRED",
        "PRECONDITION_FAILED",
        "IDEMPOTENCY_KEY_REUSED",
        "QUOTA_EXCEEDED",
        "RATE_LIMITED",
    } <= codes


@pytest.mark.req("FR-020", "FR-021")
def test_every_code_the_service_answers_is_in_the_contract() -> None:
    def subclasses(kind: type[ServiceError]) -> list[type[ServiceError]]:
        return [kind, *(s for c in kind.__subclasses__() for s in subclasses(c))]

    answered = {kind.code for kind in subclasses(ServiceError)}
    documented = set(SPEC["components"]["schemas"]["Problem"]["properties"]["code"]["enum"])
    assert answered <= documented


def _headers(response: Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in {"date", "x-request-id"}}
