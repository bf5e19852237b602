"""Many at once in 2.1 at /api/v2/todos (FR-211 to FR-213): toggle all and clear
completed with their counts, untouched todos keeping their ETag, a parameter the
contract does not know refused with nothing changed, If-Match with the list's ETag,
Idempotency-Key's replay, and a single write beside a bulk one seeing it whole or not at
all; another user's todos are never changed or deleted.

Every bulk write the kit sends carries a filter on a tag of its own run (`run_tag`), so
that on a stranger's deployment it can only ever reach the todos this run made; for
that reason the kit never sends one without a filter, and leaves FR-213's refusal of a
missing filter to the service's own tests. Each check tags its todos with a tag of its
own under the run's, so that what one check's bulk write reaches never depends on
another's; the fuzzer's bulk writes carry the run's (fuzz_hooks.py)."""

import threading
import uuid
from typing import Any

from todo_conformance.checks import (
    Context,
    Inapplicable,
    check,
    expect,
    expect_invalid,
    header,
    op,
    parameter,
)
from todo_conformance.checks.v2_todo import V2, V2_ONE, create_v2, v2_path
from todo_conformance.target import Exchange, Headers
from todo_conformance.users import User

SINCE = "2.1"
Todos = dict[str, dict[str, Any]]


def run_tag(ctx: Context, check: str = "") -> str:
    """A tag of this run (a check's, with `check`, of at most 6 characters), which every
    bulk write carries as its filter: at most 32 characters, as tags are."""
    return f"tc-{ctx.run_id}" + (f"-{check}" if check else "")


def _bulk_declared(ctx: Context) -> None:
    operations = ctx.contract.document.get("paths", {}).get(V2, {})
    if "patch" not in operations or "delete" not in operations:
        raise Inapplicable(f"the served contract declares no bulk PATCH and DELETE on {V2}")


def _bulk(
    ctx: Context,
    method: str,
    user: User,
    tag: str,
    query: str,
    body: dict[str, Any] | None = None,
    headers: Headers = (),
) -> Exchange:
    """A bulk write, filtered on a tag of this run's whatever else it asks."""
    path = f"{V2}?tag={tag}" + (f"&{query}" if query else "")
    return ctx.send(method, path, user, json=body, headers=headers)


def _counted(answer: Exchange, member: str, n: int, what: str) -> None:
    body = answer.json_or_none()
    expect(
        answer.status == 200 and body == {member: n},
        f"{what}: expected 200 {{{member!r}: {n}}}, got {answer.status} {body!r}",
        answer,
    )


def _read(ctx: Context, user: User, todo: dict[str, Any]) -> Exchange:
    return ctx.send("GET", v2_path(todo["id"]), user)


def _four(ctx: Context, user: User, role: str, tag: str) -> Todos:
    """A and B open, C completed, all three on `tag`; D open, without it."""
    made = {
        "A": create_v2(ctx, user, f"{role} A", tags=[tag]),
        "B": create_v2(ctx, user, f"{role} B", tags=[tag, "also"]),
        "C": create_v2(ctx, user, f"{role} C", tags=[tag]),
        "D": create_v2(ctx, user, f"{role} D"),
    }
    done = ctx.send("PATCH", v2_path(made["C"]["id"]), user, json={"is_completed": True})
    expect(done.status == 200, f"completing a todo answered {done.status}", done)
    made["C"] = dict(done.json())
    return made


def _bystander(ctx: Context, tag: str, completed: bool) -> dict[str, Any]:
    """Another user's todo on `tag`, which no bulk write of the caller's may reach."""
    todo = create_v2(ctx, ctx.main, "a bystander's", tags=[tag])
    if not completed:
        return todo
    done = ctx.send("PATCH", v2_path(todo["id"]), ctx.main, json={"is_completed": True})
    expect(done.status == 200, f"completing a todo answered {done.status}", done)
    return dict(done.json())


def _unchanged(ctx: Context, user: User, todo: dict[str, Any], what: str) -> None:
    read = _read(ctx, user, todo)
    expect(
        read.status == 200 and read.json_or_none() == todo,
        f"{what} changed: {read.status} {read.json_or_none()!r}",
        read,
    )


