"""Who may call, what may be sent, and how refusals look (v1, and 1.2's bounds)."""

from typing import Any

from todo_conformance.checks import (
    ONE,
    PROBLEM,
    TODOS,
    Context,
    Failed,
    Inapplicable,
    check,
    expect,
    expect_invalid,
    expect_problem,
    missing_id,
    named_fields,
    op,
    parameter,
    problem,
    response,
    schema,
    scheme,
    todo_path,
)
from todo_conformance.target import Exchange
from todo_conformance.users import User

NOT_UUIDS = (
    "not-a-uuid",
    "123",
    "0b9f1f6e3c0a4b8e9b7e6f3f3d2a1c55",
    "{0b9f1f6e-3c0a-4b8e-9b7e-6f3f3d2a1c55}",
)
BLANK = ("", " ", "\t\n", "\u3000\u00a0")
# What no error body may ever carry (the HTTP contract: no stack trace, SQL, driver
# message or connection string).
LEAKS = ("Traceback (most recent call last)", "psycopg", "postgresql://", "postgres://", "SQLSTATE")


def _operations(ctx: Context, todo_id: str) -> list[tuple[str, str, Any]]:
    """Every operation on todos, with a body it would accept."""
    return [
        ("POST", TODOS, {"title": ctx.title("ok")}),
        ("GET", TODOS, None),
        ("GET", todo_path(todo_id), None),
        ("PATCH", todo_path(todo_id), {"is_completed": True}),
        ("DELETE", todo_path(todo_id), None),
    ]


@check("FR-015", clauses=(parameter("UserId"), op("GET", TODOS, 400)), modes=("header",))
def a_request_without_a_usable_user_id_is_400(ctx: Context) -> None:
    """header mode: every operation without X-User-ID, with it empty, or not a UUID, is 400, and
    nothing is created"""
    todo = ctx.create(ctx.main, "guarded")
    before = len(ctx.listed(ctx.main))
    for method, path, body in _operations(ctx, todo["id"]):
        for headers in (
            [],
            [("X-User-ID", "")],
            [("X-User-ID", "alice")],
            [("X-User-ID", "12345")],
        ):
            answer = ctx.send(method, path, None, headers=headers, json=body)
            expect(
                answer.status == 400,
                f"{method} {path} with {headers or 'no X-User-ID'}: {answer.status}, not 400",
                answer,
            )
    expect(
        len(ctx.listed(ctx.main)) == before, "a request without a user changed the caller's list"
    )
    expect(
        ctx.read(ctx.main, todo["id"]).json_or_none() == todo,
        "a request without a user changed a todo",
    )


@check("FR-015", clauses=(parameter("UserId"), scheme("userIdHeader")), modes=("header",))
def a_user_id_in_any_letter_case_names_the_same_user(ctx: Context) -> None:
    """header mode: X-User-ID in upper or mixed case names the same user as in lower case: their
    todos are listed, read, updated and deleted through either, and one made through one is
    listed through the other with the same user_id"""
    lower = ctx.own_user("case")
    assert lower.user_header is not None
    upper = User(f"{lower.name} upper", user_header=lower.user_header.upper())
    mixed = User(f"{lower.name} mixed", user_header=_alternating(lower.user_header))
    todo = ctx.create(lower, "made in lower case")
    path = todo_path(todo["id"])
    listed = ctx.send("GET", TODOS, upper)
    expect(
        listed.status == 200 and todo["id"] in _ids(listed),
        f"the list through {upper.user_header} ({listed.status}) misses the todo made through"
        f" {lower.user_header}",
        listed,
    )
    read = ctx.send("GET", path, mixed)
    expect(read.json_or_none() == todo, f"a read in mixed case answered {read.status}", read)
    changed = ctx.send("PATCH", path, upper, json={"is_completed": True})
    expect(
        changed.status == 200 and (changed.json_or_none() or {}).get("is_completed") is True,
        f"an update in upper case answered {changed.status}",
        changed,
    )
    made = ctx.create(upper, "made in upper case")
    expect(
        made["user_id"] == todo["user_id"],
        f"a todo made in upper case belongs to {made['user_id']}, not {todo['user_id']}",
    )
    mine = ctx.send("GET", TODOS, lower)
    expect(made["id"] in _ids(mine), "the list in lower case misses the todo made in upper", mine)
    # 204 finds the todo as the caller's (another user's is 404); whether it is then gone
    # is FR-012's to say.
    gone = ctx.send("DELETE", path, mixed)
    expect(gone.status == 204, f"a delete in mixed case answered {gone.status}", gone)


