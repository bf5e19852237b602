"""Bad input gets a 422 that lists every invalid field and changes nothing."""

from collections.abc import Iterator

import pytest
from api import TODOS, as_user, create, fields, problem, todo_url
from fastapi.testclient import TestClient
from httpx import Response

JSON = {"content-type": "application/json"}


def _post_raw(client: TestClient, user: str, body: bytes) -> Response:
    response: Response = client.post(TODOS, content=body, headers={**as_user(user), **JSON})
    return response


def _nothing_stored(client: TestClient, user: str) -> None:
    assert client.get(TODOS, headers=as_user(user)).json()["count"] == 0


@pytest.mark.req("FR-016", "SC-006")
@pytest.mark.parametrize("title", ["", " ", "\t\n", "\u3000\u00a0"])
def test_title_needs_a_character_that_is_not_whitespace(
    client: TestClient, alice: str, title: str
) -> None:
    response = client.post(TODOS, json={"title": title}, headers=as_user(alice))
    assert "not whitespace" in fields(response)["title"]
    _nothing_stored(client, alice)


@pytest.mark.req("FR-016", "SC-006")
@pytest.mark.parametrize("title", ["\u001e\u001d\n", "\u0085", "\u001c"])
def test_title_whitespace_is_the_contracts_ecma_262_whitespace(
    client: TestClient, alice: str, title: str
) -> None:
    """The spec's `\\s` does not count these, so they make a title, as schemathesis
    rightly insisted."""
    assert create(client, alice, title=title)["title"] == title


@pytest.mark.req("FR-016", "SC-006")
@pytest.mark.parametrize(
    "title",
    ["\u200b\u200b", "\u200d", " \u2060 ", "\ufe0f", "\u00ad\u200e", "\u3164", "\u180e\t"],
)
def test_a_title_of_invisible_formatting_characters_is_blank(
    client: TestClient, alice: str, title: str
) -> None:
    """Nothing of it can be seen: whitespace and Unicode's default-ignorable code points
    (zero-width spaces and joiners, marks, variation selectors, fillers) are not a title."""
    response = client.post(TODOS, json={"title": title}, headers=as_user(alice))
    assert "visible" in fields(response)["title"]
    _nothing_stored(client, alice)


@pytest.mark.req("FR-016")
@pytest.mark.parametrize("title", ["a\u200b", "\u200d\U0001f468", "\u2060x\u2060", "\u0600"])
def test_invisible_characters_beside_a_visible_one_are_kept_as_sent(
    client: TestClient, alice: str, title: str
) -> None:
    assert create(client, alice, title=title)["title"] == title


@pytest.mark.req("FR-016")
def test_title_is_required_on_create(client: TestClient, alice: str) -> None:
    response = client.post(TODOS, json={"description": "no title"}, headers=as_user(alice))
    assert fields(response) == {"title": "is required"}


@pytest.mark.req("FR-016")
def test_title_is_checked_on_update_when_given(client: TestClient, alice: str) -> None:
    todo = create(client, alice, title="ok")
    for body in ({"title": "  "}, {"title": None}, {"title": ""}):
        response = client.patch(todo_url(todo["id"]), json=body, headers=as_user(alice))
        assert "title" in fields(response)
    assert client.get(todo_url(todo["id"]), headers=as_user(alice)).json() == todo


@pytest.mark.req("FR-017", "SC-006")
def test_title_has_at_most_255_characters(client: TestClient, alice: str) -> None:
    assert create(client, alice, title="é" * 255)["title"] == "é" * 255
    response = client.post(TODOS, json={"title": "é" * 256}, headers=as_user(alice))
    assert fields(response) == {"title": "must be at most 255 characters"}


@pytest.mark.req("FR-018", "SC-006")
def test_description_has_at_most_2000_characters(client: TestClient, alice: str) -> None:
    assert len(create(client, alice, title="t", description="x" * 2000)["description"]) == 2000
    response = client.post(
        TODOS, json={"title": "t", "description": "x" * 2001}, headers=as_user(alice)
    )
    assert fields(response) == {"description": "must be at most 2000 characters"}


@pytest.mark.req("FR-019", "EC-3")
@pytest.mark.parametrize(
    "todo_id",
    [
        "not-a-uuid",
        "12345",
        "0b9f1f6e3c0a4b8e9b7e6f3f3d2a1c55",
        "{0b9f1f6e-3c0a-4b8e-9b7e-6f3f3d2a1c55}",
        "urn:uuid:0b9f1f6e-3c0a-4b8e-9b7e-6f3f3d2a1c55",
        "0b9f1f6e-3c0a-4b8e-9b7e-6f3f3d2a1c5g",
    ],
)
@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_todo_id_must_be_a_uuid(client: TestClient, alice: str, todo_id: str, method: str) -> None:
    response = client.request(
        method, todo_url(todo_id), json={"is_completed": True}, headers=as_user(alice)
    )
    assert fields(response) == {"todo_id": "must be a UUID"}


@pytest.mark.req("FR-020", "SC-006")
def test_every_invalid_field_is_listed_at_once(client: TestClient, alice: str) -> None:
    response = client.patch(
        todo_url("nope"),
        json={"title": 5, "description": ["x"], "is_completed": "true", "owner": "me"},
        headers=as_user(alice),
    )
    assert fields(response) == {
        "todo_id": "must be a UUID",
        "title": "must be a string",
        "description": "must be a string or null",
        "is_completed": "must be true or false (a JSON boolean)",
        "owner": "is not an accepted field (accepted: title, description, is_completed)",
    }


