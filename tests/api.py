"""Small helpers so tests read like the requirement they prove."""

import uuid
from typing import Any

import httpx
import httpx2
from fastapi.testclient import TestClient

# What TestClient answers with (Starlette prefers httpx2), or a served service over httpx.
Answer = httpx2.Response | httpx.Response

TODOS = "/api/v1/todos"


def as_user(user: str) -> dict[str, str]:
    return {"X-User-ID": user}


def create(client: TestClient, user: str, **body: Any) -> dict[str, Any]:
    response = client.post(TODOS, json=body, headers=as_user(user))
    assert response.status_code == 201, response.text
    todo: dict[str, Any] = response.json()
    return todo


def todo_url(todo_id: str | uuid.UUID) -> str:
    return f"{TODOS}/{todo_id}"


def problem(response: Answer, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["status"] == status
    return body


def fields(response: Answer) -> dict[str, str]:
    body = problem(response, 422, "VALIDATION_ERROR")
    return {error["field"]: error["message"] for error in body["errors"]}
