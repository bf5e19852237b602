"""Bounded consumption and observability (1.2): the quota a run declares (--quota), the
rate limit the target announces (RateLimit-Policy), and the metrics listener a run
names (--metrics-url)."""

import re
import time
import uuid
from dataclasses import dataclass

from todo_conformance.checks import (
    TODOS,
    Broken,
    Context,
    Inapplicable,
    check,
    expect,
    expect_problem,
    header,
    op,
    todo_path,
)
from todo_conformance.target import Exchange
from todo_conformance.users import User

# draft-ietf-httpapi-ratelimit-headers: a list of one item, a string with parameters.
_POLICY = re.compile(r'^"(?P<name>[^"]+)";q=(?P<q>\d+);w=(?P<w>\d+)$')
_LIMIT = re.compile(r'^"(?P<name>[^"]+)";r=(?P<r>\d+);t=(?P<t>\d+)$')
MOST_TO_SPEND = 5000


@dataclass(frozen=True)
class Limit:
    name: str
    quota: int
    window: int
    remaining: int
    reset: int


def _limit(answer: Exchange) -> Limit | None:
    policy = _POLICY.match(answer.header("ratelimit-policy") or "")
    limit = _LIMIT.match(answer.header("ratelimit") or "")
    if policy is None or limit is None or policy["name"] != limit["name"]:
        return None
    return Limit(
        policy["name"], int(policy["q"]), int(policy["w"]), int(limit["r"]), int(limit["t"])
    )


def _announced(ctx: Context) -> Limit:
    answer = ctx.send("GET", TODOS, ctx.main)
    if answer.header("ratelimit-policy") is None and answer.header("ratelimit") is None:
        raise Inapplicable("the target announces no rate limit (no RateLimit-Policy)")
    found = _limit(answer)
    expect(
        found is not None,
        f"RateLimit-Policy {answer.header('ratelimit-policy')!r} and RateLimit"
        f" {answer.header('ratelimit')!r} are not the draft's fields for one policy",
        answer,
    )
    assert found is not None
    return found


@check("FR-152", clauses=(header("RateLimit"), header("RateLimit-Policy")), since="1.2")
def every_answer_to_an_identified_caller_carries_the_limit(ctx: Context) -> None:
    """Every answer to an identified caller carries RateLimit-Policy and RateLimit; a refusal before
    identity carries neither"""
    first = _announced(ctx)
    expect(first.remaining < first.quota, f"r={first.remaining} is not below q={first.quota}")
    todo = ctx.create(ctx.main, "limited")
    for answer in (
        ctx.send("GET", todo_path(todo["id"]), ctx.main),
        ctx.send("GET", todo_path(str(uuid.uuid4())), ctx.main),
        ctx.send("PATCH", todo_path(todo["id"]), ctx.main, json={"title": ""}),
        ctx.send("POST", TODOS, ctx.main, json={"title": ctx.title("limited")}),
    ):
        found = _limit(answer)
        expect(
            found is not None and found.name == first.name,
            f"{answer.method} {answer.status} lacks the limit",
            answer,
        )
    anonymous = ctx.send(
        "GET", TODOS, None, headers=[] if ctx.bearer else [("X-User-ID", "nobody")]
    )
    expect(
        anonymous.header("ratelimit") is None,
        "a refusal before identity carries RateLimit",
        anonymous,
    )


def _spender(ctx: Context) -> User:
    if ctx.bearer:
        return ctx.users["fresh"]
    return User("spender", user_header=str(uuid.uuid4()))


@check("FR-152", clauses=(op("GET", TODOS, 429),), since="1.2", writes=False)
def over_the_limit_is_429_with_retry_after_and_others_are_served(ctx: Context) -> None:
    """A caller over the limit gets 429 RATE_LIMITED with Retry-After; another caller is served;
    after Retry-After, so is the first"""
    first = _announced(ctx)
    spender = _spender(ctx)
    start = ctx.send("GET", TODOS, spender, patient=False)
    left = _limit(start)
    if left is None:
        raise Broken("the spending user's first answer carries no limit")
    if left.remaining > MOST_TO_SPEND:
        raise Inapplicable(f"a quota of {left.remaining} is too large to spend in a run")
    refused = start
    for _ in range(left.remaining + 50):
        refused = ctx.send("GET", TODOS, spender, patient=False)
        if refused.status == 429:
            break
    expect_problem(refused, 429, "RATE_LIMITED", f"GET after spending a quota of {first.quota}")
    wait = refused.header("retry-after") or ""
    expect(wait.isdigit() and int(wait) >= 1, f"Retry-After is {wait!r}", refused)
    spent = _limit(refused)
    expect(spent is not None and spent.remaining == 0, "the 429 does not say r=0", refused)
    other = ctx.send("GET", TODOS, ctx.main, patient=False)
    expect(other.status == 200, f"another caller was refused ({other.status})", other)
    time.sleep(int(wait) + 0.2)
    again = ctx.send("GET", TODOS, spender, patient=False)
    expect(again.status == 200, f"after Retry-After the caller got {again.status}", again)