@check("FR-211", clauses=(op("PATCH", V2, 200), header("ETag")), since=SINCE)
def toggle_all_completes_every_match_and_counts_the_changed(ctx: Context) -> None:
    """A bulk PATCH completes every todo its filters match in one request and counts
    those it changed; a todo that already held the values keeps its updated_at and ETag,
    and a todo it does not match, or another user's, is untouched"""
    _bulk_declared(ctx)
    user, tag = ctx.own_user("v2 toggle all"), run_tag(ctx, "tg")
    todos, theirs = _four(ctx, user, "toggle", tag), _bystander(ctx, tag, completed=False)
    etag_c = _read(ctx, user, todos["C"]).header("etag")
    answer = _bulk(ctx, "PATCH", user, tag, "", {"is_completed": True})
    _counted(answer, "updated", 2, "completing the run's three todos, one already completed")
    # (That a changed todo's updated_at moves is FR-011's, checked on its own.)
    for letter in "AB":
        read = _read(ctx, user, todos[letter])
        body = read.json_or_none() or {}
        expect(
            read.status == 200 and body.get("is_completed") is True,
            f"todo {letter} is not completed after the bulk PATCH",
            read,
        )
    read = _read(ctx, user, todos["C"])
    expect(
        read.json_or_none() == todos["C"] and read.header("etag") == etag_c,
        "a todo that already held the value was written: its updated_at or ETag moved",
        read,
    )
    _unchanged(ctx, user, todos["D"], "a todo the filter does not match")
    _unchanged(ctx, ctx.main, theirs, "another user's todo on the same tag")
    reopened = _bulk(ctx, "PATCH", user, tag, "completed=true", {"is_completed": False})
    _counted(reopened, "updated", 3, "reopening the run's three completed todos")


@check("FR-212", clauses=(op("DELETE", V2, 200),), since=SINCE)
def clear_completed_deletes_every_match_and_counts_them(ctx: Context) -> None:
    """A bulk DELETE deletes every todo its filters match in one request and counts them;
    a todo it does not match, or another user's, is still there"""
    _bulk_declared(ctx)
    user, tag = ctx.own_user("v2 clear completed"), run_tag(ctx, "cc")
    todos, theirs = _four(ctx, user, "clear", tag), _bystander(ctx, tag, completed=True)
    answer = _bulk(ctx, "DELETE", user, tag, "completed=true")
    _counted(answer, "deleted", 1, "clearing the run's one completed todo")
    gone = _read(ctx, user, todos["C"])
    expect(gone.status == 404, f"a cleared todo answers {gone.status}", gone)
    for letter in "ABD":
        _unchanged(ctx, user, todos[letter], f"todo {letter}, open")
    _unchanged(ctx, ctx.main, theirs, "another user's todo on the same tag")
    again = _bulk(ctx, "DELETE", user, tag, "completed=true")
    _counted(again, "deleted", 0, "clearing completed todos again")


@check("FR-213", clauses=(op("PATCH", V2, 422), op("DELETE", V2, 422)), since=SINCE)
def a_parameter_the_contract_does_not_know_refuses_the_bulk_write(ctx: Context) -> None:
    """A bulk write with a query parameter the contract does not know (a misspelt filter)
    is 422 naming it, and changes nothing"""
    _bulk_declared(ctx)
    user, tag = ctx.own_user("v2 bulk unknown"), run_tag(ctx, "uk")
    todos = _four(ctx, user, "unknown", tag)
    for method, body in (("DELETE", None), ("PATCH", {"is_completed": True})):
        refused = _bulk(ctx, method, user, tag, "complete=false", body)
        expect_invalid(refused, "complete", f"a bulk {method} with ?complete=false")
    for letter, todo in todos.items():
        _unchanged(ctx, user, todo, f"todo {letter} after refused bulk writes")


@check(
    "FR-213",
    "FR-113",
    clauses=(op("PATCH", V2, 412), op("DELETE", V2, 412), parameter("IfMatch")),
    since=SINCE,
)
def a_bulk_write_under_if_match_needs_the_lists_current_etag(ctx: Context) -> None:
    """A bulk write with If-Match and the list's ETag from before any change to the caller's
    todos is 412 and changes nothing; with the current one it is done"""
    _bulk_declared(ctx)
    user, tag = ctx.own_user("v2 bulk if-match"), run_tag(ctx, "im")
    todos = _four(ctx, user, "if-match", tag)
    listed = ctx.send("GET", V2, user)
    stale = str(listed.header("etag"))
    moved = ctx.send("PATCH", v2_path(todos["D"]["id"]), user, json={"priority": "low"})
    expect(moved.status == 200, f"a single PATCH answered {moved.status}", moved)
    todos["D"] = dict(moved.json())
    for method, body in (("DELETE", None), ("PATCH", {"priority": "high"})):
        refused = _bulk(ctx, method, user, tag, "", body, [("If-Match", stale)])
        expect(refused.status == 412, f"a bulk {method} on a stale ETag answered {refused.status}")
    for letter, todo in todos.items():
        _unchanged(ctx, user, todo, f"todo {letter} after bulk writes on a stale ETag")
    current = str(ctx.send("GET", V2, user).header("etag"))
    done = _bulk(ctx, "PATCH", user, tag, "", {"priority": "high"}, [("If-Match", current)])
    _counted(done, "updated", 3, "a bulk PATCH on the current ETag")


