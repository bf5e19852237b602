"""Lists of 2.0 at /api/v2/todos (FR-201 to FR-204): each filter alone and combined,
search with case folding and LIKE's characters, every sort with its ties and missing
due times, pages under every sort and filter, cursors bound to their query, the list's
ETag under any of them, and no parameter ever reaching another user's todos.

Most checks read one user's six todos (`_six`), made so that every filter tells them
apart and every sort meets a tie: A and D have the same priority, due time and folded
title; B and E have no due time; E and F share the lowest priority."""

import uuid
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from todo_conformance.checks import (
    Broken,
    Context,
    check,
    expect,
    expect_invalid,
    header,
    op,
    parameter,
    schema,
)
from todo_conformance.checks.v2_todo import SINCE, V2, create_v2, instant, v2_path
from todo_conformance.target import Exchange
from todo_conformance.users import User

Query = list[tuple[str, str]]
Todos = dict[str, dict[str, Any]]

SORTS = (
    "-created_at",
    "created_at",
    "due_at",
    "-due_at",
    "priority",
    "-priority",
    "title",
    "-title",
)
RANK = {"none": 0, "low": 1, "medium": 2, "high": 3}
# The six todos, made in this order (so created_at rises from A to F).
SIX: dict[str, dict[str, Any]] = {
    "A": {"title": "Alpha apple", "priority": "high", "due_at": "2031-01-01T10:00:00Z",
          "tags": ["work", "urgent"]},
    "B": {"title": "beta banana", "description": "saved in C:\\temp", "priority": "low",
          "tags": ["home"], "done": True},
    "C": {"title": "Gamma", "description": "100% juice_box", "priority": "medium",
          "due_at": "2031-01-03T10:00:00+00:00", "tags": ["work"]},
    "D": {"title": "ALPHA APPLE", "priority": "high", "due_at": "2031-01-01T11:00:00+01:00",
          "tags": ["Work"]},
    "E": {"title": "Éclair Straße"},
    "F": {"title": "delta", "due_at": "2031-01-05T00:00:00+02:00", "tags": ["work", "home"],
          "done": True},
}  # fmt: skip
# Each filter alone, then combined, and the todos of the six it lists.
FILTERS: tuple[tuple[Query, str], ...] = (
    ([("completed", "true")], "BF"),
    ([("completed", "false")], "ACDE"),
    ([("priority", "high")], "AD"),
    ([("priority", "none")], "EF"),
    ([("priority", "low"), ("priority", "medium")], "BC"),
    ([("tag", "work")], "ACF"),
    ([("tag", "Work")], "D"),
    ([("tag", "work"), ("tag", "home")], "F"),
    ([("tag", "urgent"), ("tag", "home")], ""),
    ([("due_after", "2031-01-01T10:00:00Z")], "CF"),
    ([("due_before", "2031-01-03T10:00:00Z")], "AD"),
    ([("due_after", "2031-01-04T23:00:00+02:00")], "F"),
    ([("due_before", "2100-01-01T00:00:00Z")], "ACDF"),
    ([("q", "alpha")], "AD"),
    ([("q", "apple ALPHA")], "AD"),
    ([("q", "ÉCLAIR")], "E"),
    ([("q", "STRASSE")], "E"),
    ([("q", "straße")], "E"),
    ([("q", "juice gamma")], "C"),
    ([("q", "alpha gamma")], ""),
    ([("q", "%")], "C"),
    ([("q", "100%")], "C"),
    ([("q", "_")], "C"),
    ([("q", "\\")], "B"),
    ([("completed", "false"), ("priority", "high"), ("tag", "work")], "A"),
    ([("completed", "false"), ("due_before", "2031-01-04T00:00:00Z"), ("q", "apple")], "AD"),
    ([("completed", "true"), ("priority", "none"), ("tag", "home"),
      ("due_after", "2031-01-01T00:00:00Z")], "F"),
    ([("q", "alpha"), ("tag", "Work")], "D"),
    ([("priority", "high"), ("priority", "low"), ("completed", "true")], "B"),
)  # fmt: skip
# Out of its domain, or a single-valued parameter given twice: 422 naming it.
REFUSED: tuple[tuple[Query, str], ...] = (
    ([("completed", "yes")], "completed"),
    ([("completed", "")], "completed"),
    ([("completed", "true"), ("completed", "false")], "completed"),
    ([("priority", "urgent")], "priority"),
    ([("priority", "HIGH")], "priority"),
    ([("priority", "")], "priority"),
    ([("tag", "")], "tag"),
    ([("tag", " work")], "tag"),
    ([("tag", "x" * 33)], "tag"),
    ([("tag", "a\u0001b")], "tag"),
    ([("due_after", "soon")], "due_after"),
    ([("due_after", "2031-01-01T10:00:00")], "due_after"),
    ([("due_after", "2031-01-01T10:00:00Z"), ("due_after", "2031-01-02T10:00:00Z")], "due_after"),
    ([("due_before", "2031-13-01T00:00:00Z")], "due_before"),
    ([("due_before", "2031-01-01T10:00:00Z"), ("due_before", "2031-01-01T10:00:00Z")],
     "due_before"),
    ([("q", "")], "q"),
    ([("q", "x" * 101)], "q"),
    ([("q", "a\u0000b")], "q"),
    ([("q", "a"), ("q", "b")], "q"),
    ([("sort", "bogus")], "sort"),
    ([("sort", "Title")], "sort"),
    ([("sort", "title"), ("sort", "title")], "sort"),
    ([("limit", "0")], "limit"),
    ([("limit", "1001")], "limit"),
    ([("limit", "5"), ("limit", "5")], "limit"),
)  # fmt: skip


