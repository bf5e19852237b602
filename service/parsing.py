"""Request bytes and path segments into validated models, or one 422 listing every
invalid field, each named as the client sent it."""

import json
import uuid
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from sqlmodel import SQLModel

from service.errors import FieldError, validation_failed
from service.identity import parse_uuid
from service.models import TodoUpdate

Model = TypeVar("Model", bound=SQLModel)

_READ_ONLY = {"id", "user_id", "created_at", "updated_at"}
_BODY = "body"


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
    }
    if kind == "extra_forbidden":
        field = str(error["loc"][0]) if error["loc"] else ""
        if field in _READ_ONLY:
            return "is read-only: the server sets it"
        return f"is not an accepted field (accepted: {allowed})"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind == "string_type" and error["loc"] and error["loc"][0] == "description":
        return "must be a string or null"
    return messages.get(kind, error["msg"])


def _field_name(error: ErrorDetails) -> str:
    return str(error["loc"][0]) if error["loc"] else _BODY


def _parse_json(body: bytes) -> tuple[Any, FieldError | None]:
    try:
        return json.loads(body), None
    except UnicodeDecodeError:
        return None, FieldError(_BODY, "must be JSON encoded as UTF-8")
    except (ValueError, RecursionError) as error:
        where = ""
        if isinstance(error, json.JSONDecodeError):
            where = f" (line {error.lineno}, column {error.colno}: {error.msg})"
        return None, FieldError(_BODY, f"must be valid JSON{where}")


def _validate(model: type[Model], data: Any) -> tuple[Model | None, list[FieldError]]:
    try:
        parsed = model.model_validate(data)
    except ValidationError as invalid:
        errors: dict[str, str] = {}
        for error in invalid.errors():
            errors.setdefault(_field_name(error), _message(error, model))
        return None, [FieldError(field, message) for field, message in errors.items()]
    if isinstance(parsed, TodoUpdate) and not parsed.model_fields_set:
        fields = ", ".join(TodoUpdate.model_fields)
        return None, [FieldError(_BODY, f"must set at least one of: {fields}")]
    return parsed, []


def parse_request(
    model: type[Model], body: bytes, todo_id: str | None = None
) -> tuple[Model, uuid.UUID | None]:
    """Validates the path's todo id and the body together, so one answer lists both."""
    errors: list[FieldError] = []
    parsed_id = None
    if todo_id is not None:
        parsed_id = parse_uuid(todo_id)
        if parsed_id is None:
            errors.append(FieldError("todo_id", "must be a UUID"))
    data, json_error = _parse_json(body)
    parsed: Model | None = None
    if json_error is not None:
        errors.append(json_error)
    else:
        parsed, model_errors = _validate(model, data)
        errors.extend(model_errors)
    if errors or parsed is None:
        raise validation_failed(errors)
    return parsed, parsed_id


def parse_todo_id(todo_id: str) -> uuid.UUID:
    parsed = parse_uuid(todo_id)
    if parsed is None:
        raise validation_failed([FieldError("todo_id", "must be a UUID")])
    return parsed
