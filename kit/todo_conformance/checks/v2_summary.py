"""The summary of 2.1 at /api/v2/todos/summary (FR-214): the caller's counts, overdue on
both sides of the request's moment, every priority present, the open todos' tags, and
the list's ETag with its 304; another user's todos are never counted. On a contract
that declares no summary the runner answers not-applicable."""

from datetime import UTC, datetime, timedelta
from typing import Any

from todo_conformance.checks import Context, check, expect, header, op, schema
from todo_conformance.checks.v2_todo import V2, create_v2, v2_path
from todo_conformance.target import Exchange
from todo_conformance.users import User

SUMMARY = "/api/v2/todos/summary"
SINCE = "2.1"


def _summary(ctx: Context, user: User, what: str) -> tuple[dict[str, Any], Exchange]:
    answer = ctx.send("GET", SUMMARY, user)
    body = answer.json_or_none()
    expect(
        answer.status == 200 and isinstance(body, dict),
        f"{what}: GET {SUMMARY} answered {answer.status}",
        answer,
    )
    return dict(body), answer


def _complete(ctx: Context, user: User, todo: dict[str, Any]) -> None:
    done = ctx.send("PATCH", v2_path(todo["id"]), user, json={"is_completed": True})
    expect(done.status == 200, f"completing a todo answered {done.status}", done)


@check(
    "FR-214",
    clauses=(op("GET", SUMMARY, 200), schema("TodoSummary")),
    since=SINCE,
)
def the_summary_counts_the_callers_todos_and_no_one_elses(ctx: Context) -> None:
    """The summary counts the caller's todos: total, open, completed, overdue (open, due
    before the request's moment), the open ones by each of the four priorities and by
    tag; another user's todos are never counted"""
    user = ctx.own_user("v2 summary")
    now = datetime.now(UTC)
    past = (now - timedelta(days=1)).isoformat()
    future = (now + timedelta(days=1)).isoformat()
    empty, answer = _summary(ctx, user, "a user with no todos")
    zero = {"total": 0, "open": 0, "completed": 0, "overdue": 0,
            "by_priority": {"none": 0, "low": 0, "medium": 0, "high": 0}, "by_tag": {}}  # fmt: skip
    expect(empty == zero, f"a user with no todos is summarized as {empty}", answer)
    # Counted: two open todos due on either side of now, one open with no due time, and
    # one completed long overdue (so not overdue), whose tags no longer count.
    create_v2(ctx, user, "overdue", priority="high", due_at=past, tags=["work"])
    create_v2(ctx, user, "due tomorrow", priority="low", due_at=future, tags=["work", "home"])
    create_v2(ctx, user, "whenever")
    _complete(ctx, user, create_v2(ctx, user, "done", priority="high", due_at=past, tags=["x"]))
    # Never counted: another user's open, overdue, tagged todo.
    create_v2(ctx, ctx.main, "not theirs", priority="medium", due_at=past, tags=["work"])
    counted, answer = _summary(ctx, user, "four todos, one completed")
    expected = {
        "total": 4,
        "open": 3,
        "completed": 1,
        "overdue": 1,
        "by_priority": {"none": 1, "low": 1, "medium": 0, "high": 1},
        "by_tag": {"work": 2, "home": 1},
    }
    wrong = {k: counted.get(k) for k, v in expected.items() if counted.get(k) != v}
    expect(not wrong, f"the summary counts {wrong}, where the todos make {expected}", answer)


@check(
    "FR-214",
    "FR-112",
    clauses=(op("GET", SUMMARY, 304), op("HEAD", SUMMARY, 200), header("ETag")),
    since=SINCE,
)
def the_summary_carries_the_lists_etag_and_answers_304(ctx: Context) -> None:
    """The summary (GET and HEAD) carries the list's ETag, answers 304 to it with no
    body, and another one once any of the caller's todos changes"""
    user = ctx.own_user("v2 summary etag")
    todo = create_v2(ctx, user, "counted")
    _, answer = _summary(ctx, user, "one todo")
    etag = answer.header("etag")
    expect(etag is not None and not etag.startswith("W/"), f"the summary's ETag {etag!r}", answer)
    listed = ctx.send("GET", V2, user)
    expect(
        listed.header("etag") == etag,
        f"the summary's ETag {etag!r} is not the list's, {listed.header('etag')!r}",
        listed,
    )
    cached = ctx.send("GET", SUMMARY, user, headers=[("If-None-Match", str(etag))])
    expect(
        cached.status == 304 and cached.body == b"" and cached.header("etag") == etag,
        f"the summary with its own ETag answered {cached.status}",
        cached,
    )
    headed = ctx.send("HEAD", SUMMARY, user)
    expect(
        headed.status == 200 and headed.body == b"" and headed.header("etag") == etag,
        f"HEAD {SUMMARY} answered {headed.status} with ETag {headed.header('etag')!r}",
        headed,
    )
    _complete(ctx, user, todo)
    again = ctx.send("GET", SUMMARY, user, headers=[("If-None-Match", str(etag))])
    expect(
        again.status == 200 and again.header("etag") not in (None, etag),
        f"after a write the summary with the old ETag answered {again.status}",
        again,
    )