@check("FR-151", clauses=(op("POST", TODOS, 409),), since="1.2", needs="quota")
def a_create_over_the_quota_is_409_and_exactly_one_fits(ctx: Context) -> None:
    """At one below the quota, of ten concurrent creates exactly one succeeds; the rest are 409
    QUOTA_EXCEEDED with the limit; deleting one makes room"""
    quota = ctx.options.quota or 0
    if not 2 <= quota <= MOST_TO_SPEND:
        raise Inapplicable(f"a quota of {quota} leaves no race to run, or is too large to fill")
    user = ctx.own_user("quota")
    key = str(uuid.uuid4())
    keyed = ctx.send(
        "POST", TODOS, user, headers=[("Idempotency-Key", key)], json={"title": ctx.title("kept")}
    )
    if ctx.status(keyed) != 201:
        raise Broken(f"could not create a todo below the quota: POST answered {keyed.status}")
    while len(ctx.listed(user)) < quota - 1:
        ctx.create(user, "filling")
    answers = ctx.parallel(
        lambda n: ctx.send("POST", TODOS, user, json={"title": ctx.title(f"race {n}")}), 10
    )
    statuses = sorted(ctx.status(a) for a in answers)
    expect(
        statuses == [201] + [409] * 9, f"expected one 201 and nine 409s, got {statuses}", *answers
    )
    refused = next(a for a in answers if a.status == 409)
    body = expect_problem(refused, 409, "QUOTA_EXCEEDED", "a create over the quota")
    expect(
        body.get("limit") == quota,
        f"the problem's limit is {body.get('limit')!r}, not {quota}",
        refused,
    )
    expect(len(ctx.listed(user)) == quota, "the count is not exactly the quota")
    replayed = ctx.send(
        "POST", TODOS, user, headers=[("Idempotency-Key", key)], json={"title": ctx.title("kept")}
    )
    expect(
        ctx.status(replayed) == 201, f"a replay at the quota answered {replayed.status}", replayed
    )
    ctx.send("DELETE", todo_path(ctx.listed(user)[0]["id"]), user)
    room = ctx.send("POST", TODOS, user, json={"title": ctx.title("room")})
    expect(ctx.status(room) == 201, f"after a delete, a create answered {room.status}", room)


@check("FR-161", since="1.2", writes=False, needs="metrics")
def metrics_have_the_conventions_names_and_no_user_in_a_label(ctx: Context) -> None:
    """The metrics listener serves Prometheus text with http_server_request_duration_seconds by
    route template; no id, path or token is a label; the API port serves none"""
    on_api = ctx.send("GET", "/metrics", None)
    expect(on_api.status == 404, f"the API's port answered /metrics with {on_api.status}", on_api)
    answer = ctx.target.request("GET", ctx.options.metrics_url or "")
    expect(answer.status == 200, f"the metrics listener answered {answer.status}", answer)
    text = answer.body.decode("utf-8", "replace")
    expect(
        "http_server_request_duration_seconds_bucket" in text,
        "no http_server_request_duration_seconds histogram",
        answer,
    )
    routes = set(re.findall(r'http_route="([^"]*)"', text))
    expect(
        "/api/v1/todos/{todo_id}" in routes or "/api/v1/todos" in routes,
        f"routes labelled: {sorted(routes)[:10]}",
        answer,
    )
    secrets = [u.user_header or u.token or "" for u in ctx.users.values()]
    made = [line for line in text.splitlines() if not line.startswith("#")]
    for line in made:
        labels = line.split("{", 1)[1].rsplit("}", 1)[0] if "{" in line else ""
        expect(
            not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", labels, re.IGNORECASE),
            f"an id in a label: {line[:200]}",
            answer,
        )
        expect(
            not any(s and s in labels for s in secrets), f"a user in a label: {line[:200]}", answer
        )