def _alternating(user_id: str) -> str:
    return "".join(c.upper() if n % 2 else c for n, c in enumerate(user_id))


def _ids(listed: Exchange) -> set[str]:
    body = listed.json_or_none()
    items = body.get("items") if isinstance(body, dict) else None
    return {str(t.get("id")) for t in items or [] if isinstance(t, dict)}


@check("EC-2", clauses=(response("BadRequest"),), modes=("header",))
def no_user_context_is_missing_user_context(ctx: Context) -> None:
    """header mode: no or empty X-User-ID is 400 MISSING_USER_CONTEXT; one that is no UUID, 400
    INVALID_USER_CONTEXT"""
    for headers, code in (
        ([], "MISSING_USER_CONTEXT"),
        ([("X-User-ID", "")], "MISSING_USER_CONTEXT"),
        ([("X-User-ID", "alice")], "INVALID_USER_CONTEXT"),
    ):
        answer = ctx.send("GET", TODOS, None, headers=headers)
        expect_problem(answer, 400, code, f"GET with {headers or 'no X-User-ID'}")


@check("FR-015", clauses=(response("Unauthorized"),), modes=("bearer",))
def a_request_without_a_token_is_refused(ctx: Context) -> None:
    """bearer mode: every operation without a token is 401 (in place of v1's 400), and nothing is
    created"""
    todo = ctx.create(ctx.main, "guarded")
    before = len(ctx.listed(ctx.main))
    for method, path, body in _operations(ctx, todo["id"]):
        answer = ctx.send(method, path, None, json=body)
        expect(
            answer.status == 401,
            f"{method} {path} without a token: {answer.status}, not 401",
            answer,
        )
    expect(len(ctx.listed(ctx.main)) == before, "a request without a token changed the list")


@check("FR-015", clauses=(op("POST", TODOS, 400), op("POST", TODOS, 401)))
def the_user_is_checked_before_the_input(ctx: Context) -> None:
    """The order of checks: who is calling (400/401) before validation (422) and lookup
    (404)"""
    refused = 401 if ctx.bearer else 400
    for method, path, body in (
        ("POST", TODOS, {"title": ""}),
        ("PATCH", todo_path(missing_id()), {"title": ""}),
        ("DELETE", todo_path(missing_id()), None),
    ):
        answer = ctx.send(method, path, None, json=body)
        expect(
            answer.status == refused,
            f"{method} {path} with no user and bad input: {answer.status}, not {refused}",
            answer,
        )


@check("FR-016", clauses=(schema("Title"), op("POST", TODOS, 422)))
def a_title_needs_a_character_that_is_not_whitespace(ctx: Context) -> None:
    """A title that is missing, null or only whitespace is 422 naming title, on create and on
    update"""
    todo = ctx.create(ctx.main, "titled")
    for title in BLANK:
        made = ctx.send("POST", TODOS, ctx.main, json={"title": title})
        expect_invalid(made, "title", f"create with title {title!r}")
        changed = ctx.send("PATCH", todo_path(todo["id"]), ctx.main, json={"title": title})
        expect_invalid(changed, "title", f"update with title {title!r}")
    expect_invalid(
        ctx.send("POST", TODOS, ctx.main, json={"description": "x"}),
        "title",
        "a create without a title",
    )
    expect_invalid(
        ctx.send("PATCH", todo_path(todo["id"]), ctx.main, json={"title": None}),
        "title",
        "title: null",
    )
    expect_invalid(ctx.send("POST", TODOS, ctx.main, json={"title": 123}), "title", "title: 123")
    expect(
        ctx.read(ctx.main, todo["id"]).json_or_none() == todo, "a refused update changed the todo"
    )


