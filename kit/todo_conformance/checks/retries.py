"""Safe retries with Idempotency-Key (1.1)."""

import uuid

from todo_conformance.checks import (
    TODOS,
    Context,
    check,
    expect,
    expect_invalid,
    expect_problem,
    header,
    op,
    parameter,
    todo_path,
)
from todo_conformance.target import Exchange
from todo_conformance.users import User


def _keyed(ctx: Context, user: User, key: str | bytes, title: str) -> Exchange:
    return ctx.send("POST", TODOS, user, headers=[("Idempotency-Key", key)], json={"title": title})


@check("FR-121", clauses=(parameter("IdempotencyKey"), header("IdempotentReplayed")), since="1.1")
def a_retry_answers_the_first_response_and_creates_nothing(ctx: Context) -> None:
    """A retry with the same key and body answers the first response again (status, body, Location)
    with Idempotent-Replayed: true, and creates nothing"""
    key, title = str(uuid.uuid4()), ctx.title("pay rent")
    first = _keyed(ctx, ctx.main, key, title)
    expect(ctx.status(first) == 201, f"the first keyed create answered {first.status}", first)
    expect(
        "idempotent-replayed" not in first.headers, "the first answer says it is replayed", first
    )
    count = len(ctx.listed(ctx.main))
    for _ in range(2):
        again = _keyed(ctx, ctx.main, key, title)
        expect(ctx.status(again) == 201, f"the retry answered {again.status}", again)
        expect(
            again.json_or_none() == first.json_or_none(),
            "the retry's body is not the first's",
            again,
        )
        expect(
            again.header("location") == first.header("location"),
            "the retry's Location differs",
            again,
        )
        expect(
            again.header("idempotent-replayed") == "true",
            "the retry lacks Idempotent-Replayed: true",
            again,
        )
    expect(len(ctx.listed(ctx.main)) == count, "a retry created a todo")
    todo = first.json_or_none() or {}
    read = ctx.read(ctx.main, str(todo.get("id")))
    expect(read.json_or_none() == todo, "the keyed create's answer is not the todo stored", read)
    ctx.send("DELETE", todo_path(str(todo.get("id"))), ctx.main)
    after = _keyed(ctx, ctx.main, key, title)
    expect(
        ctx.status(after) == 201 and after.json_or_none() == todo,
        "a retry after the todo was deleted is not the first answer",
        after,
    )


@check("FR-121", clauses=(parameter("IdempotencyKey"), op("POST", TODOS, 422)), since="1.1")
def a_key_is_1_to_255_printable_ascii_characters(ctx: Context) -> None:
    """An Idempotency-Key that is empty, longer than 255 or not printable ASCII is 422 naming it,
    and creates nothing"""
    before = len(ctx.listed(ctx.main))
    # (Only values HTTP itself allows in a field: a server may refuse the others as a
    # malformed request before the contract's checks see them.)
    for key in (b"", b"k" * 256, "clé".encode(), b"tab\there"):
        answer = _keyed(ctx, ctx.main, key, ctx.title("bad key"))
        expect_invalid(answer, "Idempotency-Key", f"the key {key!r}")
    unique = uuid.uuid4().hex.encode()
    longest = _keyed(ctx, ctx.main, unique + b"k" * (255 - len(unique)), ctx.title("long key"))
    expect(ctx.status(longest) == 201, f"a 255-character key answered {longest.status}", longest)
    expect(len(ctx.listed(ctx.main)) == before + 1, "a refused key created a todo")


@check("FR-122", clauses=(parameter("IdempotencyKey"), op("POST", TODOS, 422)), since="1.1")
def the_same_key_for_another_request_is_refused(ctx: Context) -> None:
    """The same key with a different body is 422 IDEMPOTENCY_KEY_REUSED and creates nothing"""
    key = str(uuid.uuid4())
    first = _keyed(ctx, ctx.main, key, ctx.title("first"))
    expect(ctx.status(first) == 201, f"the first keyed create answered {first.status}", first)
    count = len(ctx.listed(ctx.main))
    other = _keyed(ctx, ctx.main, key, ctx.title("something else"))
    expect_problem(other, 422, "IDEMPOTENCY_KEY_REUSED", "the key again with another body")
    expect(len(ctx.listed(ctx.main)) == count, "a reused key created a todo")


@check("FR-122", clauses=(parameter("IdempotencyKey"), op("POST", TODOS, 409)), since="1.1")
def concurrent_duplicates_create_one_todo(ctx: Context) -> None:
    """Ten concurrent duplicates of one keyed create make one todo; each answers it (201) or 409"""
    key, title = str(uuid.uuid4()), ctx.title("exactly once")
    before = {t["id"] for t in ctx.listed(ctx.main)}
    answers = ctx.parallel(lambda _: _keyed(ctx, ctx.main, key, title), 10)
    created = {t["id"] for t in ctx.listed(ctx.main)} - before
    expect(len(created) == 1, f"ten duplicates created {len(created)} todos", *answers)
    for answer in answers:
        expect(ctx.status(answer) in {201, 409}, f"a duplicate answered {answer.status}", answer)
        if ctx.status(answer) == 201:
            expect(
                (answer.json_or_none() or {}).get("id") in created,
                "a duplicate answered another todo",
                answer,
            )
        else:
            expect_problem(
                answer, 409, "IDEMPOTENCY_KEY_IN_USE", "a duplicate while the first runs"
            )


@check("FR-123", clauses=(parameter("IdempotencyKey"),), since="1.1")
def keys_belong_to_their_user(ctx: Context) -> None:
    """Another user's identical key is unrelated: it creates that user's own todo"""
    key = str(uuid.uuid4())
    mine = _keyed(ctx, ctx.main, key, ctx.title("main's"))
    theirs = _keyed(ctx, ctx.alt, key, ctx.title("alt's"))
    expect(
        ctx.status(mine) == 201 and ctx.status(theirs) == 201,
        f"answers {mine.status}, {theirs.status}",
        theirs,
    )
    expect("idempotent-replayed" not in theirs.headers, "another user's key was replayed", theirs)
    expect(
        (theirs.json_or_none() or {}).get("id") != (mine.json_or_none() or {}).get("id"),
        "two users' keys answered one todo",
        theirs,
    )