@check("FR-213", "FR-121", clauses=(parameter("IdempotencyKey"),), since=SINCE)
def a_bulk_write_retried_under_its_key_answers_again_and_does_nothing_more(
    ctx: Context,
) -> None:
    """A bulk PATCH retried with the same Idempotency-Key answers the first answer again
    and changes nothing more, even where a todo matching it has been made since"""
    _bulk_declared(ctx)
    user, tag = ctx.own_user("v2 bulk replay"), run_tag(ctx, "rp")
    _four(ctx, user, "replay", tag)
    key = [("Idempotency-Key", str(uuid.uuid4()))]
    raise_open = ("completed=false", {"priority": "high"})
    first = _bulk(ctx, "PATCH", user, tag, *raise_open, headers=key)
    _counted(first, "updated", 2, "a keyed bulk PATCH of two open todos")
    later = create_v2(ctx, user, "made later", tags=[tag])
    again = _bulk(ctx, "PATCH", user, tag, *raise_open, headers=key)
    _counted(again, "updated", 2, "the keyed bulk PATCH, retried")
    expect(
        again.header("idempotent-replayed") == "true",
        "the retried bulk PATCH lacks Idempotent-Replayed: true",
        again,
    )
    _unchanged(ctx, user, later, "a todo made after the keyed bulk PATCH")


def _race(ctx: Context, user: User, tag: str, round_: int) -> None:
    """One round: eight open todos on `tag`, a single PATCH under If-Match of the last
    and a bulk PATCH completing all eight, sent at once."""
    made = [create_v2(ctx, user, f"race {round_}.{n}", tags=[tag]) for n in range(8)]
    target = made[-1]
    etag = str(_read(ctx, user, target).header("etag"))
    renamed = ctx.title(f"renamed {round_}")
    answers: dict[str, Exchange] = {}
    go = threading.Barrier(2)

    def single() -> None:
        go.wait()
        answers["single"] = ctx.send(
            "PATCH",
            v2_path(target["id"]),
            user,
            json={"title": renamed},
            headers=[("If-Match", etag)],
        )

    def bulk() -> None:
        go.wait()
        answers["bulk"] = _bulk(ctx, "PATCH", user, tag, "completed=false", {"is_completed": True})

    threads = [threading.Thread(target=single), threading.Thread(target=bulk)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _counted(answers["bulk"], "updated", 8, f"round {round_}: the bulk PATCH")
    status = answers["single"].status
    expect(status in (200, 412), f"the single PATCH answered {status}", answers["single"])
    final = _read(ctx, user, target).json_or_none() or {}
    expect(
        final.get("is_completed") is True and (final.get("title") == renamed) == (status == 200),
        f"round {round_}: the single PATCH answered {status}, and the todo reads {final!r}",
        answers["single"],
    )
    cleared = _bulk(ctx, "DELETE", user, tag, "completed=true")
    _counted(cleared, "deleted", 8, f"round {round_}: clearing the round's todos")


@check("FR-213", clauses=(op("PATCH", V2, 200), op("PATCH", V2_ONE, 412)), since=SINCE)
def a_single_write_beside_a_bulk_one_sees_it_whole_or_not_at_all(ctx: Context) -> None:
    """A single PATCH under If-Match, sent while a bulk PATCH completes the same todos, is
    either before it (200, and the bulk completes the todo too) or after it (412): never
    between, with some of the todos completed and others not"""
    _bulk_declared(ctx)
    user, tag = ctx.own_user("v2 bulk race"), run_tag(ctx, "rc")
    for round_ in range(5):
        _race(ctx, user, tag, round_)