@check("FR-016", clauses=(schema("Title"),), since="1.2")
def a_title_of_invisible_characters_is_blank(ctx: Context) -> None:
    """A title of only invisible formatting characters (zero-width spaces, joiners, marks) is blank:
    422"""
    for title in ("\u200b\u200b", "\u200d", " \u2060 ", "\ufe0f"):
        made = ctx.send("POST", TODOS, ctx.main, json={"title": title})
        expect_invalid(made, "title", f"create with title {title!r}")
    kept = ctx.create(ctx.main, "a\u200b")
    expect(
        kept["title"].endswith("a\u200b"), "a visible title with an invisible character was changed"
    )


@check("FR-016", "FR-018", clauses=(schema("Title"), schema("Description")))
def text_without_nul_or_lone_surrogates(ctx: Context) -> None:
    """U+0000 and unpaired surrogates are 422 naming the field, never stored, never a 500"""
    for field, raw in (
        ("title", b'{"title": "a\\u0000b"}'),
        ("title", b'{"title": "\\ud800"}'),
        ("description", b'{"title": "ok", "description": "x\\u0000"}'),
        ("description", b'{"title": "ok", "description": "\\udfff"}'),
    ):
        answer = ctx.send(
            "POST", TODOS, ctx.main, body=raw, headers=[("Content-Type", "application/json")]
        )
        expect_invalid(answer, field, f"a create with {raw.decode()}")


@check("FR-019", clauses=(parameter("TodoId"), op("GET", ONE, 422)))
def a_todo_id_must_be_a_uuid(ctx: Context) -> None:
    """A todo id in the path that is not a UUID is 422 naming todo_id, for GET, PATCH and DELETE"""
    for bad in NOT_UUIDS:
        for method, body in (("GET", None), ("PATCH", {"is_completed": True}), ("DELETE", None)):
            answer = ctx.send(method, todo_path(bad), ctx.main, json=body)
            expect_invalid(answer, "todo_id", f"{method} with the id {bad!r}")


@check("EC-3", clauses=(parameter("TodoId"), op("GET", ONE, 422)))
def a_todo_id_that_is_no_uuid_is_a_validation_error(ctx: Context) -> None:
    """Todo id not a UUID: 422 VALIDATION_ERROR naming the id"""
    answer = ctx.send("GET", todo_path("not-a-uuid"), ctx.main)
    expect_invalid(answer, "todo_id", "GET /api/v1/todos/not-a-uuid")


@check("FR-008", "FR-011", clauses=(schema("TodoCreate"), schema("TodoUpdate")))
def unknown_fields_and_wrong_types_are_refused(ctx: Context) -> None:
    """Unknown fields and values of the wrong JSON type are 422, on create and on update"""
    todo = ctx.create(ctx.main, "strict")
    path = todo_path(todo["id"])
    expect_invalid(
        ctx.send("POST", TODOS, ctx.main, json={"title": ctx.title(), "colour": "red"}),
        "colour",
        "a create with an unknown field",
    )
    for value in ("true", 1, None):
        expect_invalid(
            ctx.send("PATCH", path, ctx.main, json={"is_completed": value}),
            "is_completed",
            f"is_completed: {value!r}",
        )
    expect_invalid(
        ctx.send("PATCH", path, ctx.main, json={"colour": "red"}),
        "colour",
        "an update with an unknown field",
    )
    for name, value in (("user_id", ctx.alt.expected_id or missing_id()), ("id", missing_id())):
        expect_problem(
            ctx.send("PATCH", path, ctx.main, json={name: value}),
            422,
            "VALIDATION_ERROR",
            f"an update naming {name}",
        )
    expect_problem(
        ctx.send("PATCH", path, ctx.main, json={}), 422, "VALIDATION_ERROR", "an empty update"
    )
    expect(
        ctx.read(ctx.main, todo["id"]).json_or_none() == todo, "a refused update changed the todo"
    )