def url(query: Query) -> str:
    return V2 + ("?" + urlencode(query) if query else "")


def _page(ctx: Context, user: User, query: Query, what: str) -> tuple[dict[str, Any], Exchange]:
    """A page the check asked for with a valid query: 200 with items, or a failure."""
    answer = ctx.send("GET", url(query), user)
    body = answer.json_or_none()
    expect(
        answer.status == 200 and isinstance(body, dict) and isinstance(body.get("items"), list),
        f"{what}: expected 200 with a page, got {answer.status}",
        answer,
    )
    return body, answer


def _six(ctx: Context, role: str) -> tuple[User, Todos]:
    """A user holding exactly the six todos of SIX, as they are now."""
    user = ctx.own_user(role)
    todos: Todos = {}
    for letter, spec in SIX.items():
        fields = {k: v for k, v in spec.items() if k not in ("title", "done")}
        todo = create_v2(ctx, user, spec["title"], **fields)
        if spec.get("done"):
            done = ctx.send("PATCH", v2_path(todo["id"]), user, json={"is_completed": True})
            todo = done.json_or_none()
            if done.status != 200 or not isinstance(todo, dict):
                raise Broken(f"could not complete a todo under {V2}: PATCH answered {done.status}")
        todos[letter] = todo
    return user, todos


def _letters(todos: Todos, items: list[Any]) -> str:
    """The page's todos as letters of the six, in its order (`?` for a todo not of them)."""
    by_id = {t["id"]: letter for letter, t in todos.items()}
    return "".join(by_id.get(t.get("id"), "?") if isinstance(t, dict) else "?" for t in items)