@pytest.mark.req("FR-016", "FR-011")
@pytest.mark.parametrize(
    "body",
    [{"is_completed": "true"}, {"is_completed": 1}, {"is_completed": None}, {"title": 123}],
)
def test_types_are_strict_json_types(
    client: TestClient, alice: str, body: dict[str, object]
) -> None:
    todo = create(client, alice, title="strict")
    response = client.patch(todo_url(todo["id"]), json=body, headers=as_user(alice))
    assert set(fields(response)) == set(body)
    assert client.get(todo_url(todo["id"]), headers=as_user(alice)).json() == todo


@pytest.mark.req("FR-011")
def test_an_empty_update_is_refused(client: TestClient, alice: str) -> None:
    todo = create(client, alice, title="x")
    response = client.patch(todo_url(todo["id"]), json={}, headers=as_user(alice))
    assert "at least one of" in fields(response)["body"]


@pytest.mark.req("FR-020")
@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("title", b'{"title": "a\\u0000b"}'),
        ("title", b'{"title": "\\ud800"}'),
        ("title", b'{"title": "x\\udfff"}'),
        ("description", b'{"title": "ok", "description": "\\u0000"}'),
        ("description", b'{"title": "ok", "description": "\\udc00\\ud800"}'),
    ],
)
def test_nul_and_unpaired_surrogates_are_422_never_500(
    client: TestClient, alice: str, field: str, raw: bytes
) -> None:
    response = _post_raw(client, alice, raw)
    message = fields(response)[field]
    assert "U+0000" in message or "surrogate" in message
    _nothing_stored(client, alice)


@pytest.mark.req("FR-001")
def test_paired_surrogates_are_just_an_emoji(client: TestClient, alice: str) -> None:
    response = _post_raw(client, alice, b'{"title": "\\ud83c\\udf89"}')
    assert response.status_code == 201
    assert response.json()["title"] == "🎉"


@pytest.mark.req("FR-021")
@pytest.mark.parametrize(
    "raw", [b"{", b"not json", b'{"title": "x",}', b"\xff\xfe", b"[" * 5000 + b"]" * 5000, b""]
)
def test_malformed_json_is_422_naming_the_body(client: TestClient, alice: str, raw: bytes) -> None:
    response = _post_raw(client, alice, raw)
    assert list(fields(response)) == ["body"]
    _nothing_stored(client, alice)


@pytest.mark.req("FR-153", "FR-021", "SC-006")
@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 30_000 + b"]" * 30_000,
        b'{"title": ' + b"[" * 40 + b"]" * 40 + b"}",
        b'{"title": "x", "description": ' + b'{"a":' * 33 + b"1" + b"}" * 33 + b"}",
    ],
)
def test_json_nested_too_deep_is_422_saying_so(client: TestClient, alice: str, raw: bytes) -> None:
    """Valid JSON, only too deep: the answer says what to fix, not "invalid JSON"."""
    message = fields(_post_raw(client, alice, raw))["body"]
    assert "levels deep" in message and "valid JSON" not in message
    _nothing_stored(client, alice)


@pytest.mark.req("FR-153")
def test_json_nested_as_deep_as_allowed_is_only_judged_by_its_fields(
    client: TestClient, alice: str
) -> None:
    raw = b'{"title": ' + b"[" * 31 + b"]" * 31 + b"}"
    assert fields(_post_raw(client, alice, raw)) == {"title": "must be a string"}


@pytest.mark.req("FR-021")
@pytest.mark.parametrize("raw", [b"[]", b'"title"', b"null", b"42"])
def test_a_body_that_is_not_an_object_is_422(client: TestClient, alice: str, raw: bytes) -> None:
    response = _post_raw(client, alice, raw)
    assert fields(response) == {"body": "must be a JSON object"}


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


@pytest.mark.req("FR-021")
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1", None],
)
def test_body_not_declared_as_json_is_415(
    client: TestClient, alice: str, content_type: str | None
) -> None:
    headers = as_user(alice) | ({"content-type": content_type} if content_type else {})
    response = client.post(TODOS, content=b'{"title": "x"}', headers=headers)
    problem(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    _nothing_stored(client, alice)


@pytest.mark.req("FR-021")
def test_json_with_utf8_charset_is_accepted(client: TestClient, alice: str) -> None:
    response = client.post(
        TODOS,
        content=b'{"title": "x"}',
        headers={**as_user(alice), "content-type": "application/json; charset=UTF-8"},
    )
    assert response.status_code == 201


@pytest.mark.req("FR-015", "FR-021", "EC-2")
def test_checks_run_in_the_contracts_order(client: TestClient, alice: str) -> None:
    too_big = b"x" * (64 * 1024 + 1)
    # 413 before 415, before the user context.
    problem(
        client.post(TODOS, content=too_big, headers={"content-type": "text/plain"}),
        413,
        "PAYLOAD_TOO_LARGE",
    )
    # 415 before the user context.
    problem(
        client.post(TODOS, content=b"{}", headers={"content-type": "text/plain"}),
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    # The user context (400) before validation (422), body and path alike.
    problem(client.post(TODOS, content=b"{", headers=JSON), 400, "MISSING_USER_CONTEXT")
    problem(
        client.patch(todo_url("bad"), content=b"{", headers={**JSON, "X-User-ID": "nope"}),
        400,
        "INVALID_USER_CONTEXT",
    )
    # Validation (422) before lookup (404).
    fields(client.patch(todo_url("bad"), json={}, headers=as_user(alice)))
    fields(
        client.patch(
            todo_url("00000000-0000-4000-8000-000000000000"), json={}, headers=as_user(alice)
        )
    )
