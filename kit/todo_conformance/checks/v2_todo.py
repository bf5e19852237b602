"""The todo of 2.0 at /api/v2 (FR-191, FR-192), and /api/v1 as a view of the same todo
(FR-193). Every check here is of a contract that declares /api/v2: on a 1.x contract
the runner answers not-applicable."""

import uuid
from datetime import datetime
from typing import Any

from todo_conformance.checks import (
    Broken,
    Context,
    check,
    expect,
    expect_invalid,
    named_fields,
    op,
    schema,
    todo_path,
)
from todo_conformance.checks.crud import FIELDS, timestamp
from todo_conformance.target import Exchange
from todo_conformance.users import User

V2 = "/api/v2/todos"
V2_ONE = V2 + "/{todo_id}"
MEMBERS = {"priority", "due_at", "tags", "completed_at"}
FIELDS_V2 = FIELDS | MEMBERS
PRIORITIES = ("none", "low", "medium", "high")
SINCE = "2.0"


def v2_path(todo_id: str) -> str:
    return f"{V2}/{todo_id}"


def answered(
    exchange: Exchange, status: int, what: str, ctx: Context | None = None
) -> dict[str, Any]:
    """The todo an answer of `status` carries, or a failure of the check. A create
    (`ctx` given) answered 200 with its todo is FR-008's departure, and goes on."""
    if ctx is not None and status == 201 and ctx.created(exchange) is not None:
        return dict(exchange.json())
    body = exchange.json_or_none()
    expect(
        exchange.status == status and isinstance(body, dict),
        f"{what}: expected {status} with a todo, got {exchange.status}",
        exchange,
    )
    return dict(body)


def create_v2(ctx: Context, user: User, text: str, **fields: Any) -> dict[str, Any]:
    """A todo made under /api/v2 that a check needs; blocked without it (the create
    that failed is a departure of FR-192's)."""
    made = ctx.send("POST", V2, user, json={"title": ctx.title(text), **fields})
    body = ctx.created(made)
    if body is None:
        ctx.depart(("FR-192",), f"a create under {V2} answered {made.status} with no todo", made)
        raise Broken(f"could not create a todo under {V2}: POST answered {made.status}")
    return body


def instant(value: Any) -> datetime | None:
    return timestamp(value)


def in_utc(value: Any) -> bool:
    parsed = timestamp(value)
    return parsed is not None and parsed.utcoffset() is not None and not parsed.utcoffset()


def _between(value: Any, earliest: Any, latest: Any) -> bool:
    """Whether `value` is an instant from `earliest` (the updated_at before a write) to
    `latest` (the write's own), or at least `earliest` where updated_at did not move
    (that is FR-011's to fail, not this)."""
    when, first, last = instant(value), instant(earliest), instant(latest)
    if when is None or first is None or last is None or when < first:
        return False
    return last <= first or when <= last


def _shape(ctx: Context, todo: dict[str, Any], exchange: Exchange) -> None:
    """The contract's TodoV2: every member, typed."""
    expect(set(todo) == FIELDS_V2, f"members {sorted(todo)} are not TodoV2's", exchange)
    expect(todo["priority"] in PRIORITIES, f"priority {todo['priority']!r}", exchange)
    tags = todo["tags"]
    expect(
        isinstance(tags, list) and all(isinstance(t, str) for t in tags),
        f"tags {tags!r} is not an array of strings",
        exchange,
    )
    for name in ("due_at", "completed_at"):
        value = todo[name]
        expect(
            value is None or in_utc(value),
            f"{name} {value!r} is neither null nor an RFC 3339 instant in UTC",
            exchange,
        )
    expect(
        (todo["completed_at"] is None) == (todo["is_completed"] is False),
        f"completed_at {todo['completed_at']!r} with is_completed {todo['is_completed']}",
        exchange,
    )