def ordered(todos: list[dict[str, Any]], sort: str) -> list[str]:
    """The ids of `todos` in the order FR-202 gives `sort`: by its key, ties by created_at
    then id, all in the sort's direction; due_at puts todos without one last either way."""
    descending, key = sort.startswith("-"), sort.lstrip("-")

    def tie(todo: dict[str, Any]) -> tuple[Any, ...]:
        return instant(todo["created_at"]), uuid.UUID(todo["id"])

    keys: dict[str, Callable[[dict[str, Any]], tuple[Any, ...]]] = {
        "created_at": lambda t: (),
        "due_at": lambda t: (instant(t["due_at"]),),
        "priority": lambda t: (RANK[t["priority"]],),
        "title": lambda t: (t["title"].casefold(),),
    }
    dated = [t for t in todos if key != "due_at" or t["due_at"] is not None]
    undated = [t for t in todos if key == "due_at" and t["due_at"] is None]
    first = sorted(dated, key=lambda t: (*keys[key](t), *tie(t)), reverse=descending)
    last = sorted(undated, key=tie, reverse=descending)
    return [t["id"] for t in first + last]


def walk(
    ctx: Context,
    user: User,
    query: Query,
    limit: int,
    between: Callable[[], None] | None = None,
    each: Callable[[list[Any], Exchange], None] | None = None,
) -> list[dict[str, Any]]:
    """Every page of `query`, `limit` at a time, following next_cursor (and checking that
    Link names it); `between` runs after each page but the last, `each` is given every
    page's items as it comes (so that a page can fail the check before the walk ends)."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(200):
        asked = [*query, ("limit", str(limit)), *([("cursor", cursor)] if cursor else [])]
        body, answer = _page(ctx, user, asked, f"a page of {url(query)}")
        if each is not None:
            each(body["items"], answer)
        items += body["items"]
        cursor = body.get("next_cursor")
        if cursor is None:
            expect(answer.header("link") is None, "the last page has a Link", answer)
            return items
        link = answer.header("link") or ""
        expect('rel="next"' in link, 'a page with more after it has no Link rel="next"', answer)
        target = parse_qs(urlsplit(link.split(">")[0].lstrip("<")).query)
        expect(target.get("cursor") == [cursor], "Link names another cursor", answer)
        if between is not None:
            between()
    raise Broken("a walk through the pages did not end")


@check(
    "FR-201",
    clauses=(
        parameter("Completed"),
        parameter("PriorityFilter"),
        parameter("TagFilter"),
        parameter("DueAfter"),
        parameter("DueBefore"),
        parameter("Search"),
        op("GET", V2, 200),
    ),
    since=SINCE,
)
def each_filter_alone_and_combined_lists_exactly_the_todos_that_meet_it(ctx: Context) -> None:
    """completed, priority (any of), tag (all of, exactly), due_after and due_before (strictly,
    never a todo without one) and q (every word, case-folded, %, _ and \\ ordinary), alone and
    combined, list exactly the todos meeting every one"""
    user, todos = _six(ctx, "v2 filters")
    for query, expected in FILTERS:
        body, answer = _page(ctx, user, query, url(query))
        got = _letters(todos, body["items"])
        expect(
            sorted(got) == sorted(expected),
            f"{url(query)} lists {got or 'nothing'} of the six, not {expected or 'nothing'}",
            answer,
        )
    unknown = [("colour", "red"), ("completed", "false")]
    body, answer = _page(ctx, user, unknown, "a parameter the contract does not know")
    got = _letters(todos, body["items"])
    expect(sorted(got) == list("ACDE"), f"{url(unknown)} lists {got}", answer)


def _refused(ctx: Context, refused: tuple[tuple[Query, str], ...]) -> None:
    for query, name in refused:
        expect_invalid(ctx.send("GET", url(query), ctx.main), name, url(query))


@check(
    "FR-201",
    clauses=(
        parameter("Completed"),
        parameter("TagFilter"),
        parameter("Search"),
        op("GET", V2, 422),
    ),
    since=SINCE,
    writes=False,
)
def a_filter_out_of_its_domain_or_given_twice_is_422_naming_it(ctx: Context) -> None:
    """A filter or q out of its domain, or a single-valued one given twice, is 422 naming it"""
    _refused(ctx, tuple(r for r in REFUSED if r[1] not in ("sort", "limit")))


@check("FR-202", clauses=(parameter("Sort"), op("GET", V2, 422)), since=SINCE, writes=False)
def an_unknown_sort_or_two_sorts_is_422_naming_sort(ctx: Context) -> None:
    """A sort the contract does not name, or sort given twice, is 422 naming sort"""
    _refused(ctx, tuple(r for r in REFUSED if r[1] == "sort"))


@check("FR-203", clauses=(parameter("PageLimit"), op("GET", V2, 422)), since=SINCE, writes=False)
def a_limit_out_of_range_or_given_twice_is_422_naming_limit(ctx: Context) -> None:
    """A limit out of 1 to 1000, or limit given twice, is 422 naming limit"""
    _refused(ctx, tuple(r for r in REFUSED if r[1] == "limit"))


@check("FR-202", clauses=(parameter("Sort"), op("GET", V2, 200), schema("TodoListV2")), since=SINCE)
def every_sort_orders_by_its_key_then_created_at_and_id(ctx: Context) -> None:
    """Each sort orders by its key (priority none < low < medium < high, titles case-folded,
    todos without a due time last both ways), ties by created_at then id in its direction;
    without sort, -created_at"""
    user, todos = _six(ctx, "v2 sorts")
    for sort in (None, *SORTS):
        query = [] if sort is None else [("sort", sort)]
        body, answer = _page(ctx, user, query, url(query))
        expected = ordered(list(todos.values()), sort or "-created_at")
        got = [t.get("id") for t in body["items"]]
        expect(
            got == expected,
            f"{url(query)} lists {_letters(todos, body['items'])}, not"
            f" {_letters(todos, [{'id': i} for i in expected])}",
            answer,
        )


@check(
    "FR-203",
    clauses=(parameter("PageLimit"), parameter("PageCursor"), header("NextPageLink")),
    since=SINCE,
)
def pages_walk_every_sort_and_filter_and_a_cursor_keeps_its_query(ctx: Context) -> None:
    """Without limit one page of all (next_cursor null, no Link); pages under every sort and a
    filter meet each todo once in order, also while others are written; a cursor with another
    filter or sort, or made up, is 422 naming cursor"""
    user, todos = _six(ctx, "v2 pages")
    body, answer = _page(ctx, user, [], "the list without limit")
    expect(
        len(body["items"]) == 6 and body.get("next_cursor", 0) is None,
        f"without limit, six todos answer {len(body['items'])} and next_cursor"
        f" {body.get('next_cursor')!r}",
        answer,
    )
    expect(answer.header("link") is None, "a last page has a Link", answer)
    every = list(todos.values())
    # Pages of one: every tie of the six falls across a page boundary.
    for sort in SORTS:
        walked = [t["id"] for t in walk(ctx, user, [("sort", sort)], 1)]
        expected = ordered(every, sort)
        expect(
            walked == expected,
            f"pages of 1 under sort={sort} meet {_letters(todos, [{'id': i} for i in walked])},"
            f" not {_letters(todos, [{'id': i} for i in expected])}",
        )
    open_by_due = [("completed", "false"), ("sort", "due_at")]
    met = _letters(todos, walk(ctx, user, open_by_due, 1))
    expect(met == "ADCE", f"pages of 1 of {url(open_by_due)} meet {met}, not ADCE")
    first, answer = _page(ctx, user, [("sort", "due_at"), ("limit", "2")], "a first page")
    cursor = first.get("next_cursor")
    if not isinstance(cursor, str) or not cursor:
        raise Broken("a first page of 2 of 6 gave no next_cursor")
    for other in (
        [("sort", "title")],
        [],
        [("sort", "due_at"), ("completed", "false")],
        [("sort", "due_at"), ("tag", "work")],
        [("sort", "due_at"), ("q", "alpha")],
        [("sort", "-due_at")],
    ):
        asked = [*other, ("limit", "2"), ("cursor", cursor)]
        expect_invalid(
            ctx.send("GET", url(asked), user), "cursor", f"a cursor reused: {url(asked)}"
        )
    again, answer = _page(ctx, user, [("sort", "due_at"), ("limit", "2"), ("cursor", cursor)], "")
    expect(_letters(todos, again["items"]) == "CF", "the cursor with its own query", answer)
    middle = len(cursor) // 2
    changed = cursor[:middle] + ("A" if cursor[middle] != "A" else "B") + cursor[middle + 1 :]
    for made_up in ("!!!", "AgAGR8f2J3SGAAAAAAAAQACAAAAAAAAAAQ", changed):
        asked = [("sort", "due_at"), ("limit", "2"), ("cursor", made_up)]
        expect_invalid(ctx.send("GET", url(asked), user), "cursor", f"cursor={made_up!r}")
    fates = [todos["E"]["id"], todos["B"]["id"]]

    def meanwhile() -> None:
        create_v2(ctx, user, "newcomer", priority="high", due_at="2031-01-02T00:00:00Z")
        if fates:
            ctx.send("DELETE", v2_path(fates.pop()), user)

    walked_ids = [t["id"] for t in walk(ctx, user, [("sort", "priority")], 2, meanwhile)]
    throughout = [t["id"] for letter, t in todos.items() if letter in "ACDF"]
    expect(len(walked_ids) == len(set(walked_ids)), "a todo came twice in one walk under writes")
    missed = [t for t in throughout if t not in walked_ids]
    expect(
        not missed, f"a walk under writes skipped {_letters(todos, [{'id': i} for i in missed])}"
    )


@check("FR-203", clauses=(parameter("PageLimit"),), since=SINCE)
def the_default_page_holds_fifty(ctx: Context) -> None:
    """Without limit, a page holds 50 todos and a next_cursor; the next page the rest"""
    user = ctx.own_user("v2 fifty")
    made = [create_v2(ctx, user, f"of 51: {n}")["id"] for n in range(51)]
    body, answer = _page(ctx, user, [], "the default page")
    expect(
        len(body["items"]) == 50 and isinstance(body.get("next_cursor"), str),
        f"of 51 todos the default page holds {len(body['items'])}, next_cursor"
        f" {body.get('next_cursor')!r}",
        answer,
    )
    rest, answer = _page(ctx, user, [("cursor", body["next_cursor"])], "the second default page")
    seen = [t["id"] for t in body["items"] + rest["items"]]
    expect(sorted(seen) == sorted(made), "two default pages are not the 51 todos once", answer)


@check(
    "FR-204",
    clauses=(op("GET", V2, 304), op("HEAD", V2, 200), header("ETag"), schema("TodoListV2")),
    since=SINCE,
)
def count_etag_and_304_hold_for_every_filter_and_sort(ctx: Context) -> None:
    """count is the page's number of items, and every filtered or sorted list (GET and HEAD)
    has an ETag, answers 304 to it, and changes it when any of the user's todos changes"""
    user, todos = _six(ctx, "v2 etags")
    queries: list[Query] = [
        [],
        [("completed", "false")],
        [("sort", "title"), ("tag", "work")],
        [("q", "alpha"), ("limit", "1")],
        [("priority", "high"), ("sort", "-due_at"), ("due_before", "2031-02-01T00:00:00Z")],
    ]
    tags: list[str] = []
    for query in queries:
        body, answer = _page(ctx, user, query, url(query))
        expect(
            body.get("count") == len(body["items"]),
            f"{url(query)}: count {body.get('count')} for {len(body['items'])} items",
            answer,
        )
        etag = answer.header("etag")
        expect(
            etag is not None and not etag.startswith("W/"), f"{url(query)}: ETag {etag!r}", answer
        )
        tags.append(str(etag))
        cached = ctx.send("GET", url(query), user, headers=[("If-None-Match", str(etag))])
        expect(
            cached.status == 304 and cached.body == b"" and cached.header("etag") == etag,
            f"{url(query)} with its own ETag answered {cached.status}",
            cached,
        )
        headed = ctx.send("HEAD", url(query), user)
        expect(
            headed.status == 200 and headed.header("etag") == etag and headed.body == b"",
            f"HEAD {url(query)}: {headed.status}, ETag {headed.header('etag')!r}, not GET's",
            headed,
        )
    # E meets none of the filtered queries: their lists change all the same.
    ctx.send("PATCH", v2_path(todos["E"]["id"]), user, json={"priority": "low"})
    for query, etag in zip(queries, tags, strict=True):
        after = ctx.send("GET", url(query), user, headers=[("If-None-Match", etag)])
        expect(
            after.status == 200 and after.header("etag") not in (None, etag),
            f"{url(query)}: one of the user's todos changed, and its old ETag still"
            f" answers {after.status}",
            after,
        )


