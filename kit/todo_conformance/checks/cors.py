"""CORS for a browser frontend (1.1), when the run names a listed origin (--origin)."""

from todo_conformance.checks import (
    TODOS,
    Context,
    check,
    expect,
    header,
    missing_id,
    todo_path,
)

REQUEST_HEADERS = (
    "authorization",
    "x-user-id",
    "content-type",
    "if-match",
    "if-none-match",
    "idempotency-key",
)
EXPOSED = ("location", "etag", "link", "retry-after", "idempotent-replayed", "x-request-id")
UNLISTED = "https://not-listed.todo-conformance.invalid"


def _split(value: str | None) -> set[str]:
    return {part.strip().lower() for part in (value or "").split(",") if part.strip()}


@check(
    "FR-106",
    clauses=(header("Access-Control-Allow-Origin"),),
    since="1.1",
    writes=False,
    needs="origin",
)
def a_listed_origins_preflight_succeeds_for_every_method_and_header(ctx: Context) -> None:
    """A preflight from the listed origin succeeds for the contract's methods and request headers,
    with no credentials"""
    origin = ctx.options.origin or ""
    for method, path in (
        ("GET", TODOS),
        ("POST", TODOS),
        ("PATCH", todo_path(missing_id())),
        ("DELETE", todo_path(missing_id())),
    ):
        answer = ctx.send(
            "OPTIONS",
            path,
            None,
            headers=[
                ("Origin", origin),
                ("Access-Control-Request-Method", method),
                ("Access-Control-Request-Headers", ", ".join(REQUEST_HEADERS)),
            ],
        )
        what = f"a preflight for {method} {path}"
        expect(200 <= answer.status < 300, f"{what}: {answer.status}", answer)
        expect(
            answer.header("access-control-allow-origin") == origin,
            f"{what}: Allow-Origin is not the origin",
            answer,
        )
        expect(
            method.lower() in _split(answer.header("access-control-allow-methods")),
            f"{what}: the method is not allowed",
            answer,
        )
        allowed = _split(answer.header("access-control-allow-headers"))
        expect(
            allowed == {"*"} or set(REQUEST_HEADERS) <= allowed,
            f"{what}: request headers allowed: {sorted(allowed)}",
            answer,
        )
        expect(
            answer.header("access-control-allow-credentials") is None,
            f"{what}: credentials are allowed",
            answer,
        )


@check(
    "FR-106",
    clauses=(header("Access-Control-Allow-Origin"),),
    since="1.1",
    writes=False,
    needs="origin",
)
def answers_to_the_listed_origin_expose_the_contracts_headers(ctx: Context) -> None:
    """An answer to the listed origin allows it and exposes Location, ETag, Link, Retry-After,
    Idempotent-Replayed and X-Request-ID"""
    origin = ctx.options.origin or ""
    answer = ctx.send("GET", TODOS, ctx.main, headers=[("Origin", origin)])
    expect(
        answer.header("access-control-allow-origin") == origin,
        "Allow-Origin is not the origin",
        answer,
    )
    exposed = _split(answer.header("access-control-expose-headers"))
    expect(set(EXPOSED) <= exposed, f"exposed headers: {sorted(exposed)}", answer)
    expect(
        answer.header("access-control-allow-credentials") is None, "credentials are allowed", answer
    )


@check(
    "FR-106",
    clauses=(header("Access-Control-Allow-Origin"),),
    since="1.1",
    writes=False,
    needs="origin",
)
def an_unlisted_origin_gets_no_cors_header(ctx: Context) -> None:
    """An unlisted origin gets no CORS header at all, on a preflight or an answer; nor does
    a request naming its origin twice"""
    preflight = ctx.send(
        "OPTIONS",
        TODOS,
        None,
        headers=[("Origin", UNLISTED), ("Access-Control-Request-Method", "GET")],
    )
    answer = ctx.send("GET", TODOS, ctx.main, headers=[("Origin", UNLISTED)])
    origin = ctx.options.origin or ""
    twice = ctx.send("GET", TODOS, ctx.main, headers=[("Origin", origin), ("Origin", origin)])
    for exchange in (preflight, answer, twice):
        cors = [h for h in exchange.headers if h.lower().startswith("access-control-")]
        expect(not cors, f"an unlisted origin got {cors}", exchange)