@check("FR-191", "FR-192", clauses=(schema("TodoV2"), op("POST", V2, 201)), since=SINCE)
def a_v2_create_takes_priority_due_at_and_tags_and_answers_every_member(ctx: Context) -> None:
    """POST /api/v2/todos takes priority, due_at and tags and answers them (due_at in UTC, tags in
    the order sent); without them, none, null and []; GET answers the same todo"""
    tags = ["reports", "Work", "work", "two words", "日本語", "x" * 32]
    made = ctx.send(
        "POST",
        V2,
        ctx.main,
        json={
            "title": ctx.title("every member"),
            "priority": "high",
            "due_at": "2031-01-01T11:30:00+01:00",
            "tags": tags,
        },
    )
    todo = answered(made, 201, "a create with every member", ctx)
    _shape(ctx, todo, made)
    expect(todo["priority"] == "high", f"priority {todo['priority']!r}, not 'high'", made)
    expect(
        instant(todo["due_at"]) == instant("2031-01-01T10:30:00+00:00"),
        f"due_at {todo['due_at']!r} is not the instant sent (2031-01-01T10:30:00Z)",
        made,
    )
    expect(todo["tags"] == tags, f"tags {todo['tags']!r}, not {tags!r} in that order", made)
    read = ctx.send("GET", v2_path(todo["id"]), ctx.main)
    expect(answered(read, 200, "GET of the todo made") == todo, "GET answers another todo", read)
    plain = ctx.send("POST", V2, ctx.main, json={"title": ctx.title("title only")})
    bare = answered(plain, 201, "a create with a title alone", ctx)
    _shape(ctx, bare, plain)
    defaults = {k: bare[k] for k in MEMBERS}
    expect(
        defaults == {"priority": "none", "due_at": None, "tags": [], "completed_at": None},
        f"a create with a title alone has {defaults}",
        plain,
    )
    ten = [f"t{n}" for n in range(10)]
    most = ctx.send("POST", V2, ctx.main, json={"title": ctx.title("ten tags"), "tags": ten})
    expect(answered(most, 201, "a create with ten tags", ctx)["tags"] == ten, "ten tags", most)


@check("FR-191", "FR-192", clauses=(schema("TodoV2"), op("PATCH", V2_ONE, 200)), since=SINCE)
def completed_at_is_the_time_of_the_completing_write(ctx: Context) -> None:
    """completed_at is set by the write that completes (a v2 or a v1 PATCH), kept when completed
    again or changed otherwise, and null when reopened; PATCH replaces tags, clears due_at"""
    todo = create_v2(ctx, ctx.main, "completing", priority="low", tags=["a"], due_at=None)
    path = v2_path(todo["id"])
    done = ctx.send("PATCH", path, ctx.main, json={"is_completed": True})
    first = answered(done, 200, "PATCH is_completed true")
    _shape(ctx, first, done)
    when = instant(first["completed_at"])
    expect(
        _between(first["completed_at"], todo["updated_at"], first["updated_at"]),
        f"completed_at {first['completed_at']!r} is not the time of the completing write"
        f" (between {todo['updated_at']} and {first['updated_at']})",
        done,
    )
    for body in ({"is_completed": True}, {"title": ctx.title("completing, renamed")}):
        again = ctx.send("PATCH", path, ctx.main, json=body)
        kept = answered(again, 200, f"PATCH {body}")
        expect(
            instant(kept["completed_at"]) == when,
            f"PATCH {body} moved completed_at to {kept['completed_at']!r}",
            again,
        )
    reopened = answered(
        ctx.send("PATCH", path, ctx.main, json={"is_completed": False}), 200, "reopen"
    )
    expect(reopened["completed_at"] is None, f"reopened, completed_at {reopened['completed_at']!r}")
    v1 = ctx.send("PATCH", todo_path(todo["id"]), ctx.main, json={"is_completed": True})
    v1_done = answered(v1, 200, "a v1 PATCH is_completed true")
    seen = answered(ctx.send("GET", path, ctx.main), 200, "GET after a v1 completion")
    expect(
        _between(seen["completed_at"], reopened["updated_at"], v1_done["updated_at"]),
        f"after a v1 PATCH completed it, completed_at is {seen['completed_at']!r}",
    )
    changed = ctx.send(
        "PATCH", path, ctx.main, json={"tags": ["b", "c"], "due_at": None, "priority": "medium"}
    )
    now = answered(changed, 200, "PATCH tags, due_at null and priority")
    expect(
        (now["tags"], now["due_at"], now["priority"]) == (["b", "c"], None, "medium"),
        f"PATCH answered tags {now['tags']}, due_at {now['due_at']}, priority {now['priority']}",
        changed,
    )
    dated = ctx.send("PATCH", path, ctx.main, json={"due_at": "2031-06-01T00:00:00-05:00"})
    expect(
        instant(answered(dated, 200, "PATCH due_at")["due_at"])
        == instant("2031-06-01T05:00:00+00:00"),
        "PATCH due_at with an offset is not that instant",
        dated,
    )


