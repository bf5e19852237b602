"""The kit's fuzzer findings land under the requirement each breaks (FR-146), read from
what schemathesis records as data: the failure's type, the check, the operation, the
input the case made invalid, the answer. Every failure schemathesis can raise against an
OpenAPI target is pinned here, made with schemathesis's own classes and recorded with
its own NDJSON serializer; the cases are in the shapes its runs against this service
recorded. Each message names the wrong things, so no wording can steer a finding."""

import base64
import json
from typing import Any

import jsonschema_rs
import pytest
from conftest import REPO, read_yaml
from schemathesis.core.failures import (
    AcceptedNegativeData,
    ContentTypeServerError,
    CustomFailure,
    Failure,
    MalformedJson,
    ResponseTimeExceeded,
    ServerError,
)
from schemathesis.openapi.checks import (
    AllowHeaderMismatch,
    AuthScenario,
    ContentDeserializationError,
    DiscriminatorMismatch,
    EnsureResourceAvailability,
    IgnoredAuth,
    JsonSchemaError,
    MalformedMediaType,
    MissingContentType,
    MissingHeaderNotRejected,
    MissingHeaders,
    ObjectLevelAuthorizationViolation,
    RejectedPositiveData,
    UndefinedContentType,
    UndefinedStatusCode,
    UnsupportedMethodResponse,
    UseAfterFree,
)
from schemathesis.reporting.ndjson import serialize
from todo_conformance.findings import KNOWN_TYPES, ids
from todo_conformance.fuzz import mode_view

CONTRACT = mode_view(read_yaml(REPO / "openapi.yaml"), "header")
WORDS = "title description X-User-ID todo_id Idempotency-Key If-Match limit ETag Location"
CREATE, LIST, ONE = "POST /api/v1/todos", "GET /api/v1/todos", "GET /api/v1/todos/{todo_id}"
PATCH, DELETE = "PATCH /api/v1/todos/{todo_id}", "DELETE /api/v1/todos/{todo_id}"
USER = "98028b8f-f6e3-4aa3-8b30-6a4def9ccf8e"
TODO = "101bd331-ac9f-429e-ba93-a913b439ed28"
TAG = '"1764063000123456"'
LIMIT = '"user";r=599;t=1'
POLICY = '"user";q=600;w=60'


# -- cases, as schemathesis records them ------------------------------------------------


