"""Users kept apart, seen from outside: another user's todo answers exactly as a missing
one does (FR-014), and nothing another user does reads or changes it (FR-013, SC-005).
An answer that differs from a missing id's without giving anything away (a 403) breaks
the first and not the second; a leak or a change breaks the second."""

import json
import re
from collections.abc import Callable, Collection
from typing import Any

from todo_conformance.checks import (
    ONE,
    TODOS,
    Context,
    check,
    expect,
    missing_id,
    op,
    parameter,
    problem,
    scheme,
    todo_path,
)
from todo_conformance.target import Exchange
from todo_conformance.users import User

Call = Callable[[Context, User, str], Exchange]

OPERATIONS: dict[str, Call] = {
    "GET": lambda ctx, user, path: ctx.send("GET", path, user),
    "DELETE": lambda ctx, user, path: ctx.send("DELETE", path, user),
    "PATCH title": lambda ctx, user, path: ctx.send(
        "PATCH", path, user, json={"title": ctx.title("taken")}
    ),
    "PATCH description": lambda ctx, user, path: ctx.send(
        "PATCH", path, user, json={"description": None}
    ),
    "PATCH is_completed": lambda ctx, user, path: ctx.send(
        "PATCH", path, user, json={"is_completed": True}
    ),
    "PATCH all": lambda ctx, user, path: ctx.send(
        "PATCH",
        path,
        user,
        json={"title": ctx.title("x"), "description": "y", "is_completed": True},
    ),
}
# Since 1.1: with a condition naming the victim's ETag ("404, never 412").
CONDITIONAL: dict[str, Call] = {
    "PATCH If-Match": lambda ctx, user, path: ctx.send(
        "PATCH",
        path,
        user,
        headers=[("If-Match", ctx.notes["victim_etag"])],
        json={"title": ctx.title("x")},
    ),
    "DELETE If-Match": lambda ctx, user, path: ctx.send(
        "DELETE", path, user, headers=[("If-Match", ctx.notes["victim_etag"])]
    ),
    "GET If-None-Match": lambda ctx, user, path: ctx.send(
        "GET", path, user, headers=[("If-None-Match", ctx.notes["victim_etag"])]
    ),
}
HEAD: dict[str, Call] = {"HEAD": lambda ctx, user, path: ctx.send("HEAD", path, user)}

SPELLINGS: dict[str, Callable[[str], str]] = {
    "as returned": lambda todo_id: todo_id,
    "upper case": lambda todo_id: todo_id.upper(),
    "mixed case": lambda todo_id: todo_id[:18].upper() + todo_id[18:],
}
# Members of a problem that may differ from request to request.
_PER_REQUEST = ("instance", "request_id", "trace_id", "timestamp")


def _operations(ctx: Context) -> dict[str, Call]:
    operations = dict(OPERATIONS)
    if ctx.contract.at_least("1.1") and "victim_etag" in ctx.notes:
        operations |= CONDITIONAL
    if ctx.contract.declares("head", "/api/v1/todos/{todo_id}"):
        operations |= HEAD
    return operations


def _comparable(
    answer: Exchange, asked: str, varying: Collection[str] = ()
) -> tuple[int, str, Any]:
    """Status, media type and body, apart from what belongs to this request alone: its
    id however spelled, the request id, and the members of a problem (`varying`) that
    differ between two answers to the same question (a trace id, a time, an instance)."""
    text = answer.body.decode("utf-8", "replace")
    text = re.sub(re.escape(asked), "<id>", text, flags=re.IGNORECASE)
    request_id = answer.header("x-request-id")
    if request_id:
        text = text.replace(request_id, "<request>")
    if problem(answer) is not None:
        parsed = json.loads(text)
        for member in (*_PER_REQUEST, *varying):
            parsed.pop(member, None)
        return answer.status, answer.media_type, parsed
    return answer.status, answer.media_type, text


def _varying(first: Exchange, second: Exchange, asked: tuple[str, str]) -> set[str]:
    """The members of two problems answered to the same question (two missing ids) that
    are not the same: they belong to each request, whatever the house style names them."""
    one, other = _comparable(first, asked[0])[2], _comparable(second, asked[1])[2]
    if not isinstance(one, dict) or not isinstance(other, dict):
        return set()
    return {k for k in one.keys() | other.keys() if one.get(k) != other.get(k)}


def _victim(ctx: Context) -> dict[str, Any]:
    victim = ctx.create(ctx.main, "secret", description="main's only")
    etag = ctx.read(ctx.main, victim["id"]).header("etag")
    if etag:
        ctx.notes["victim_etag"] = etag
    return victim


