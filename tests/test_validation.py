"""Validation the conformance kit does not judge, being this service's reading of the
contract: whitespace as ECMA-262's `\\s` counts it, the nesting it allows, and a body
streamed past 64 KiB refused before it is read whole."""

from collections.abc import Iterator

import pytest
from api import TODOS, as_user, create, fields, problem
from fastapi.testclient import TestClient
from httpx2 import Response  # what TestClient answers (Starlette prefers httpx2)

JSON = {"content-type": "application/json"}


def _post_raw(client: TestClient, user: str, body: bytes) -> Response:
    response: Response = client.post(TODOS, content=body, headers={**as_user(user), **JSON})
    return response


def _nothing_stored(client: TestClient, user: str) -> None:
    assert client.get(TODOS, headers=as_user(user)).json()["count"] == 0


@pytest.mark.req("FR-016", "SC-006")
@pytest.mark.parametrize("title", ["\u001e\u001d\n", "\u0085", "\u001c"])
def test_title_whitespace_is_the_contracts_ecma_262_whitespace(
    client: TestClient, alice: str, title: str
) -> None:
    """The spec's `\\s` does not count these, so they make a title, as schemathesis
    rightly insisted."""
    assert create(client, alice, title=title)["title"] == title


@pytest.mark.req("FR-153")
def test_json_nested_as_deep_as_allowed_is_only_judged_by_its_fields(
    client: TestClient, alice: str
) -> None:
    raw = b'{"title": ' + b"[" * 31 + b"]" * 31 + b"}"
    assert fields(_post_raw(client, alice, raw)) == {"title": "must be a string"}


@pytest.mark.req("FR-021")
def test_body_over_64_kib_is_413(client: TestClient, alice: str) -> None:
    body = b'{"title": "' + b"x" * (64 * 1024) + b'"}'
    problem(_post_raw(client, alice, body), 413, "PAYLOAD_TOO_LARGE")

    def chunks() -> Iterator[bytes]:
        yield b'{"title": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    streamed = client.post(TODOS, content=chunks(), headers={**as_user(alice), **JSON})
    problem(streamed, 413, "PAYLOAD_TOO_LARGE")
    _nothing_stored(client, alice)