@check("SC-006", clauses=(schema("Problem"), schema("FieldError")))
def every_invalid_field_is_listed_at_once(ctx: Context) -> None:
    """A request with several invalid fields gets one 422 listing each, with a message saying what
    to fix"""
    answer = ctx.send(
        "POST", TODOS, ctx.main, json={"title": 123, "description": "y" * 2100, "colour": 1}
    )
    body = expect_problem(answer, 422, "VALIDATION_ERROR", "three invalid fields")
    if problem(answer) is None:
        raise Inapplicable("the 422 is not problem details, whose errors it would list (FR-020)")
    errors = body.get("errors")
    if not isinstance(errors, list):
        raise Failed("the problem has no errors list", answer)
    expect(
        {"title", "description", "colour"} <= named_fields(answer),
        f"not every invalid field is listed: {sorted(named_fields(answer))}",
        answer,
    )
    expect(
        all(isinstance(e.get("message"), str) and e["message"].strip() for e in errors),
        "an error has no message",
        answer,
    )
    expect(
        isinstance(body.get("detail"), str) and body["detail"].strip(),
        "the problem has no detail",
        answer,
    )
    if ctx.contract.at_least("1.1"):
        keyed = ctx.send(
            "POST", TODOS, ctx.main, headers=[("Idempotency-Key", "")], json={"title": ""}
        )
        named = named_fields(keyed)
        expect(
            {"title", "Idempotency-Key"} <= named,
            f"a bad key and a bad title: only {sorted(named)} named",
            keyed,
        )


@check("FR-021", clauses=(op("POST", TODOS, 422),))
def malformed_json_is_a_validation_error(ctx: Context) -> None:
    """Malformed JSON, or a body that is not an object, is 422 naming the body, never a 500"""
    for raw in (b"{", b"not json", b'{"title": "x",}', b"\xff\xfe", b"", b"[]", b"null"):
        answer = ctx.send(
            "POST", TODOS, ctx.main, body=raw, headers=[("Content-Type", "application/json")]
        )
        expect_invalid(answer, "body", f"a body of {raw!r}")


@check("FR-021", "FR-008", clauses=(op("POST", TODOS, 415), op("POST", TODOS) + "/requestBody"))
def a_body_must_be_declared_as_json(ctx: Context) -> None:
    """A body declared as anything but JSON (or not declared) is 415 and creates nothing;
    JSON with a charset parameter is JSON"""
    before = len(ctx.listed(ctx.main))
    body = b'{"title": "' + ctx.title("typed").encode() + b'"}'
    for declared in ("text/plain", None):
        headers = [] if declared is None else [("Content-Type", declared)]
        answer = ctx.send("POST", TODOS, ctx.main, body=body, headers=headers)
        expect_problem(answer, 415, "UNSUPPORTED_MEDIA_TYPE", f"a body declared as {declared}")
    expect(len(ctx.listed(ctx.main)) == before, "a body not declared as JSON created a todo")
    utf8 = [("Content-Type", "application/json; charset=UTF-8")]
    made = ctx.send("POST", TODOS, ctx.main, body=body, headers=utf8)
    expect(ctx.status(made) == 201, f"JSON with charset=UTF-8 answered {made.status}", made)
    # RFC 8259 (section 11): a charset parameter on application/json has no effect on a
    # recipient, and the contract does not mention charsets. A refusal (415) and a
    # create both conform.
    latin = [("Content-Type", "application/json; charset=latin-1")]
    other = ctx.send("POST", TODOS, ctx.main, body=body, headers=latin)
    if other.status != 415:
        expect(
            ctx.status(other) == 201,
            f"JSON declared with charset=latin-1 answered {other.status}: neither 415 nor a create",
            other,
        )


@check("FR-021", clauses=(op("POST", TODOS, 413), op("POST", TODOS, 415)))
def the_body_is_checked_before_the_caller(ctx: Context) -> None:
    """The order of checks: the body's size (413) and type (415) before who is calling; when
    both apply, either may come first"""
    answer = ctx.send(
        "POST", TODOS, None, body=b"x" * (64 * 1024 + 1), headers=[("Content-Type", "text/plain")]
    )
    # The contract orders "413/415" as one step: an oversized body of the wrong type may
    # be refused for either.
    expect(
        answer.status in (413, 415),
        f"an oversized text body with no caller: {answer.status}",
        answer,
    )
    expect_problem(
        answer,
        answer.status,
        {413: "PAYLOAD_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE"}[answer.status],
        "an oversized text body with no caller",
    )
    big = b'{"title": "' + b"x" * (64 * 1024) + b'"}'
    sized = ctx.send("POST", TODOS, None, body=big, headers=[("Content-Type", "application/json")])
    expect_problem(sized, 413, "PAYLOAD_TOO_LARGE", "an oversized JSON body with no caller")
    answer = ctx.send("POST", TODOS, None, body=b"{}", headers=[("Content-Type", "text/plain")])
    expect_problem(answer, 415, "UNSUPPORTED_MEDIA_TYPE", "a text body with no caller")