def _case(
    method: str,
    mode: str = "positive",
    phase: str = "examples",
    data: dict[str, Any] | None = None,
    components: dict[str, str] | None = None,
    body: Any = None,
    todo_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    case: dict[str, Any] = {
        "method": method.partition(" ")[0],
        "path": method.partition(" ")[2],
        "headers": {"X-User-ID": USER, **(headers or {})},
        "meta": {
            "generation": {"time": 0.01, "mode": mode},
            "components": {k: {"mode": v} for k, v in (components or {}).items()},
            "phase": {"name": phase, "data": data or {}},
        },
        "auth_identity": "main",
    }
    if body is not None:
        case["body"], case["media_type"] = body, "application/json"
    if todo_id is not None:
        case["path_parameters"] = {"todo_id": todo_id}
    return case


def covered(
    operation: str, scenario: str, where: str, name: str | None, pointer: str | None, **kw: Any
) -> dict[str, Any]:
    """A case of the coverage phase: one location made invalid (or at its boundary)."""
    data = {
        "scenario": scenario,
        "description": WORDS,
        "location": pointer,
        "parameter": name,
        "parameter_location": where,
    }
    return _case(operation, "negative", "coverage", data, {where: "negative"}, **kw)


def mutated(
    operation: str, *mutations: tuple[str, str | None, list[str]], **kw: Any
) -> dict[str, Any]:
    """A case of the fuzzing phase: each mutation (where, name, keywords) as it records it."""
    recorded = [
        {
            # A header removed has no path; what it records is empty is left out.
            **({"path": [name]} if name and keywords != ["required"] else {}),
            "parameter_location": where,
            "schema_pointer": f"/properties/{name}" if name else "",
            "channel": "schema",
            "operator": "negate_constraints",
            "keywords": keywords,
            **({"parameter": name} if name else {}),
        }
        for where, name, keywords in mutations
    ]
    where, name, _ = mutations[0]
    data = {"description": WORDS, "parameter": name, "parameter_location": where,
            "location": f"/properties/{name}", "mutations": recorded}  # fmt: skip
    return _case(operation, "negative", "fuzzing", data, {where: "negative"}, **kw)


def answer(status: int, headers: dict[str, str] | None = None, body: Any = None) -> dict[str, Any]:
    content = b"" if body is None else json.dumps(body).encode()
    return {
        "status_code": status,
        "headers": {k: [v] for k, v in (headers or {}).items()},
        "content": {"$base64": base64.b64encode(content).decode()},
        "elapsed": 0.01,
    }


def refused(*fields: str) -> dict[str, Any]:
    errors = [{"field": f, "message": WORDS} for f in fields]
    problem = {"type": "about:blank", "title": WORDS, "status": 422, "detail": WORDS,
               "code": "VALIDATION_ERROR", "errors": errors}  # fmt: skip
    return answer(422, {"content-type": "application/problem+json"}, problem)


def schema_error(operation: str, schema: dict[str, Any], instance: Any) -> JsonSchemaError:
    error = next(jsonschema_rs.validator_for(schema).iter_errors(instance))
    return JsonSchemaError.from_exception(
        title=WORDS, operation=operation, exc=error, root_schema=schema
    )


def accepted(operation: str, status: int) -> AcceptedNegativeData:
    return AcceptedNegativeData(
        operation=operation, message=WORDS, status_code=status, expected_statuses=["4xx"]
    )


def rejected(operation: str, status: int) -> RejectedPositiveData:
    return RejectedPositiveData(
        operation=operation, message=WORDS, status_code=status, allowed_statuses=["2xx"]
    )


OK = {"ETag": TAG, "RateLimit": LIMIT, "RateLimit-Policy": POLICY}
ACCENTED = "\u00e9" * 255
ASTRAL = "\U0001f389" * 2000


# -- every kind of finding, and where it lands ---------------------------------------------

FINDINGS: list[tuple[str, str, Failure, dict[str, Any], dict[str, Any], tuple[str, ...]]] = [
    # A 500: the requirement of the input made invalid, else a server failure (FR-021).
    ("500 for an id no UUID (coverage)", "not_a_server_error",
     ServerError(operation=ONE, status_code=500, message=WORDS),
     covered(ONE, "string_above_max_length", "path", "todo_id", "/maxLength", todo_id="0" * 40),
     answer(500), ("FR-019",)),
    ("500 for an id no UUID (fuzzing)", "not_a_server_error",
     ServerError(operation=PATCH, status_code=500, message=WORDS),
     mutated(PATCH, ("path", "todo_id", ["format"]), todo_id="x", body={"is_completed": True}),
     answer(500), ("FR-019",)),
    # The id alone: a request naming no todo says nothing of its If-Match or its body.
    ("500 for an id no UUID beside other invalid inputs", "not_a_server_error",
     ServerError(operation=PATCH, status_code=500, message=WORDS),
     mutated(PATCH, ("header", "If-Match", ["maxLength"]), ("body", "title", ["pattern"]),
             todo_id="0", body={"title": " "}),
     answer(500), ("FR-019",)),
    ("500 for a blank title", "not_a_server_error",
     ServerError(operation=CREATE, status_code=500, message=WORDS),
     mutated(CREATE, ("body", "title", ["pattern"]), body={"title": " "}),
     answer(500), ("FR-016",)),
    ("500 for an unknown member", "not_a_server_error",
     ServerError(operation=CREATE, status_code=500, message=WORDS),
     covered(CREATE, "object_unexpected_properties", "body", "application/json",
             "/additionalProperties", body={"title": "t", "x": 1}),
     answer(500), ("FR-021",)),
    ("500 for a well-formed request", "not_a_server_error",
     ServerError(operation=LIST, status_code=500, message=WORDS),
     _case(LIST), answer(500), ("FR-021",)),
    ("500 for a content type not JSON", "not_a_server_error",
     ContentTypeServerError(operation=CREATE, status_code=500, message=WORDS),
     covered(CREATE, "unsupported_content_type", "body", None, None, body={"title": "t"}),
     answer(500), ("FR-021",)),
    # Invalid input accepted: the requirement of that input.
    ("a 256-character title accepted", "negative_data_rejection",
     accepted(CREATE, 201),
     covered(CREATE, "string_above_max_length", "body", "application/json",
             "/properties/title/maxLength", body={"title": "0" * 256}),
     answer(201), ("FR-017",)),
    ("a blank title accepted", "negative_data_rejection",
     accepted(PATCH, 200),
     mutated(PATCH, ("body", "title", ["pattern", "maxLength"]), todo_id=TODO,
             body={"title": "\u3000" * 200}),
     answer(200), ("FR-016",)),
    ("a 2,001-character description accepted", "negative_data_rejection",
     accepted(PATCH, 200),
     covered(PATCH, "string_above_max_length", "body", "application/json",
             "/properties/description/maxLength", todo_id=TODO, body={"description": "0" * 2001}),
     answer(200), ("FR-018",)),
    ("an unknown member accepted on create", "negative_data_rejection",
     accepted(CREATE, 201),
     covered(CREATE, "object_unexpected_properties", "body", "application/json",
             "/additionalProperties", body={"title": "t", "colour": 1}),
     answer(201), ("FR-008",)),
    ("is_completed of another type accepted on update", "negative_data_rejection",
     accepted(PATCH, 200),
     mutated(PATCH, ("body", "is_completed", ["type"]), todo_id=TODO, body={"is_completed": 1}),
     answer(200), ("FR-011",)),
    ("no X-User-ID accepted", "negative_data_rejection",
     accepted(LIST, 200),
     mutated(LIST, ("header", "X-User-ID", ["required"])),
     answer(200), ("FR-015",)),
    ("a limit out of range accepted", "negative_data_rejection",
     accepted(LIST, 200),
     covered(LIST, "value_above_maximum", "query", "limit", "/maximum"),
     answer(200), ("FR-133",)),
    ("a bad Idempotency-Key accepted", "negative_data_rejection",
     accepted(CREATE, 201),
     covered(CREATE, "string_above_max_length", "header", "Idempotency-Key", "/maxLength",
             body={"title": "t"}),
     answer(201), ("FR-121",)),
    ("a bad If-Match accepted", "negative_data_rejection",
     accepted(DELETE, 204),
     mutated(DELETE, ("header", "If-Match", ["pattern"]), todo_id=TODO),
     answer(204), ("FR-113",)),
    ("a bad If-None-Match accepted", "negative_data_rejection",
     accepted(ONE, 200),
     mutated(ONE, ("header", "If-None-Match", ["pattern"]), todo_id=TODO),
     answer(200), ("FR-112",)),
    ("an id no UUID answered 404, not 422", "negative_data_rejection",
     accepted(ONE, 404),
     _case(ONE, "negative", "stateful", {}, {"path": "negative"}, todo_id="abc"),
     answer(404), ("FR-019",)),
    ("two invalid inputs accepted at once", "negative_data_rejection",
     accepted(CREATE, 201),
     mutated(CREATE, ("header", "X-User-ID", ["required"]), ("body", "title", ["maxLength"]),
             body={"title": "0" * 300}),
     answer(201), ("FR-015", "FR-017")),
    ("a missing X-User-ID accepted", "missing_required_header",
     MissingHeaderNotRejected(operation=CREATE, header_name="X-User-ID", status_code=201,
                              expected_statuses=[400], message=WORDS),
     covered(CREATE, "missing_parameter", "header", "X-User-ID", None, body={"title": "t"}),
     answer(201), ("FR-015",)),
    # A schema-valid request refused: the fields the 422 names, else the operation.
    ("a 255-character title of two-byte letters refused", "positive_data_acceptance",
     rejected(CREATE, 422),
     _case(CREATE, body={"title": ACCENTED}), refused("title"), ("FR-017",)),
    ("a title that fits refused", "positive_data_acceptance",
     rejected(PATCH, 422),
     _case(PATCH, body={"title": "Buy milk"}, todo_id=TODO), refused("title"), ("FR-016",)),
    ("a 2,000-character description of emoji refused", "positive_data_acceptance",
     rejected(CREATE, 422),
     _case(CREATE, body={"title": "t", "description": ASTRAL}), refused("description"),
     ("FR-018",)),
    ("a good limit refused", "positive_data_acceptance",
     rejected(LIST, 422),
     _case(LIST), refused("limit"), ("FR-133",)),
    ("a create refused naming nothing", "positive_data_acceptance",
     rejected(CREATE, 400),
     _case(CREATE, body={"title": "t"}), answer(400), ("FR-008",)),
    ("a list refused", "positive_data_acceptance",
     rejected(LIST, 400),
     _case(LIST), answer(400), ("FR-009",)),
    ("a delete refused", "positive_data_acceptance",
     rejected(DELETE, 400),
     _case(DELETE, todo_id=TODO), answer(400), ("FR-012",)),
    # Response headers: by the header the contract declares and the answer lacks or breaks.
    ("no ETag on a todo", "response_headers_conformance",
     MissingHeaders(operation=ONE, missing_headers=["ETag"], message=WORDS),
     _case(ONE, todo_id=TODO), answer(200, {"RateLimit": LIMIT}), ("FR-111",)),
    ("no Retry-After on a 429", "response_headers_conformance",
     MissingHeaders(operation=LIST, missing_headers=["Retry-After"], message=WORDS),
     _case(LIST), answer(429), ("FR-152",)),
    ("an ETag out of its schema", "response_headers_conformance",
     schema_error(CREATE, {"type": "string", "pattern": '^"'}, "W/x"),
     _case(CREATE, body={"title": "t"}), answer(201, {**OK, "ETag": "W/x"}), ("FR-111",)),
    ("a RateLimit out of its schema", "response_headers_conformance",
     schema_error(LIST, {"type": "string", "pattern": "^r"}, "x"),
     _case(LIST), answer(200, {**OK, "RateLimit": "r=1"}), ("FR-152",)),
    ("an Idempotent-Replayed out of its schema", "response_headers_conformance",
     schema_error(CREATE, {"type": "string", "enum": ["true"]}, "yes"),
     _case(CREATE, body={"title": "t"}), answer(201, {**OK, "Idempotent-Replayed": "yes"}),
     ("FR-020",)),
    # Bodies: a todo's shape (FR-001) or a problem's (FR-020), by the answer's status.
    ("a todo out of its schema", "response_schema_conformance",
     schema_error(ONE, {"type": "object", "required": ["updated_at"]}, {}),
     _case(ONE, todo_id=TODO), answer(200, OK, {}), ("FR-001",)),
    ("a problem out of its schema", "response_schema_conformance",
     schema_error(ONE, {"type": "object", "required": ["status"]}, {}),
     _case(ONE, todo_id=TODO), answer(404, {}, {}), ("FR-020",)),
    ("a list that is no JSON", "response_schema_conformance",
     MalformedJson(operation=LIST, validation_message=WORDS, document="{", position=1, lineno=1,
                   colno=2, message=WORDS),
     _case(LIST), answer(200, OK), ("FR-001",)),
    ("a problem that cannot be read", "response_schema_conformance",
     ContentDeserializationError(operation=CREATE, message=WORDS),
     _case(CREATE, body={"title": ""}), answer(422), ("FR-020",)),
    ("an unknown discriminator in a todo", "response_schema_conformance",
     DiscriminatorMismatch(operation=ONE, message=WORDS),
     _case(ONE, todo_id=TODO), answer(200, OK), ("FR-001",)),
    ("no Content-Type on a problem", "response_schema_conformance",
     MissingContentType(operation=ONE, media_types=["application/problem+json"], message=WORDS),
     _case(ONE, todo_id=TODO), answer(404), ("FR-020",)),
    # A status not declared: a success of another kind is the operation's, the rest FR-021.
    ("a create answered 200, not 201", "status_code_conformance",
     UndefinedStatusCode(operation=CREATE, status_code=200, defined_status_codes=["201"],
                         allowed_status_codes=[201], message=WORDS),
     _case(CREATE, body={"title": "t"}), answer(200, OK), ("FR-008",)),
    ("a 2.0 create answered 200, not 201", "status_code_conformance",
     UndefinedStatusCode(operation="POST /api/v2/todos", status_code=200,
                         defined_status_codes=["201"], allowed_status_codes=[201],
                         message=WORDS),
     _case("POST /api/v2/todos", body={"title": "t"}), answer(200, OK), ("FR-008",)),
    ("a status the contract does not declare", "status_code_conformance",
     UndefinedStatusCode(operation=DELETE, status_code=418, defined_status_codes=["204"],
                         allowed_status_codes=[204], message=WORDS),
     _case(DELETE, todo_id=TODO), answer(418), ("FR-021",)),
    # The rest: the type says which.
    ("a content type the contract does not declare", "content_type_conformance",
     UndefinedContentType(operation=ONE, content_type="text/html",
                          defined_content_types=["application/json"], message=WORDS),
     _case(ONE, todo_id=TODO), answer(200), ("FR-020",)),
    ("a malformed content type", "content_type_conformance",
     MalformedMediaType(operation=ONE, actual="json", defined="application/json", message=WORDS),
     _case(ONE, todo_id=TODO), answer(200), ("FR-020",)),
    ("no content type", "content_type_conformance",
     MissingContentType(operation=ONE, media_types=["application/json"], message=WORDS),
     _case(ONE, todo_id=TODO), answer(200), ("FR-020",)),
    ("a deleted todo still read", "use_after_free",
     UseAfterFree(operation=ONE, message=WORDS, free=DELETE, usage=ONE),
     _case(ONE, todo_id=TODO), answer(200, OK), ("FR-012",)),
    ("a created todo not found", "ensure_resource_availability",
     EnsureResourceAvailability(operation=ONE, message=WORDS, created_with=CREATE,
                                not_available_with=ONE),
     _case(ONE, todo_id=TODO), answer(404), ("FR-010",)),
    ("no token accepted", "ignored_auth",
     IgnoredAuth(operation=LIST, message=WORDS, scenario=AuthScenario.NO_AUTH),
     _case(LIST), answer(200, OK), ("FR-103",)),
    ("another user's todo read", "object_level_authorization",
     ObjectLevelAuthorizationViolation(operation=ONE, message=WORDS, owner="main", peer="alt",
                                       owner_case_id="a"),
     _case(ONE, todo_id=TODO), answer(200, OK), ("FR-013", "SC-005")),
    ("a create slower than allowed", "max_response_time",
     ResponseTimeExceeded(operation=CREATE, elapsed=3.0, deadline=2.0, message=WORDS),
     _case(CREATE, body={"title": "t"}), answer(201, OK), ("SC-001",)),
    ("an undeclared method answered 200", "unsupported_method",
     UnsupportedMethodResponse(operation=LIST, method="PUT", status_code=200,
                               failure_reason="wrong_status", message=WORDS),
     _case(LIST), answer(200), ("FR-021",)),
    ("a 405 whose Allow lists other methods", "allow_header_conformance",
     AllowHeaderMismatch(operation=LIST, allow_header="GET", missing_methods=["POST"],
                         undocumented_methods=[], message=WORDS),
     _case(LIST), answer(405), ("FR-021",)),
    ("a bare assertion in a check", "not_a_server_error",
     CustomFailure(operation=LIST, title=WORDS, message=WORDS, exception=AssertionError(WORDS)),
     _case(LIST), answer(200, OK), ("FR-021",)),
]  # fmt: skip


@pytest.mark.req("FR-146")
@pytest.mark.parametrize(
    ("check", "failure", "case", "response", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in FINDINGS],
)
def test_a_finding_lands_under_the_requirement_it_breaks(
    check: str,
    failure: Failure,
    case: dict[str, Any],
    response: dict[str, Any],
    expected: tuple[str, ...],
) -> None:
    assert check in type(failure).checks or isinstance(failure, CustomFailure), check
    assert ids(check, serialize(failure), case, response, CONTRACT) == expected


def _kinds(base: type[Failure]) -> set[type[Failure]]:
    found = set()
    for kind in base.__subclasses__():
        found |= {kind, *_kinds(kind)}
    return found


@pytest.mark.req("FR-146")
def test_every_kind_of_finding_schemathesis_has_is_mapped_and_pinned() -> None:
    """A schemathesis release with a new kind of failure fails here, where the kit would
    otherwise file it under a guess."""
    kinds = {k for k in _kinds(Failure) if not k.__module__.startswith("schemathesis.graphql")}
    assert {k.__name__ for k in kinds} == set(KNOWN_TYPES)
    assert {type(row[2]).__name__ for row in FINDINGS} == set(KNOWN_TYPES)
