"""HTTP done properly (1.1 and 1.2): entity tags and conditional requests, ambiguous
input refused, HEAD wherever GET works, and who the header names."""

import json
import uuid

from todo_conformance.checks import (
    ONE,
    TODOS,
    Context,
    check,
    expect,
    expect_invalid,
    expect_problem,
    header,
    missing_id,
    named_fields,
    op,
    parameter,
    schema,
    todo_path,
)
from todo_conformance.target import Exchange


def _strong(answer: Exchange, what: str) -> str:
    etag = answer.header("etag") or ""
    expect(
        len(etag) >= 2 and etag.startswith('"') and etag.endswith('"'),
        f"{what}: ETag {etag!r} is not a strong entity tag",
        answer,
    )
    return etag


def _list_etag(ctx: Context) -> str:
    return _strong(ctx.send("GET", TODOS, ctx.main), "the list")


@check("FR-101", clauses=(parameter("UserId"),), since="1.1", modes=("header",))
def the_header_names_the_caller(ctx: Context) -> None:
    """header mode: X-User-ID names the caller: a todo made naming an id belongs to that id and is
    read through it (that any letter case names the same user is FR-015's user context)"""
    made = ctx.create(ctx.main, "named")
    expected = ctx.main.expected_id
    expect(made["user_id"] == expected, f"user_id is {made['user_id']}, not {expected}")
    read = ctx.read(ctx.main, made["id"])
    expect(read.status == 200, f"the todo made naming the id reads {read.status}", read)


@check("FR-111", clauses=(header("ETag"),), since="1.1")
def every_todo_answer_has_a_strong_etag_that_changes_with_the_todo(ctx: Context) -> None:
    """POST, GET and PATCH carry a strong ETag; it stays while the todo does and changes when it
    changes"""
    made = ctx.send("POST", TODOS, ctx.main, json={"title": ctx.title("v1")})
    created = _strong(made, "POST")
    path = todo_path((made.json_or_none() or {}).get("id", missing_id()))
    expect(
        _strong(ctx.send("GET", path, ctx.main), "GET") == created, "GET's ETag differs from POST's"
    )
    expect(
        _strong(ctx.send("GET", path, ctx.main), "GET") == created,
        "the ETag changed with no change",
    )
    seen = {created}
    for body in ({"title": ctx.title("v2")}, {"is_completed": True}, {"description": "d"}):
        changed = ctx.send("PATCH", path, ctx.main, json=body)
        etag = _strong(changed, "PATCH")
        expect(etag not in seen, f"the ETag did not change with the todo ({body})", changed)
        expect(_strong(ctx.send("GET", path, ctx.main), "GET") == etag, "GET's ETag is not PATCH's")
        seen.add(etag)


@check("FR-112", clauses=(op("GET", ONE, 304), op("GET", TODOS, 304)), since="1.1")
def if_none_match_answers_304_for_a_todo_and_for_the_list(ctx: Context) -> None:
    """A matching If-None-Match is 304 with the ETag and no body, for one todo and for the list"""
    todo = ctx.create(ctx.main, "cached")
    path = todo_path(todo["id"])
    etag = _strong(ctx.send("GET", path, ctx.main), "GET")
    for target, tag in ((path, etag), (TODOS, _list_etag(ctx))):
        for condition in (tag, f'"other", {tag}', "*"):
            answer = ctx.send("GET", target, ctx.main, headers=[("If-None-Match", condition)])
            expect(
                answer.status == 304,
                f"GET {target} with If-None-Match {condition}: {answer.status}",
                answer,
            )
            expect(
                answer.body == b"" and answer.header("etag") == tag,
                "a 304 without the ETag, or with a body",
                answer,
            )
        other = ctx.send("GET", target, ctx.main, headers=[("If-None-Match", '"not-it"')])
        expect(other.status == 200, f"a non-matching If-None-Match answered {other.status}", other)
        lines = [("If-None-Match", '"not-it"'), ("If-None-Match", tag)]
        listed = ctx.send("GET", target, ctx.main, headers=lines)
        expect(listed.status == 304, "two If-None-Match lines are not read as one list", listed)
    ctx.create(ctx.alt, "theirs")
    theirs = _strong(ctx.send("GET", TODOS, ctx.alt), "another user's list")
    foreign = ctx.send("GET", TODOS, ctx.main, headers=[("If-None-Match", theirs)])
    expect(foreign.status == 200, "another user's list ETag matched the caller's list", foreign)


