"""Errors as only the inside can make them: a failure inside the service is a 500 problem
that gives nothing away, this service's own messages, and request ids. The shape and
codes of every refusal a client can cause are the conformance kit's."""

import uuid
from typing import Any

import jsonschema
import pytest
from api import TODOS, as_user, problem, todo_url
from conftest import SPEC_PATH, read_yaml
from fastapi.testclient import TestClient

from service.store import todos

SPEC: dict[str, Any] = read_yaml(SPEC_PATH)
PROBLEM_SCHEMA = {**SPEC["components"]["schemas"]["Problem"], "components": SPEC["components"]}
SOME_ID = "0b9f1f6e-3c0a-4b8e-9b7e-6f3f3d2a1c55"

OPERATIONS = [
    ("POST", TODOS, {"title": "x"}),
    ("GET", TODOS, None),
    ("GET", todo_url(SOME_ID), None),
    ("PATCH", todo_url(SOME_ID), {"is_completed": True}),
    ("DELETE", todo_url(SOME_ID), None),
]


def _valid_problem(body: dict[str, Any]) -> None:
    jsonschema.validate(body, PROBLEM_SCHEMA)


@pytest.mark.req("FR-021", "FR-020")
def test_not_found_validation_and_server_failure_differ(
    client: TestClient, alice: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    not_found = problem(
        client.get(todo_url(uuid.uuid4()), headers=as_user(alice)), 404, "NOT_FOUND"
    )
    invalid = problem(client.get(todo_url("x"), headers=as_user(alice)), 422, "VALIDATION_ERROR")

    def broken(*args: Any) -> None:
        raise RuntimeError("postgresql://user:hunter2@db/x exploded at line 42")

    monkeypatch.setattr(todos, "list_all", broken)
    response = client.get(TODOS, headers=as_user(alice))
    failure = problem(response, 500, "INTERNAL_ERROR")
    for body in (not_found, invalid, failure):
        _valid_problem(body)
    assert {not_found["type"], invalid["type"], failure["type"]} == {
        "/problems/not-found",
        "/problems/validation-error",
        "/problems/internal-error",
    }
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
    assert "x-request-id" in response.headers


@pytest.mark.req("FR-020")
def test_validation_problem_has_the_documented_shape(client: TestClient, alice: str) -> None:
    body = problem(
        client.post(TODOS, json={"title": ""}, headers=as_user(alice)), 422, "VALIDATION_ERROR"
    )
    _valid_problem(body)
    assert body["errors"] == [
        {"field": "title", "message": "must contain at least one character that is not whitespace"}
    ]
    assert "title" in body["detail"]


@pytest.mark.req("FR-020")
def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    echoed = client.get("/health/live", headers={"X-Request-ID": "trace-123"})
    assert echoed.headers["x-request-id"] == "trace-123"
    generated = client.get("/health/live", headers={"X-Request-ID": "bad id\twith spaces"})
    assert generated.headers["x-request-id"] not in {"", "bad id\twith spaces"}