# Every parameter an attacker may try: each filter, each sort, search (the victim's words).
PROBES: tuple[Query, ...] = (
    *(q for q, _ in FILTERS),
    [("q", "secret")],
    [("tag", "victim")],
    *([("sort", s)] for s in SORTS),
)


@check(
    "FR-201",
    "FR-202",
    "FR-203",
    "FR-013",
    "SC-005",
    clauses=(op("GET", V2, 200), parameter("PageCursor")),
    since=SINCE,
)
def no_filter_sort_search_or_cursor_reaches_another_users_todos(ctx: Context) -> None:
    """Under every filter, sort, q and page, and with another user's cursor, a list holds the
    caller's todos alone, never another user's that meet the same query"""
    victims = [
        create_v2(
            ctx,
            ctx.main,
            f"alpha apple gamma secret {n} 100% juice_box C:\\temp Éclair Straße",
            priority=priority,
            due_at=due,
            tags=tags,
        )
        for n, (priority, due, tags) in enumerate(
            (
                ("high", "2031-01-01T10:00:00Z", ["work", "urgent", "home", "Work", "victim"]),
                ("none", None, ["work", "home", "victim"]),
                ("low", "2031-01-04T23:00:00Z", ["work", "home", "victim"]),
            )
        )
    ]
    ctx.send("PATCH", v2_path(victims[1]["id"]), ctx.main, json={"is_completed": True})
    theirs = {t["id"] for t in victims}
    user, _ = _six(ctx, "v2 isolation")

    def clean(items: list[Any], answer: Exchange | None = None, *, what: str) -> None:
        leaked = theirs & {t.get("id") for t in items if isinstance(t, dict)}
        shown = (answer,) if answer is not None else ()
        expect(not leaked, f"{what} holds {len(leaked)} of another user's todos", *shown)

    for query in PROBES:
        body, answer = _page(ctx, user, query, url(query))
        clean(body["items"], answer, what=url(query))
    # Each page is held to it as it comes: a leak that reads every user's todos makes a
    # walk longer than any walk can be, and is a failure, not a walk that never ends.
    for sort in SORTS:
        what = f"pages of 2 under sort={sort}"
        walk(ctx, user, [("sort", sort)], 2, each=partial(clean, what=what))
    walk(
        ctx,
        user,
        [("tag", "work"), ("sort", "due_at")],
        1,
        each=partial(clean, what="pages of tag=work"),
    )
    asked = [("sort", "priority"), ("limit", "1")]
    victim_page, _ = _page(ctx, ctx.main, asked, "the victim's first page")
    cursor = victim_page.get("next_cursor")
    if not isinstance(cursor, str):
        raise Broken("the victim's first page of 1 gave no next_cursor")
    borrowed = ctx.send("GET", url([*asked, ("cursor", cursor)]), user)
    items = (borrowed.json_or_none() or {}).get("items") if borrowed.status == 200 else []
    clean(
        items if isinstance(items, list) else [], borrowed, what="a page with another user's cursor"
    )
