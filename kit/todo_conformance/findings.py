"""Which requirements a schemathesis finding breaks, read from what schemathesis records as
data, never from the wording of its messages: the failure's type (its class, whose code
schemathesis never renumbers), the check that raised it where one type serves two, the
operation (method and path template), the input the case made invalid (its generation
metadata: where, which parameter or body member), and the answer (its status, its
headers, and the fields a 422 names)."""

import base64
import json
import re
from typing import Any

# Failure types whose requirement the type alone says, by schemathesis's class name.
BY_TYPE: dict[str, tuple[str, ...]] = {
    "UnsupportedMethodResponse": ("FR-021",),
    "AllowHeaderMismatch": ("FR-021",),
    "UndefinedContentType": ("FR-020",),
    "MalformedMediaType": ("FR-020",),
    "MissingContentType": ("FR-020",),
    "UseAfterFree": ("FR-012",),
    "EnsureResourceAvailability": ("FR-010",),
    "IgnoredAuth": ("FR-103",),
    "ObjectLevelAuthorizationViolation": ("FR-013", "SC-005"),
    "ResponseTimeExceeded": ("SC-001",),
    # A check that raised a bare assertion: none of the kit's has a requirement of its own.
    "CustomFailure": ("FR-021",),
}
# A status the operation does not declare: a success of another kind breaks the operation's
# own requirement (a create answered 200, not 201), a refusal or failure FR-021.
UNDECLARED = "UndefinedStatusCode"
# Invalid input answered with a 500, or accepted: the requirement of the input made invalid.
SERVER_ERRORS = frozenset({"ServerError", "ContentTypeServerError"})
ACCEPTED = frozenset({"AcceptedNegativeData", "MissingHeaderNotRejected"})
# A schema-valid request refused.
REFUSED = "RejectedPositiveData"
# The answer's body out of its schema: a todo's shape (FR-001) or a problem's (FR-020).
BODY = frozenset(
    {"JsonSchemaError", "MalformedJson", "ContentDeserializationError", "DiscriminatorMismatch"}
)
# A declared response header missing, or (JsonSchemaError from this check) out of its schema.
MISSING_HEADERS = "MissingHeaders"
HEADER_CHECK = "response_headers_conformance"
KNOWN_TYPES = frozenset(
    {*BY_TYPE, UNDECLARED, *SERVER_ERRORS, *ACCEPTED, REFUSED, *BODY, MISSING_HEADERS}
)