@check("FR-014", clauses=(op("GET", ONE, 404), op("PATCH", ONE, 404), op("DELETE", ONE, 404)))
def another_users_todo_answers_exactly_as_a_missing_one(ctx: Context) -> None:
    """Every operation on another user's todo, its id spelled any way, answers what the same
    operation on a missing id answers: 404, same body"""
    for name, call in _operations(ctx).items():
        victim = _victim(ctx)
        for spelling, spell in SPELLINGS.items():
            foreign_id, missing, another = (
                spell(victim["id"]),
                spell(missing_id()),
                spell(missing_id()),
            )
            foreign = call(ctx, ctx.alt, todo_path(foreign_id))
            absent = call(ctx, ctx.alt, todo_path(missing))
            varying = _varying(absent, call(ctx, ctx.alt, todo_path(another)), (missing, another))
            what = f"{name} on another user's todo ({spelling})"
            expect(foreign.status == 404, f"{what}: {foreign.status}, not 404", foreign)
            expect(
                _comparable(foreign, foreign_id, varying) == _comparable(absent, missing, varying),
                f"{what} answers otherwise than on a missing id",
                foreign,
                absent,
            )


@check(
    "FR-013", "SC-005", clauses=(op("GET", ONE, 404), op("PATCH", ONE, 404), op("DELETE", ONE, 404))
)
def nothing_another_user_does_reads_or_changes_a_todo(ctx: Context) -> None:
    """Every operation on another user's todo leaves it unchanged and gives nothing of it away"""
    for name, call in _operations(ctx).items():
        victim = _victim(ctx)
        for spell in SPELLINGS.values():
            answer = call(ctx, ctx.alt, todo_path(spell(victim["id"])))
            text = answer.body.decode("utf-8", "replace")
            expect(
                answer.status >= 400 and victim["title"] not in text and "main's only" not in text,
                f"{name} on another user's todo answered {answer.status} with its content",
                answer,
            )
        after = ctx.read(ctx.main, victim["id"])
        expect(after.json_or_none() == victim, f"{name} by another user changed the todo", after)


@check("FR-013", "SC-005", clauses=(op("GET", TODOS, 200),))
def no_list_shows_another_users_todos(ctx: Context) -> None:
    """Neither the whole list nor any page ever holds another user's todo"""
    mine = {ctx.create(ctx.main, f"main {n}")["id"] for n in range(3)}
    theirs = {ctx.create(ctx.alt, f"alt {n}")["id"] for n in range(2)}
    main_ids = {t["id"] for t in ctx.listed(ctx.main)}
    alt_ids = {t["id"] for t in ctx.listed(ctx.alt)}
    expect(not main_ids & theirs and not alt_ids & mine, "a list holds another user's todo")
    expect(mine <= main_ids and theirs <= alt_ids, "a list lacks the caller's own todo")
    if ctx.contract.at_least("1.1"):
        paged = {t["id"] for t in ctx.listed(ctx.alt, "?limit=1000")}
        expect(not paged & mine, "a page holds another user's todo")


@check("FR-101", clauses=(scheme("bearerAuth"), parameter("UserId")), modes=("bearer",))
def x_user_id_never_selects_a_user_with_a_token(ctx: Context) -> None:
    """bearer mode: an X-User-ID naming another user changes nothing: the token's user is the
    caller"""
    victim = ctx.create(ctx.main, "not yours")
    other = [("X-User-ID", ctx.main.expected_id or victim["user_id"])]
    read = ctx.send("GET", todo_path(victim["id"]), ctx.alt, headers=other)
    expect(
        read.status == 404,
        f"GET as the token's user naming another in X-User-ID: {read.status}",
        read,
    )
    listed = ctx.send("GET", TODOS, ctx.alt, headers=other)
    ids = {t.get("id") for t in (listed.json_or_none() or {}).get("items", [])}
    expect(victim["id"] not in ids, "X-User-ID chose whose list was read", listed)
    made = ctx.send("POST", TODOS, ctx.alt, headers=other, json={"title": ctx.title("whose")})
    owner = (made.json_or_none() or {}).get("user_id")
    expect(
        ctx.status(made) == 201 and owner != victim["user_id"],
        "X-User-ID chose who owns a new todo",
        made,
    )
    expect(
        ctx.read(ctx.main, victim["id"]).json_or_none() == victim, "the named user's todo changed"
    )