@check("FR-112", clauses=(op("GET", TODOS, 200), header("ETag")), since="1.1")
def the_lists_etag_changes_with_any_of_its_todos(ctx: Context) -> None:
    """The list's ETag changes when one of the caller's todos is created, changed or deleted, and
    only then"""
    before = _list_etag(ctx)
    expect(_list_etag(ctx) == before, "the list's ETag changed with no change")
    todo = ctx.create(ctx.main, "listed")
    created = _list_etag(ctx)
    expect(created != before, "the list's ETag did not change when a todo was created")
    ctx.send("PATCH", todo_path(todo["id"]), ctx.main, json={"is_completed": True})
    changed = _list_etag(ctx)
    expect(changed != created, "the list's ETag did not change when a todo changed")
    ctx.send("DELETE", todo_path(todo["id"]), ctx.main)
    if ctx.read(ctx.main, todo["id"]).status == 404:  # deleted (whether it is: FR-012)
        expect(_list_etag(ctx) != changed, "the list's ETag did not change when a todo was deleted")
    ctx.create(ctx.alt, "someone else's")
    expect(_list_etag(ctx) == _list_etag(ctx), "the list's ETag is not stable")


@check(
    "FR-113",
    clauses=(parameter("IfMatch"), op("PATCH", ONE, 412), op("DELETE", ONE, 412)),
    since="1.1",
)
def if_match_makes_writes_conditional(ctx: Context) -> None:
    """PATCH and DELETE with If-Match proceed on the current ETag or *, and are 412
    PRECONDITION_FAILED otherwise, changing nothing"""
    todo = ctx.create(ctx.main, "guarded")
    path = todo_path(todo["id"])
    current = _strong(ctx.send("GET", path, ctx.main), "GET")
    stale = f'"{uuid.uuid4().hex}"'
    refused = ctx.send(
        "PATCH", path, ctx.main, headers=[("If-Match", stale)], json={"title": ctx.title("no")}
    )
    expect_problem(refused, 412, "PRECONDITION_FAILED", "PATCH with a stale If-Match")
    expect(
        ctx.read(ctx.main, todo["id"]).json_or_none() == todo, "a refused PATCH changed the todo"
    )
    done = ctx.send(
        "PATCH", path, ctx.main, headers=[("If-Match", current)], json={"title": ctx.title("yes")}
    )
    expect(done.status == 200, f"PATCH with the current If-Match answered {done.status}", done)
    newer = _strong(done, "PATCH")
    if newer != current:
        again = ctx.send(
            "PATCH", path, ctx.main, headers=[("If-Match", current)], json={"is_completed": True}
        )
        expect_problem(again, 412, "PRECONDITION_FAILED", "PATCH with the ETag the todo had before")
    lines = [("If-Match", stale), ("If-Match", _strong(ctx.read(ctx.main, todo["id"]), "GET"))]
    listed = ctx.send("PATCH", path, ctx.main, headers=lines, json={"is_completed": False})
    expect(listed.status == 200, "two If-Match lines are not read as one list", listed)
    star = ctx.send(
        "PATCH", path, ctx.main, headers=[("If-Match", "*")], json={"description": "any"}
    )
    expect(star.status == 200, f"PATCH with If-Match: * answered {star.status}", star)
    kept = ctx.send("DELETE", path, ctx.main, headers=[("If-Match", stale)])
    expect_problem(kept, 412, "PRECONDITION_FAILED", "DELETE with a stale If-Match")
    expect(ctx.read(ctx.main, todo["id"]).status == 200, "a refused DELETE deleted the todo")
    latest = ctx.read(ctx.main, todo["id"]).header("etag") or ""
    gone = ctx.send("DELETE", path, ctx.main, headers=[("If-Match", latest)])
    expect(gone.status == 204, f"DELETE with the current If-Match answered {gone.status}", gone)


@check("FR-113", clauses=(op("PATCH", ONE, 404), op("DELETE", ONE, 404)), since="1.1")
def a_missing_todo_is_404_never_412(ctx: Context) -> None:
    """If-Match on a todo the caller cannot see (missing) is 404, never 412"""
    for method in ("PATCH", "DELETE"):
        answer = ctx.send(
            method,
            todo_path(missing_id()),
            ctx.main,
            headers=[("If-Match", '"1"')],
            json={"is_completed": True} if method == "PATCH" else None,
        )
        expect(
            answer.status == 404,
            f"{method} of a missing todo with If-Match: {answer.status}",
            answer,
        )


@check("FR-113", clauses=(op("PATCH", ONE, 412),), since="1.1")
def of_concurrent_writes_with_one_etag_exactly_one_succeeds(ctx: Context) -> None:
    """Of ten concurrent PATCHes carrying the same ETag, exactly one succeeds; the rest are 412"""
    todo = ctx.create(ctx.main, "contested")
    path = todo_path(todo["id"])
    etag = ctx.read(ctx.main, todo["id"]).header("etag") or ""
    answers = ctx.parallel(
        lambda n: ctx.send(
            "PATCH",
            path,
            ctx.main,
            headers=[("If-Match", etag)],
            json={"title": ctx.title(f"w{n}")},
        ),
        10,
    )
    statuses = sorted(a.status for a in answers)
    expect(
        statuses == [200] + [412] * 9, f"expected one 200 and nine 412s, got {statuses}", *answers
    )