# Each member made invalid, alone: (member, value).
INVALID = (
    ("priority", "urgent"),
    ("priority", "HIGH"),
    ("priority", None),
    ("priority", 3),
    ("due_at", "2031-01-01T10:00:00"),
    ("due_at", "tomorrow"),
    ("due_at", "2031-02-30T10:00:00Z"),
    ("due_at", 1924992000),
    ("tags", None),
    ("tags", "work"),
    ("tags", [""]),
    ("tags", [" work"]),
    ("tags", ["work "]),
    ("tags", ["a\tb"]),
    ("tags", ["a\u0007b"]),
    ("tags", ["x" * 33]),
    ("tags", [f"t{n}" for n in range(11)]),
    ("tags", ["same", "same"]),
    ("tags", [1]),
    ("tags", [None]),
    ("completed_at", "2031-01-01T10:00:00Z"),
    ("completed_at", None),
)


@check(
    "FR-192",
    clauses=(schema("TodoCreateV2"), schema("TodoUpdateV2"), op("POST", V2, 422)),
    since=SINCE,
)
def each_invalid_member_is_named_in_one_422_and_changes_nothing(ctx: Context) -> None:
    """A create or a PATCH with an invalid priority, due_at or tags (null, out of the enum, no
    offset, duplicate, blank-edged, control characters, too many, too long), or with completed_at,
    is 422 naming it, several named at once, and nothing changes"""
    user = ctx.own_user("v2 validation")
    todo = create_v2(ctx, user, "kept", priority="low", tags=["keep"])
    path = v2_path(todo["id"])
    for member, value in INVALID:
        what = f"{member}={value!r}"
        made = ctx.send("POST", V2, user, json={"title": ctx.title("refused"), member: value})
        expect_invalid(made, member, f"a create with {what}")
        changed = ctx.send("PATCH", path, user, json={member: value})
        expect_invalid(changed, member, f"a PATCH with {what}")
    several = ctx.send(
        "POST",
        V2,
        user,
        json={"title": ctx.title("refused"), "priority": None, "due_at": "soon", "tags": [""]},
    )
    expect_invalid(several, "priority", "a create with three invalid members")
    names = named_fields(several)
    expect(
        not names or {"priority", "due_at", "tags"} <= names,
        f"one 422 for three invalid members names {sorted(names)}",
        several,
    )
    listed = ctx.send("GET", V2, user)
    items = (listed.json_or_none() or {}).get("items")
    expect(
        listed.status == 200 and [t.get("id") for t in items or []] == [todo["id"]],
        "a refused create or PATCH made or lost a todo",
        listed,
    )
    expect((items or [None])[0] == todo, "a refused PATCH changed the todo", listed)


