"""Request bytes, path segments, query parameters and headers into validated values,
or one 422 listing every invalid field, each named as the client sent it (a body not
declared as JSON is 415)."""

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from sqlmodel import SQLModel
from starlette.datastructures import QueryParams
from starlette.requests import Request

from service import cursors
from service.cursors import PageRequest
from service.errors import FieldError, UnsupportedMediaType, validation_failed
from service.models import PRIORITIES, TAGS_MAX

Model = TypeVar("Model", bound=SQLModel)

_READ_ONLY = {"id", "user_id", "created_at", "updated_at", "completed_at"}
_BODY = "body"

IDEMPOTENCY_KEY = "Idempotency-Key"
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]{1,255}")
PAGE_LIMIT_MAX = 1000
_DIGITS = re.compile(r"[0-9]{1,7}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# A todo is a flat object; a few levels leave room for what a client may wrongly send
# and still be told precisely what is wrong, while a parser never recurses deeper.
MAX_JSON_DEPTH = 32


def parse_uuid(value: str) -> uuid.UUID | None:
    """Only the canonical 8-4-4-4-12 form, in any letter case: `uuid.UUID` alone would
    also take braces, URNs and unhyphenated hex, which the contract does not."""
    if not _UUID.fullmatch(value):
        return None
    return uuid.UUID(value)


def _is_json(content_type: str) -> bool:
    media, _, parameters = content_type.partition(";")
    media = media.strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        return False
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() != "utf-8":
            return False
    return True


async def json_body(request: Request) -> bytes:
    """The body, once its declared type is JSON in UTF-8."""
    if not _is_json(request.headers.get("content-type", "")):
        raise UnsupportedMediaType(
            "Send the body as JSON in UTF-8 with Content-Type: application/json."
        )
    return await request.body()


@dataclass(frozen=True, slots=True)
class Parsed(Generic[Model]):
    body: Model
    todo_id: uuid.UUID | None = None
    idempotency_key: str | None = None


def _message(error: ErrorDetails, model: type[SQLModel]) -> str:
    kind = error["type"]
    ctx = error.get("ctx", {})
    allowed = ", ".join(model.model_fields)
    messages = {
        "missing": "is required",
        "string_type": "must be a string",
        "string_unicode": "must not contain unpaired surrogate characters",
        "bool_type": "must be true or false (a JSON boolean)",
        "string_too_long": f"must be at most {ctx.get('max_length')} characters",
        "model_attributes_type": "must be a JSON object",
        "model_type": "must be a JSON object",
        "dict_type": "must be a JSON object",
        "literal_error": f"must be one of: {', '.join(PRIORITIES)}",
        "list_type": "must be an array of tags (strings)",
        "too_long": f"must hold at most {TAGS_MAX} tags",
    }
    if kind == "extra_forbidden":
        field = str(error["loc"][0]) if error["loc"] else ""
        if field in _READ_ONLY:
            return "is read-only: the server sets it"
        return f"is not an accepted field (accepted: {allowed})"
    if len(error["loc"]) > 1 and isinstance(error["loc"][1], int):
        # A member of an array: which one.
        said = ctx.get("error", error["msg"]) if kind == "value_error" else None
        return f"item {error['loc'][1] + 1}: {said or messages.get(kind, error['msg'])}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind == "string_type" and error["loc"] and error["loc"][0] == "description":
        return "must be a string or null"
    return messages.get(kind, error["msg"])


def _field_name(error: ErrorDetails) -> str:
    return str(error["loc"][0]) if error["loc"] else _BODY


class _Repeats(dict[str, Any]):
    """A JSON object that named some member more than once."""

    names: list[str]


def _first_repeat(value: Any) -> str | None:
    if isinstance(value, _Repeats):
        return value.names[0]
    if isinstance(value, dict):
        children: Any = value.values()
    elif isinstance(value, list):
        children = value
    else:
        return None
    for child in children:
        if (name := _first_repeat(child)) is not None:
            return name
    return None


def _repeated_members(data: Any) -> list[FieldError]:
    """Each repeated member, named as sent: at the top it is a field of its own; deeper,
    the top-level field that holds it names where."""
    once = "send each member of a JSON object once"
    if not isinstance(data, dict):
        name = _first_repeat(data)
        return [FieldError(_BODY, f'repeats the member "{name}": {once}')] if name else []
    errors = [FieldError(name, f"is repeated: {once}") for name in getattr(data, "names", [])]
    for field, value in data.items():
        if (name := _first_repeat(value)) is not None:
            errors.append(FieldError(field, f'repeats the member "{name}": {once}'))
    return errors


def _deeper_than(body: bytes, most: int) -> bool:
    """Whether arrays and objects nest more than `most` levels anywhere in `body`."""
    if body.count(b"[") + body.count(b"{") <= most:
        return False
    depth = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > most:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


def _parse_json(body: bytes) -> tuple[Any, list[FieldError]]:
    """The parsed body, or why it is refused. A member named twice is refused, never
    resolved: a proxy that keeps the first and a service that keeps the last must not
    disagree about what was sent."""
    if _deeper_than(body, MAX_JSON_DEPTH):
        deep = f"must not nest arrays and objects more than {MAX_JSON_DEPTH} levels deep"
        return None, [FieldError(_BODY, deep)]
    repeats = False

    def unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeats
        members = dict(pairs)
        if len(members) == len(pairs):
            return members
        repeats = True
        marked = _Repeats(members)
        marked.names = []
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen and name not in marked.names:
                marked.names.append(name)
            seen.add(name)
        return marked

    try:
        data = json.loads(body, object_pairs_hook=unique_members)
    except UnicodeDecodeError:
        return None, [FieldError(_BODY, "must be JSON encoded as UTF-8")]
    except ValueError as error:
        where = ""
        if isinstance(error, json.JSONDecodeError):
            where = f" (line {error.lineno}, column {error.colno}: {error.msg})"
        return None, [FieldError(_BODY, f"must be valid JSON{where}")]
    return data, _repeated_members(data) if repeats else []


def _validate(model: type[Model], data: Any) -> tuple[Model | None, list[FieldError]]:
    try:
        parsed = model.model_validate(data)
    except ValidationError as invalid:
        errors: dict[str, str] = {}
        for error in invalid.errors():
            errors.setdefault(_field_name(error), _message(error, model))
        return None, [FieldError(field, message) for field, message in errors.items()]
    return parsed, []


def _idempotency_key(values: Sequence[str]) -> tuple[str | None, FieldError | None]:
    if not values:
        return None, None
    if len(values) > 1:
        return None, FieldError(IDEMPOTENCY_KEY, "must be sent once; it came more than once")
    if not _PRINTABLE_ASCII.fullmatch(values[0]):
        return None, FieldError(IDEMPOTENCY_KEY, "must be 1 to 255 printable ASCII characters")
    return values[0], None


def parse_request(
    model: type[Model],
    body: bytes,
    todo_id: str | None = None,
    idempotency_key: Sequence[str] = (),
    refused: Sequence[FieldError] = (),
) -> Parsed[Model]:
    """Validates the path's todo id, the Idempotency-Key header's values and the body
    together, after what the caller already `refused` (the query's problems), so one
    answer lists every problem."""
    errors = list(refused)
    parsed_id = None
    if todo_id is not None:
        parsed_id = parse_uuid(todo_id)
        if parsed_id is None:
            errors.append(FieldError("todo_id", "must be a UUID"))
    key, key_error = _idempotency_key(idempotency_key)
    if key_error is not None:
        errors.append(key_error)
    data, json_errors = _parse_json(body)
    parsed: Model | None = None
    if json_errors:
        errors.extend(json_errors)
    else:
        parsed, model_errors = _validate(model, data)
        errors.extend(model_errors)
    if errors or parsed is None:
        raise validation_failed(errors)
    return Parsed(parsed, parsed_id, key)


def parse_idempotency_key(values: Sequence[str], refused: Sequence[FieldError] = ()) -> str | None:
    """The Idempotency-Key of a request without a body, or one 422 listing its problem
    after those `refused` already."""
    key, key_error = _idempotency_key(values)
    errors = [*refused, *([] if key_error is None else [key_error])]
    if errors:
        raise validation_failed(errors)
    return key


def parse_todo_id(todo_id: str) -> uuid.UUID:
    parsed = parse_uuid(todo_id)
    if parsed is None:
        raise validation_failed([FieldError("todo_id", "must be a UUID")])
    return parsed


def _one(query: QueryParams, name: str) -> tuple[str | None, FieldError | None]:
    values = query.getlist(name)
    if len(values) > 1:
        return None, FieldError(name, "must be given once")
    return (values[0] if values else None), None


def parse_limit(text: str) -> int | None:
    """A page's size, 1 to PAGE_LIMIT_MAX, or None."""
    if _DIGITS.fullmatch(text) and 1 <= int(text) <= PAGE_LIMIT_MAX:
        return int(text)
    return None


def wants_page(query: QueryParams) -> bool:
    return "limit" in query or "cursor" in query


def parse_page(query: QueryParams, cursor_key: bytes) -> PageRequest:
    """`limit` (1 to PAGE_LIMIT_MAX) and, after the first page, the `cursor` that the
    previous page handed out."""
    errors = []
    limit_text, error = _one(query, "limit")
    if error is not None:
        errors.append(error)
    cursor_text, error = _one(query, "cursor")
    if error is not None:
        errors.append(error)
    limit = None
    if limit_text is None:
        if not any(e.field == "limit" for e in errors):
            errors.append(FieldError("limit", "is required to read the list in pages"))
    elif (limit := parse_limit(limit_text)) is None:
        errors.append(FieldError("limit", f"must be a whole number from 1 to {PAGE_LIMIT_MAX}"))
    after = None
    if cursor_text is not None:
        after = cursors.decode(cursor_key, cursor_text)
        if after is None:
            errors.append(
                FieldError("cursor", "is not a cursor this service handed out (next_cursor)")
            )
    if errors or limit is None:
        raise validation_failed(errors)
    return PageRequest(limit, after)