@check("FR-108", clauses=(schema("TodoCreate"), parameter("IdempotencyKey")), since="1.1")
def a_repeated_member_or_key_is_refused_and_changes_nothing(ctx: Context) -> None:
    """A JSON member named twice (at any depth) or two Idempotency-Key lines are 422, and nothing is
    created"""
    before = len(ctx.listed(ctx.main))
    title = json_string(ctx.title("one"))
    for raw, member in (
        (b'{"title": ' + title + b', "title": ' + title + b"}", "title"),
        (b'{"title": ' + title + b', "description": {"a": 1, "a": 2}}', "a"),
    ):
        answer = ctx.send(
            "POST", TODOS, ctx.main, body=raw, headers=[("Content-Type", "application/json")]
        )
        body = expect_problem(answer, 422, None, f"a body naming {member!r} twice")
        if not body:
            continue  # not problem details: what it names is FR-020's to judge
        said = (
            " ".join(
                str(e.get("field", "")) + " " + str(e.get("message", ""))
                for e in body.get("errors", [])
                if isinstance(e, dict)
            )
            + " "
            + str(body.get("detail", ""))
        )
        expect(
            member in named_fields(answer) or f'"{member}"' in said,
            f"the 422 does not name {member!r}",
            answer,
        )
    todo = ctx.create(ctx.main, "twice named")
    raw = b'{"title": ' + json_string(ctx.title("a")) + b', "title": ' + json_string("b") + b"}"
    changed = ctx.send(
        "PATCH",
        todo_path(todo["id"]),
        ctx.main,
        body=raw,
        headers=[("Content-Type", "application/json")],
    )
    expect_problem(changed, 422, None, "an update naming 'title' twice")
    expect(ctx.read(ctx.main, todo["id"]).json_or_none() == todo, "an ambiguous update changed it")
    before += 1
    twice = ctx.send(
        "POST",
        TODOS,
        ctx.main,
        headers=[("Idempotency-Key", "one"), ("Idempotency-Key", "two")],
        json={"title": ctx.title("keyed twice")},
    )
    expect_invalid(twice, "Idempotency-Key", "two Idempotency-Key lines")
    expect(len(ctx.listed(ctx.main)) == before, "an ambiguous request created a todo")


@check(
    "FR-108", clauses=(parameter("UserId"), op("POST", TODOS, 400)), since="1.1", modes=("header",)
)
def two_user_ids_are_refused(ctx: Context) -> None:
    """header mode: two X-User-ID lines are 400 INVALID_USER_CONTEXT and change nothing"""
    before = len(ctx.listed(ctx.main))
    for users in ((ctx.main, ctx.alt), (ctx.main, ctx.main)):
        lines = [("X-User-ID", u.user_header or "") for u in users]
        answer = ctx.send("POST", TODOS, None, headers=lines, json={"title": ctx.title("who")})
        expect_problem(answer, 400, "INVALID_USER_CONTEXT", "two X-User-ID lines")
    expect(len(ctx.listed(ctx.main)) == before, "a request naming two users created a todo")


@check("FR-108", clauses=(op("POST", TODOS, 401),), since="1.1", modes=("bearer",))
def two_authorizations_are_refused(ctx: Context) -> None:
    """bearer mode: two Authorization lines are 401 INVALID_TOKEN and change nothing"""
    before = len(ctx.listed(ctx.main))
    lines = [*ctx.main.identity(), *ctx.alt.identity()]
    answer = ctx.send("POST", TODOS, None, headers=lines, json={"title": ctx.title("who")})
    expect_problem(answer, 401, "INVALID_TOKEN", "two Authorization lines")
    expect(len(ctx.listed(ctx.main)) == before, "a request with two tokens created a todo")


@check("FR-009", "FR-010", clauses=(op("HEAD", TODOS), op("HEAD", ONE)), since="1.2")
def head_answers_what_get_answers_without_a_body(ctx: Context) -> None:
    """HEAD wherever GET works: the same status and headers, no body"""
    todo = ctx.create(ctx.main, "headed")
    for path in (TODOS, f"{TODOS}?limit=1", todo_path(todo["id"]), todo_path(missing_id())):
        got = ctx.send("GET", path, ctx.main)
        head = ctx.send("HEAD", path, ctx.main)
        expect(
            head.status == got.status and head.body == b"",
            f"HEAD {path}: {head.status}, {len(head.body)} bytes",
            head,
        )
        for name in ("etag", "content-type", "link"):
            expect(
                head.header(name) == got.header(name),
                f"HEAD {path}: {name} differs from GET's",
                head,
                got,
            )


def json_string(text: str) -> bytes:
    return json.dumps(text, ensure_ascii=False).encode()