@check("FR-021", writes=False)
def a_wrong_method_is_405_listing_exactly_the_paths_methods(ctx: Context) -> None:
    """On every path of the contract, a method it does not declare is 405 METHOD_NOT_ALLOWED
    with Allow naming exactly the methods it does"""
    for path, item in ctx.contract.document.get("paths", {}).items():
        declared = {m.upper() for m in item if m != "parameters"}
        concrete = path.replace("{todo_id}", missing_id())
        for method in sorted({"GET", "POST", "PATCH", "DELETE", "PUT"} - declared):
            if ctx.options.read_only and method != "GET":
                continue
            answer = ctx.send(method, concrete, ctx.main)
            expect_problem(answer, 405, "METHOD_NOT_ALLOWED", f"{method} {path}")
            allow = {m.strip().upper() for m in (answer.header("allow") or "").split(",")}
            # HEAD goes with GET whether a contract lists it or not (RFC 9110 9.3.2).
            implied = {"HEAD"} if "GET" in declared else set()
            expect(
                allow - implied == declared - implied,
                f"{method} {path}: Allow is {sorted(allow)}",
                answer,
            )


@check("FR-021", clauses=(response("NotFound"),), writes=False)
def an_unknown_route_is_404(ctx: Context) -> None:
    """A path the contract does not have is 404 NOT_FOUND"""
    for path in ("/nope", "/api/v1/todos/a/b", "/api/v9/todos"):
        expect_problem(ctx.send("GET", path, ctx.main), 404, "NOT_FOUND", f"GET {path}")


def _error_answers(ctx: Context) -> list[tuple[Exchange, int, str]]:
    """An answer of every kind of refusal, with the status and code it must have."""
    big = b'{"title": "' + b"x" * (70 * 1024) + b'"}'
    return [
        (ctx.send("GET", todo_path(missing_id()), ctx.main), 404, "NOT_FOUND"),
        (ctx.send("GET", "/api/v1/no-such-route", ctx.main), 404, "NOT_FOUND"),
        (ctx.send("POST", TODOS, ctx.main, json={"title": 123}), 422, "VALIDATION_ERROR"),
        (ctx.send("PUT", TODOS, ctx.main, json={"title": "x"}), 405, "METHOD_NOT_ALLOWED"),
        (
            ctx.send(
                "POST", TODOS, ctx.main, body=big, headers=[("Content-Type", "application/json")]
            ),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            ctx.send(
                "POST",
                TODOS,
                ctx.main,
                body=b"title=x",
                headers=[("Content-Type", "application/x-www-form-urlencoded")],
            ),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            ctx.send("GET", TODOS, None, headers=[] if ctx.bearer else [("X-User-ID", "alice")]),
            401 if ctx.bearer else 400,
            "MISSING_TOKEN" if ctx.bearer else "INVALID_USER_CONTEXT",
        ),
    ]


@check("FR-021", clauses=(schema("Problem"),))
def refusals_are_distinct_in_status_and_code(ctx: Context) -> None:
    """Not found, validation, wrong method, too large, wrong type and no user are each their own
    status and code"""
    for answer, status, code in _error_answers(ctx):
        expect_problem(answer, status, code, f"{answer.method} {answer.url}")
    allow = ctx.send("PUT", TODOS, ctx.main, json={"title": "x"}).header("allow") or ""
    methods = {m.strip().upper() for m in allow.split(",") if m.strip()}
    expect({"GET", "POST"} <= methods and "PUT" not in methods, f"405's Allow is {allow!r}")