# An input, by where it goes and its name (lower case).
BY_PARAMETER: dict[tuple[str, str], tuple[str, ...]] = {
    ("header", "x-user-id"): ("FR-015",),
    ("header", "authorization"): ("FR-015",),
    ("header", "idempotency-key"): ("FR-121",),
    ("header", "if-match"): ("FR-113",),
    ("header", "if-none-match"): ("FR-112",),
    ("path", "todo_id"): ("FR-019",),
    ("query", "limit"): ("FR-133",),
    ("query", "cursor"): ("FR-133",),
    ("query", "completed"): ("FR-201",),
    ("query", "priority"): ("FR-201",),
    ("query", "tag"): ("FR-201",),
    ("query", "due_after"): ("FR-201",),
    ("query", "due_before"): ("FR-201",),
    ("query", "q"): ("FR-201",),
    ("query", "sort"): ("FR-202",),
    ("query", "all"): ("FR-213",),
}
# A body member: the requirement of its rules, and of its length when it is over it.
BY_MEMBER: dict[str, tuple[str, ...]] = {
    "title": ("FR-016",),
    "description": ("FR-018",),
    **dict.fromkeys(("priority", "due_at", "tags", "completed_at"), ("FR-192",)),
}
BY_LENGTH: dict[str, tuple[tuple[str, ...], int]] = {
    "title": (("FR-017",), 255),
    "description": (("FR-018",), 2000),
}
# ... when the input made invalid is the body itself (a member not allowed, a wrong type),
# the requirement of the operation whose body it is.
BY_BODY = {
    "POST /api/v1/todos": ("FR-008",),
    "PATCH /api/v1/todos/{todo_id}": ("FR-011",),
    "POST /api/v2/todos": ("FR-192",),
    "PATCH /api/v2/todos/{todo_id}": ("FR-192",),
    "PATCH /api/v2/todos": ("FR-211",),
}
# ... or, when the case names nothing, by the part of the request made invalid.
BY_COMPONENT = {"path": ("FR-019",), "query": ("FR-133",)}
# A schema-valid request refused, by operation, when the refusal names no input.
BY_OPERATION = {
    "POST /api/v1/todos": ("FR-008",),
    "GET /api/v1/todos": ("FR-009",),
    "HEAD /api/v1/todos": ("FR-009",),
    "GET /api/v1/todos/{todo_id}": ("FR-010",),
    "HEAD /api/v1/todos/{todo_id}": ("FR-010",),
    "PATCH /api/v1/todos/{todo_id}": ("FR-011",),
    "DELETE /api/v1/todos/{todo_id}": ("FR-012",),
    "POST /api/v2/todos": ("FR-192",),
    "GET /api/v2/todos": ("FR-201",),
    "HEAD /api/v2/todos": ("FR-201",),
    "GET /api/v2/todos/{todo_id}": ("FR-191",),
    "HEAD /api/v2/todos/{todo_id}": ("FR-191",),
    "PATCH /api/v2/todos/{todo_id}": ("FR-192",),
    "DELETE /api/v2/todos/{todo_id}": ("FR-012",),
    "GET /api/v2/todos/summary": ("FR-214",),
    "HEAD /api/v2/todos/summary": ("FR-214",),
    "PATCH /api/v2/todos": ("FR-211",),
    "DELETE /api/v2/todos": ("FR-212",),
}
# A success of another kind than the operation declares, by operation: 2.0's operations
# keep 1.x's statuses, so a 2.0 create answered 200 breaks the rule that a create is 201
# Created (FR-008), as a 1.x one does.
BY_STATUS = {
    **BY_OPERATION,
    "POST /api/v2/todos": ("FR-008",),
    "GET /api/v2/todos/{todo_id}": ("FR-010",),
    "HEAD /api/v2/todos/{todo_id}": ("FR-010",),
    "PATCH /api/v2/todos/{todo_id}": ("FR-011",),
}
# A response header, by its name.
BY_HEADER = {
    "etag": ("FR-111",),
    "location": ("FR-008",),
    "www-authenticate": ("FR-103",),
    "link": ("FR-131",),
    "ratelimit": ("FR-152",),
    "ratelimit-policy": ("FR-152",),
    "retry-after": ("FR-152",),
}
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def ids(
    check: str,
    failure: dict[str, Any],
    case: dict[str, Any],
    response: dict[str, Any],
    contract: dict[str, Any],
) -> tuple[str, ...]:
    """The requirements a finding breaks: `check` names the check, `failure`, `case` and
    `response` are as schemathesis's NDJSON report records them, and `contract` is the
    document it ran against."""
    kind = str(failure.get("type", ""))
    operation = str(failure.get("operation", ""))
    status = int(response.get("status_code") or 0)
    if kind in BY_TYPE:
        return BY_TYPE[kind]
    if kind == UNDECLARED:
        return BY_STATUS.get(operation, ("FR-021",)) if status < 400 else ("FR-021",)
    if kind in SERVER_ERRORS:
        return _no_todo(case) or _invalid(case, body=()) or ("FR-021",)
    if kind in ACCEPTED:
        return _invalid(case, body=BY_BODY.get(operation, ())) or ("FR-021",)
    if kind == REFUSED:
        return _refused(case, response) or BY_OPERATION.get(operation, ("FR-021",))
    if kind == MISSING_HEADERS or (kind in BODY and check == HEADER_CHECK):
        wrong = _wrong_headers(contract, operation, response, missing_only=kind == MISSING_HEADERS)
        return _union(BY_HEADER.get(name, ("FR-020",)) for name in wrong) or ("FR-020",)
    if kind in BODY:
        return ("FR-020",) if status >= 400 else ("FR-001",)
    return ("FR-021",)


def _union(groups: Any) -> tuple[str, ...]:
    found: list[str] = []
    for group in groups:
        found += [i for i in group if i not in found]
    return tuple(found)


def _invalid(case: dict[str, Any], body: tuple[str, ...]) -> tuple[str, ...]:
    """The requirements of the inputs the case made invalid (`body`: of the body itself,
    where no member is named)."""
    meta = case.get("meta") or {}
    sent = _body(case)
    found = []
    for location, name in _made_invalid(meta):
        if location == "body" and name in BY_MEMBER:
            found.append(_member(name, sent.get(name), refused=False))
        elif location == "body":
            found.append(body)
        else:
            found.append(BY_PARAMETER.get((location, (name or "").lower()), ()))
    if any(found):
        return _union(found)
    components = meta.get("components") or {}
    for component, state in components.items():
        if (state or {}).get("mode") == "negative" and component in BY_COMPONENT:
            return BY_COMPONENT[component]
    todo_id = (case.get("path_parameters") or {}).get("todo_id")
    if isinstance(todo_id, str) and not _UUID.match(todo_id):
        return ("FR-019",)
    return ()


def _no_todo(case: dict[str, Any]) -> tuple[str, ...]:
    """FR-019 alone, for a failure answering a path whose todo id is no UUID: such a
    request names no todo, so it is refused for its id (422 naming todo_id) whatever else
    it carries, and its failure says nothing of the other inputs the case made invalid
    (an If-Match over its length beside the id `0` is no breach of FR-113's: cases with
    a real id judge those)."""
    todo_id = (case.get("path_parameters") or {}).get("todo_id")
    return ("FR-019",) if isinstance(todo_id, str) and not _UUID.match(todo_id) else ()