@check(
    "FR-193",
    clauses=(op("GET", V2_ONE, 200), op("GET", "/api/v1/todos/{todo_id}", 200), schema("Todo")),
    since=SINCE,
)
def a_todo_is_one_todo_under_v1_and_v2(ctx: Context) -> None:
    """A v1 create has the 2.0 defaults under v2; a v2 todo shows exactly the 1.x members under
    v1, with the same ETag; a write under either path is seen under the other, and a v1 PATCH
    keeps the 2.0 members"""
    v1 = ctx.create(ctx.main, "made under v1")
    seen = answered(ctx.send("GET", v2_path(v1["id"]), ctx.main), 200, "a v1 todo read under v2")
    expect({k: seen[k] for k in FIELDS} == v1, "under v2, a v1 todo's 1.x members differ")
    expect(
        {k: seen[k] for k in MEMBERS}
        == {"priority": "none", "due_at": None, "tags": [], "completed_at": None},
        f"a v1 create has 2.0 members { ({k: seen[k] for k in MEMBERS}) }, not their defaults",
    )
    v2 = create_v2(
        ctx, ctx.main, "made under v2", priority="high", due_at="2031-03-01T09:00:00Z", tags=["x"]
    )
    read = ctx.read(ctx.main, v2["id"])
    shown = answered(read, 200, "a v2 todo read under v1")
    expect(set(shown) == FIELDS, f"under v1 a todo has members {sorted(shown)}", read)
    expect(shown == {k: v2[k] for k in FIELDS}, "under v1 the todo's members differ", read)
    etag = ctx.send("GET", v2_path(v2["id"]), ctx.main).header("etag")
    expect(
        etag is not None and read.header("etag") == etag,
        f"the ETag under v1 ({read.header('etag')}) is not the one under v2 ({etag})",
        read,
    )
    renamed = ctx.send(
        "PATCH", todo_path(v2["id"]), ctx.main, json={"title": ctx.title("renamed under v1")}
    )
    expect(
        set(answered(renamed, 200, "a v1 PATCH")) == FIELDS,
        "a v1 PATCH answers 2.0 members",
        renamed,
    )
    after = answered(ctx.send("GET", v2_path(v2["id"]), ctx.main), 200, "read under v2")
    expect(
        after["title"] == ctx.title("renamed under v1")
        and {k: after[k] for k in MEMBERS} == {k: v2[k] for k in MEMBERS},
        "after a v1 PATCH, v2 shows another title or changed 2.0 members",
    )
    raised = answered(
        ctx.send("PATCH", v2_path(v2["id"]), ctx.main, json={"priority": "low"}), 200, "v2 PATCH"
    )
    under_v1 = answered(ctx.read(ctx.main, v2["id"]), 200, "read under v1")
    expect(
        under_v1 == {k: raised[k] for k in FIELDS},
        "after a v2 PATCH, v1 shows another todo (updated_at included)",
    )
    listed = ctx.listed(ctx.main)
    expect(all(set(t) == FIELDS for t in listed), "the v1 list shows 2.0 members")
    # A delete is seen under the other path, where it deleted under its own (whether it
    # does is FR-012's).
    ctx.send("DELETE", todo_path(v2["id"]), ctx.main)
    if ctx.read(ctx.main, v2["id"]).status == 404:
        gone = ctx.send("GET", v2_path(v2["id"]), ctx.main)
        expect(gone.status == 404, f"deleted under v1, GET under v2 answers {gone.status}", gone)
    ctx.send("DELETE", v2_path(v1["id"]), ctx.main)
    if ctx.send("GET", v2_path(v1["id"]), ctx.main).status == 404:
        gone = ctx.read(ctx.main, v1["id"])
        expect(gone.status == 404, f"deleted under v2, GET under v1 answers {gone.status}", gone)
    unknown = ctx.send("GET", v2_path(str(uuid.uuid4())), ctx.main)
    expect(unknown.status == 404, f"a missing id under v2 answers {unknown.status}", unknown)