@check("FR-020", clauses=(schema("Problem"),))
def every_error_is_problem_details(ctx: Context) -> None:
    """Every error is RFC 9457 problem details with type, title, status, detail and code, and no
    internals"""
    for answer, _, _ in _error_answers(ctx):
        if answer.status < 400:
            continue  # not refused at all: the check of what it should have been says so
        what = f"{answer.method} {answer.url} ({answer.status})"
        expect(
            answer.media_type == PROBLEM,
            f"{what}: content type {answer.media_type!r}, not {PROBLEM}",
            answer,
        )
        body = problem(answer)
        expect(body is not None, f"{what}: the body is not a JSON object", answer)
        assert body is not None
        for member, kind in (
            ("type", str),
            ("title", str),
            ("status", int),
            ("detail", str),
            ("code", str),
        ):
            expect(
                isinstance(body.get(member), kind),
                f"{what}: no {member} of type {kind.__name__}",
                answer,
            )
        expect(
            body["status"] == answer.status,
            f"{what}: status member {body['status']} differs",
            answer,
        )
        errors = body.get("errors")
        if errors is not None:
            expect(
                isinstance(errors, list)
                and all(isinstance(e, dict) and {"field", "message"} <= set(e) for e in errors),
                f"{what}: errors are not [{{field, message}}]",
                answer,
            )
        text = answer.body.decode("utf-8", "replace")
        for leak in LEAKS:
            expect(leak not in text, f"{what}: the body carries {leak!r}", answer)


@check("FR-153", clauses=(op("POST", TODOS, 422),), since="1.2")
def json_nested_too_deep_is_422_saying_so(ctx: Context) -> None:
    """JSON nested thousands of levels deep is 422 naming the body, never a 500 or a hang"""
    for raw in (b"[" * 30_000 + b"]" * 30_000, b'{"title": ' + b"[" * 200 + b"]" * 200 + b"}"):
        answer = ctx.send(
            "POST", TODOS, ctx.main, body=raw, headers=[("Content-Type", "application/json")]
        )
        expect_problem(
            answer, 422, "VALIDATION_ERROR", f"a body nested {raw.count(b'[')} levels deep"
        )


@check("FR-153", since="1.2", writes=False)
def the_contract_bounds_every_input(ctx: Context) -> None:
    """The served contract bounds every input: strings (maxLength, enum, const or pattern), arrays
    (maxItems), integers (bounds and format)"""
    document = ctx.contract.document
    loose: set[str] = set()
    for path, item in document.get("paths", {}).items():
        for n, given in enumerate(item.get("parameters", [])):
            loose |= _unbounded(document, given, f"{path} parameter {n}", set())
        for method, operation in item.items():
            if isinstance(operation, dict) and method != "parameters":
                where = f"{method.upper()} {path}"
                for n, given in enumerate(operation.get("parameters", [])):
                    loose |= _unbounded(document, given, f"{where} parameter {n}", set())
                body = operation.get("requestBody")
                if body is not None:
                    loose |= _unbounded(document, body, f"{where} body", set())
    expect(not loose, "unbounded inputs in the served contract: " + "; ".join(sorted(loose)[:10]))


def _unbounded(document: dict[str, Any], node: Any, where: str, seen: set[str]) -> set[str]:
    found: set[str] = set()
    if isinstance(node, list):
        for n, item in enumerate(node):
            found |= _unbounded(document, item, f"{where}/{n}", seen)
        return found
    if not isinstance(node, dict):
        return found
    if "$ref" in node:
        ref = node["$ref"]
        if ref in seen or not ref.startswith("#/"):
            return found
        target: Any = document
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return _unbounded(document, target, f"{where} ({ref})", seen | {ref})
    kinds = node.get("type")
    kinds = set(kinds) if isinstance(kinds, list) else {kinds}
    enumerated = bool({"enum", "const"} & set(node))
    if "string" in kinds and not ({"maxLength", "pattern"} & set(node) or enumerated):
        found.add(where)
    if "array" in kinds and "maxItems" not in node:
        found.add(where)
    bounded = "minimum" in node and "maximum" in node and "format" in node
    if "integer" in kinds and not (bounded or enumerated):
        found.add(where)
    for key, value in node.items():
        if key not in {"example", "examples", "description"}:
            found |= _unbounded(document, value, f"{where}/{key}", seen)
    return found