def _body(case: dict[str, Any]) -> dict[str, Any]:
    body = case.get("body")
    return body if isinstance(body, dict) else {}


def _made_invalid(meta: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(where, name) of each input made invalid: the fuzzing and stateful phases list
    their mutations; the coverage phase names one location (a body member by the JSON
    pointer into the body's schema)."""
    data = (meta.get("phase") or {}).get("data") or {}
    made: list[tuple[str, str | None]] = []
    for mutation in data.get("mutations") or []:
        location = str(mutation.get("parameter_location") or "")
        path = mutation.get("path") or []
        if location == "body":
            made.append((location, str(path[0]) if path else None))
        else:
            made.append((location, mutation.get("parameter")))
    if made or not data.get("parameter_location"):
        return made
    location = str(data["parameter_location"])
    if location != "body":
        return [(location, data.get("parameter"))]
    pointer = str(data.get("location") or "").split("/")
    member = pointer[2] if len(pointer) > 2 and pointer[1] == "properties" else None
    return [(location, member)]


def _member(name: str, value: Any, refused: bool) -> tuple[str, ...]:
    """A body member's requirement: of its length when the value is over it (in
    characters, as the contract counts; or, for a value `refused` that fits, in UTF-8
    bytes or UTF-16 units, the measures a service may count in their place); else of
    the member's other rules."""
    if name not in BY_LENGTH:
        return BY_MEMBER[name]
    length_ids, most = BY_LENGTH[name]
    if isinstance(value, str) and max(_measures(value)[: 3 if refused else 1]) > most:
        return length_ids
    return BY_MEMBER[name]


def _measures(text: str) -> tuple[int, int, int]:
    """Its length in characters, UTF-8 bytes and UTF-16 code units."""
    utf16 = len(text.encode("utf-16-le", "surrogatepass")) // 2
    return len(text), len(text.encode("utf-8", "surrogatepass")), utf16


def _refused(case: dict[str, Any], response: dict[str, Any]) -> tuple[str, ...]:
    """A schema-valid request refused with a 422: the requirements of the fields the
    refusal names (the contract's `errors[].field`, each named as the client sent it)."""
    named = _named_fields(response)
    body = _body(case)
    found = []
    for name in named:
        if name in BY_MEMBER:
            found.append(_member(name, body.get(name), refused=True))
        else:
            found += [v for (_, key), v in BY_PARAMETER.items() if key == name.lower()]
    return _union(found)


def _named_fields(response: dict[str, Any]) -> list[str]:
    content = response.get("content")
    if int(response.get("status_code") or 0) != 422 or not isinstance(content, dict):
        return []
    try:
        problem = json.loads(base64.b64decode(content.get("$base64", "")))
    except ValueError:
        return []
    errors = problem.get("errors") if isinstance(problem, dict) else None
    if not isinstance(errors, list):
        return []
    return [e["field"] for e in errors if isinstance(e, dict) and isinstance(e.get("field"), str)]


def _wrong_headers(
    contract: dict[str, Any], operation: str, response: dict[str, Any], missing_only: bool
) -> list[str]:
    """The headers the contract declares for this answer that it lacks (when required)
    or, unless `missing_only`, carries out of their schema; in lower case."""
    method, _, path = operation.partition(" ")
    declared = _declared_headers(contract, method, path, int(response.get("status_code") or 0))
    sent = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    wrong = []
    for name, header in declared.items():
        values = sent.get(name.lower())
        if not values:
            if header.get("required"):
                wrong.append(name.lower())
        elif not missing_only and not _fits(values[0], _resolved(contract, header.get("schema"))):
            wrong.append(name.lower())
    return wrong


def _declared_headers(
    contract: dict[str, Any], method: str, path: str, status: int
) -> dict[str, dict[str, Any]]:
    operation = (contract.get("paths") or {}).get(path, {}).get(method.lower()) or {}
    responses = operation.get("responses") or {}
    keys = (str(status), f"{str(status)[:1]}XX", "default")
    answer: Any = next((responses[key] for key in keys if key in responses), {})
    headers = _resolved(contract, answer).get("headers") or {}
    return {name: _resolved(contract, h) for name, h in headers.items()}


def _resolved(contract: dict[str, Any], node: Any) -> dict[str, Any]:
    """`node`, its local `$ref` followed."""
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        target: Any = contract
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = (target or {}).get(part.replace("~1", "/").replace("~0", "~"))
        node = target
    return node if isinstance(node, dict) else {}


def _fits(value: str, schema: dict[str, Any]) -> bool:
    """Whether a header's value fits its schema, as far as a string's keywords go (what
    the contract's header schemas use): enum, maxLength and pattern."""
    if "enum" in schema and value not in schema["enum"]:
        return False
    if isinstance(schema.get("maxLength"), int) and len(value) > schema["maxLength"]:
        return False
    pattern = schema.get("pattern")
    return not isinstance(pattern, str) or re.search(pattern, value) is not None
