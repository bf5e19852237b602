"""Keyset pages (1.1)."""

import random
from typing import Any
from urllib.parse import parse_qs, urlsplit

from todo_conformance.checks import (
    TODOS,
    Broken,
    Context,
    check,
    expect,
    expect_invalid,
    op,
    parameter,
    schema,
    todo_path,
)
from todo_conformance.target import Exchange
from todo_conformance.users import User


def _page(ctx: Context, user: User, limit: int | str, cursor: str | None = None) -> Exchange:
    query = f"?limit={limit}" + ("" if cursor is None else f"&cursor={cursor}")
    return ctx.send("GET", TODOS + query, user)


def _walk(ctx: Context, user: User, limit: int, between: Any = None) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    while len(pages) < 1000:
        answer = _page(ctx, user, limit, cursor)
        body = answer.json_or_none()
        if (
            answer.status != 200
            or not isinstance(body, dict)
            or not isinstance(body.get("items"), list)
        ):
            raise Broken(f"could not read a page: GET answered {answer.status}")
        pages.append(body["items"])
        cursor = body.get("next_cursor")
        if cursor is None:
            return pages
        if between is not None:
            between()
    raise Broken("a walk through the pages did not end")


def _fresh(ctx: Context, count: int) -> tuple[User, list[str]]:
    """A user holding exactly `count` todos, all made here (newest first)."""
    user = ctx.own_user("pages")
    made = [ctx.create(user, f"page {n}")["id"] for n in range(count)]
    return user, made[::-1]


@check(
    "FR-131", clauses=(parameter("Limit"), parameter("Cursor"), op("GET", TODOS, 200)), since="1.1"
)
def a_limit_answers_pages_that_continue_after_each_other(ctx: Context) -> None:
    """?limit=N answers at most N todos newest first, count, next_cursor and Link rel=next; the
    cursor continues after the page"""
    user, newest = _fresh(ctx, 5)
    first = _page(ctx, user, 2)
    body = first.json_or_none() or {}
    expect(first.status == 200, f"a first page answered {first.status}", first)
    items = body.get("items", [])
    expect(
        body.get("count") == len(items) == 2,
        f"a page of 2 holds {len(items)}, count {body.get('count')}",
        first,
    )
    expect(
        isinstance(body.get("next_cursor"), str),
        "a page with more after it has no next_cursor",
        first,
    )
    link = first.header("link") or ""
    expect('rel="next"' in link, f'no Link rel="next" header: {link!r}', first)
    target = link.split(">")[0].lstrip("<")
    expect(
        parse_qs(urlsplit(target).query).get("cursor") == [body["next_cursor"]],
        "Link names another cursor",
        first,
    )
    pages = _walk(ctx, user, 2)
    walked = [t["id"] for page in pages for t in page]
    expect(walked == newest, f"the pages hold {walked}, not every todo once newest first {newest}")
    expect(
        [len(p) for p in pages] == [2, 2, 1],
        f"pages of sizes {[len(p) for p in pages]}, not 2, 2, 1",
    )
    whole = {t["id"] for t in ctx.listed(user)}
    expect(whole == set(newest), "without limit, the list is not the whole list")


@check("FR-132", clauses=(parameter("Cursor"),), since="1.1")
def a_walk_meets_each_todo_that_exists_throughout_exactly_once(ctx: Context) -> None:
    """Walking every page while todos are created and deleted meets each todo that existed
    throughout exactly once"""
    user, newest = _fresh(ctx, 30)
    chance = random.Random(len(newest))
    doomed = set(chance.sample(newest[5:], 8))
    fates = list(doomed)

    def meanwhile() -> None:
        ctx.create(user, "newcomer")
        if fates:
            ctx.send("DELETE", todo_path(fates.pop()), user)

    walked = [t["id"] for page in _walk(ctx, user, 4, meanwhile) for t in page]
    throughout = [t for t in newest if t not in doomed]
    expect(len(walked) == len(set(walked)), "a todo came twice in one walk")
    missed = [t for t in throughout if t not in walked]
    expect(not missed, f"the walk skipped {len(missed)} todos that existed throughout")


@check("FR-131", clauses=(parameter("Limit"), schema("TodoList")), since="1.1", writes=False)
def an_empty_list_is_one_empty_last_page(ctx: Context) -> None:
    """A user with no todos gets one page: no items, count 0, next_cursor null, no Link"""
    answer = _page(ctx, ctx.users["fresh"], 5)
    body = answer.json_or_none() or {}
    expect(answer.status == 200, f"expected 200, got {answer.status}", answer)
    expect(
        body.get("items") == [] and body.get("count") == 0 and body.get("next_cursor", 0) is None,
        f"an empty list's page is {body}",
        answer,
    )
    expect(answer.header("link") is None, "an empty list's page has a Link", answer)


@check(
    "FR-133",
    clauses=(parameter("Limit"), parameter("Cursor"), op("GET", TODOS, 422)),
    since="1.1",
    writes=False,
)
def a_bad_cursor_or_limit_is_422_naming_it(ctx: Context) -> None:
    """A limit out of range, or a cursor made up, malformed or tampered with, is 422 naming the
    field"""
    for limit in ("0", "1001", "-1", "abc", "1.5", ""):
        expect_invalid(_page(ctx, ctx.main, limit), "limit", f"limit={limit!r}")
    for cursor in ("!!!", "AQAGR8f2J3SGAAAAAAAAQACAAAAAAAAAAQ", "x" * 64):
        expect_invalid(_page(ctx, ctx.main, 2, cursor), "cursor", f"cursor={cursor!r}")
    twice = ctx.send("GET", f"{TODOS}?limit=2&limit=3", ctx.main)
    expect_invalid(twice, "limit", "limit given twice")


@check("FR-133", clauses=(parameter("Cursor"), op("GET", TODOS, 422)), since="1.1")
def a_tampered_cursor_is_refused_and_a_cursor_reaches_only_the_callers_todos(ctx: Context) -> None:
    """A cursor changed by one character is 422; another user's cursor reaches only the caller's own
    todos"""
    mine = {ctx.create(ctx.main, f"cursor {n}")["id"] for n in range(3)}
    cursor = (_page(ctx, ctx.main, 1).json_or_none() or {}).get("next_cursor")
    if not isinstance(cursor, str) or not cursor:
        raise Broken("a first page of 1 out of 3 gave no next_cursor")
    flipped = cursor[:-1] + ("A" if cursor[-1] != "A" else "B")
    expect_invalid(
        _page(ctx, ctx.main, 1, flipped), "cursor", "a cursor changed in its last character"
    )
    ctx.create(ctx.alt, "alt's own")
    theirs = _page(ctx, ctx.alt, 100, cursor)
    body = theirs.json_or_none() or {}
    seen = {t.get("id") for t in body.get("items", [])} if theirs.status == 200 else set()
    expect(not seen & mine, "another user's cursor reached the cursor owner's todos", theirs)
