"""The operations and the data model, as a client sees them (v1)."""

import time
import uuid
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from todo_conformance.checks import (
    ONE,
    TODOS,
    Broken,
    Context,
    Failed,
    Inapplicable,
    check,
    expect,
    expect_problem,
    missing_id,
    op,
    schema,
    todo_path,
)
from todo_conformance.target import Exchange

FIELDS = {"id", "user_id", "title", "description", "is_completed", "created_at", "updated_at"}


def timestamp(value: Any) -> datetime | None:
    """An RFC 3339 timestamp with an explicit offset (Z or +hh:mm), or None."""
    if not isinstance(value, str) or len(value) < 20 or value[10] not in "Tt":
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.utcoffset() is not None else None


def order_key(todo: dict[str, Any]) -> tuple[datetime, uuid.UUID]:
    created = timestamp(todo.get("created_at"))
    if created is None:
        raise Broken(f"a listed todo has no usable created_at: {todo.get('created_at')!r}")
    return created, uuid.UUID(str(todo["id"]))


def newest_first(items: list[dict[str, Any]]) -> bool:
    keys = [order_key(t) for t in items]
    return keys == sorted(keys, reverse=True)


def _location_names(answer: Exchange, todo_id: str) -> bool:
    location = answer.header("location") or ""
    return urlsplit(location).path == f"{TODOS}/{todo_id}"


@check("FR-008", clauses=(op("POST", TODOS, 201),))
def create_answers_the_todo_with_its_location(ctx: Context) -> None:
    """POST creates the caller's todo: 201, the todo, and Location naming it"""
    title = ctx.title("buy milk")
    made = ctx.send("POST", TODOS, ctx.main, json={"title": title, "description": "2 l"})
    expect(made.status == 201, f"expected 201, got {made.status}", made)
    body = made.json_or_none()
    expect(isinstance(body, dict) and body.get("title") == title, "the body is not the todo", made)
    expect(body.get("description") == "2 l", "the description sent is not the one answered", made)
    expect(_location_names(made, str(body.get("id"))), "Location does not name the todo", made)
    only_title = ctx.send("POST", TODOS, ctx.main, json={"title": ctx.title("title only")})
    expect(ctx.status(only_title) == 201, "a create with a title alone was refused", only_title)


@check("SC-001", clauses=(op("POST", TODOS, 201),))
def a_create_answers_well_within_two_seconds(ctx: Context) -> None:
    """A create answers well within 2 s"""
    made = ctx.send("POST", TODOS, ctx.main, json={"title": ctx.title("quick")})
    if ctx.created(made) is None:
        ctx.depart(("FR-008",), f"a create answered {made.status} with no todo", made)
        raise Broken(f"could not create a todo to time: POST answered {made.status}")
    expect(
        made.elapsed < 2, f"the create took {made.elapsed:.2f} s (SC-001: well within 2 s)", made
    )


@check("FR-001", clauses=(schema("Todo"), schema("Todo") + "/properties/updated_at"))
def a_todo_has_exactly_the_contracts_fields(ctx: Context) -> None:
    """A todo has id, user_id, title, description, is_completed, created_at and updated_at, typed as
    the contract says; on create, updated_at equals created_at"""
    made = ctx.send("POST", TODOS, ctx.main, json={"title": ctx.title("shape"), "description": "d"})
    todo = made.json_or_none()
    if ctx.status(made) != 201 or not isinstance(todo, dict):
        ctx.depart(("FR-008",), f"a create answered {made.status} with no todo", made)
        raise Broken(f"could not create a todo to check with: POST answered {made.status}")
    expect(set(todo) == FIELDS, f"fields {sorted(todo)} are not the contract's", made)
    for name in ("id", "user_id"):
        expect(_is_uuid(todo[name]), f"{name} {todo[name]!r} is not a UUID", made)
    expect(isinstance(todo["is_completed"], bool), "is_completed is not a boolean", made)
    for name in ("created_at", "updated_at"):
        expect(
            timestamp(todo[name]) is not None,
            f"{name} {todo[name]!r} is not RFC 3339 with an explicit offset",
            made,
        )
    # The representation's rule: one instant, however each is written.
    expect(
        timestamp(todo["updated_at"]) == timestamp(todo["created_at"]),
        f"on create, updated_at {todo['updated_at']} is not created_at {todo['created_at']}",
        made,
    )
    if not ctx.bearer:
        expected = ctx.main.expected_id
        expect(todo["user_id"] == expected, f"user_id is {todo['user_id']}, not {expected}", made)


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return isinstance(value, str) and len(value) == 36


@check("FR-002", "FR-003", "FR-004", clauses=(schema("Todo"), op("POST", TODOS, 201)))
def the_server_assigns_id_timestamps_and_open_state(ctx: Context) -> None:
    """The server chooses each todo's id and created_at; a new todo is not completed"""
    first = ctx.send("POST", TODOS, ctx.main, json={"title": ctx.title("one")})
    second = ctx.create(ctx.main, "two")
    todo = first.json_or_none() or {}
    expect(ctx.status(first) == 201, f"expected 201, got {first.status}", first)
    expect(todo.get("id") != second.get("id"), "two creates answered the same id", first)
    expect(todo.get("is_completed") is False, "a new todo is already completed", first)
    created, date = timestamp(todo.get("created_at")), first.header("date")
    if created is not None and date:
        # The contract says the server records created_at, not which clock: a clock far
        # from the answer's own Date is worth knowing, and no departure.
        server_now = parsedate_to_datetime(date)
        if abs(created - server_now) >= timedelta(minutes=5):
            ctx.advise(f"created_at {todo.get('created_at')} is far from the answer's Date {date}")


@check("FR-002", "FR-003", "FR-004", clauses=(schema("TodoCreate"), op("POST", TODOS, 422)))
def a_client_cannot_supply_server_fields(ctx: Context) -> None:
    """A create naming id, user_id, created_at, updated_at or is_completed is refused (422) and
    creates nothing"""
    before = len(ctx.listed(ctx.main))
    for name, value in (
        ("id", missing_id()),
        ("user_id", ctx.alt.expected_id or missing_id()),
        ("created_at", "2020-01-01T00:00:00+00:00"),
        ("updated_at", "2020-01-01T00:00:00+00:00"),
        ("is_completed", True),
    ):
        answer = ctx.send("POST", TODOS, ctx.main, json={"title": ctx.title(), name: value})
        expect_problem(answer, 422, "VALIDATION_ERROR", f"a create naming {name}")
    expect(len(ctx.listed(ctx.main)) == before, "a refused create created a todo")


@check("FR-009", clauses=(op("GET", TODOS, 200), schema("TodoList")))
def the_list_holds_every_todo_newest_first(ctx: Context) -> None:
    """GET /api/v1/todos answers all of the caller's todos, newest first, with their count"""
    made = [ctx.create(ctx.third, f"order {n}")["id"] for n in range(4)]
    answer = ctx.send("GET", TODOS, ctx.third)
    body = answer.json_or_none()
    expect(
        answer.status == 200 and isinstance(body, dict),
        f"expected 200, got {answer.status}",
        answer,
    )
    items = body.get("items")
    expect(isinstance(items, list), "the list has no items", answer)
    listed = [t["id"] for t in items if isinstance(t, dict)]
    expect(set(made) <= set(listed), "the list misses todos the caller made", answer)
    expect(body.get("count") == len(items), "count is not the number of items", answer)
    expect(
        newest_first(items),
        "the list is not newest first (created_at, then id, descending)",
        answer,
    )


@check("FR-009", clauses=(op("GET", TODOS, 200),), writes=False)
def a_user_who_never_wrote_has_an_empty_list(ctx: Context) -> None:
    """A user with no todos gets an empty list"""
    answer = ctx.send("GET", TODOS, ctx.users["fresh"])
    body = answer.json_or_none()
    expect(
        answer.status == 200
        and isinstance(body, dict)
        and body.get("items") == []
        and body.get("count") == 0,
        "a user with no todos did not get an empty list",
        answer,
    )


@check("FR-010", clauses=(op("GET", ONE, 200),))
def get_answers_the_same_todo(ctx: Context) -> None:
    """GET /api/v1/todos/{id} answers the todo as created"""
    todo = ctx.create(ctx.main, "read me", description=None)
    answer = ctx.read(ctx.main, todo["id"])
    expect(answer.status == 200, f"expected 200, got {answer.status}", answer)
    expect(answer.json_or_none() == todo, "the todo read is not the todo created", answer)


@check("FR-011", "SC-003", clauses=(op("PATCH", ONE, 200), schema("TodoUpdate")))
def patch_changes_only_the_fields_given(ctx: Context) -> None:
    """PATCH changes only the fields sent, and the change is visible on the next read"""
    todo = ctx.create(ctx.main, "draft", description="notes")
    changed = ctx.send("PATCH", todo_path(todo["id"]), ctx.main, json={"is_completed": True})
    expect(changed.status == 200, f"expected 200, got {changed.status}", changed)
    after = changed.json_or_none() or {}
    expect(after.get("is_completed") is True, "is_completed was not changed", changed)
    expect(
        (after.get("title"), after.get("description")) == (todo["title"], "notes"),
        "fields not sent were changed",
        changed,
    )
    expect(after.get("created_at") == todo["created_at"], "created_at changed", changed)
    read = ctx.read(ctx.main, todo["id"])
    expect(read.json_or_none() == after, "the next read does not show the update", read)
    cleared = ctx.send(
        "PATCH",
        todo_path(todo["id"]),
        ctx.main,
        json={"title": ctx.title("final"), "description": None},
    )
    body = cleared.json_or_none() or {}
    expect(
        cleared.status == 200
        and body.get("description") is None
        and body.get("is_completed") is True,
        "description: null did not clear the description, or changed another field",
        cleared,
    )


@check("FR-011", clauses=(schema("Todo"), op("PATCH", ONE, 200)))
def updated_at_moves_forward_on_every_update(ctx: Context) -> None:
    """updated_at moves forward on every successful update"""
    todo = ctx.create(ctx.main, "tick")
    stamps = [timestamp(todo["updated_at"])]
    for n in range(5):
        answer = ctx.send(
            "PATCH", todo_path(todo["id"]), ctx.main, json={"is_completed": n % 2 == 0}
        )
        stamps.append(timestamp((answer.json_or_none() or {}).get("updated_at")))
        expect(
            stamps[-1] is not None and stamps[-2] is not None and stamps[-1] > stamps[-2],
            "updated_at did not move forward",
            answer,
        )


@check("FR-012", "SC-004", clauses=(op("DELETE", ONE, 204), op("GET", ONE, 404)))
def delete_removes_for_good(ctx: Context) -> None:
    """DELETE answers 204 without a body; the todo is gone from reads and the list"""
    keep, gone = ctx.create(ctx.main, "keep"), ctx.create(ctx.main, "gone")
    answer = ctx.send("DELETE", todo_path(gone["id"]), ctx.main)
    expect(
        answer.status == 204 and answer.body == b"",
        f"expected 204 without a body, got {answer.status}",
        answer,
    )
    read = ctx.read(ctx.main, gone["id"])
    expect(read.status == 404, f"a deleted todo reads {read.status}, not 404", read)
    again = ctx.send("DELETE", todo_path(gone["id"]), ctx.main)
    expect(again.status == 404, f"deleting it again answered {again.status}, not 404", again)
    listed = {t.get("id") for t in ctx.listed(ctx.main)}
    expect(gone["id"] not in listed, "the deleted todo is still in the list")
    expect(keep["id"] in listed, "the todo kept is gone from the list")


@check("EC-4", clauses=(schema("Description"),))
def null_and_empty_descriptions_stay_distinct(ctx: Context) -> None:
    """description null and "" are both valid and stay distinct"""
    empty = ctx.create(ctx.main, "empty", description="")
    null = ctx.create(ctx.main, "null", description=None)
    expect(empty.get("description") == "", f'"" was answered as {empty.get("description")!r}')
    expect(null.get("description") is None, f"null was answered as {null.get('description')!r}")
    read = ctx.read(ctx.main, empty["id"])
    expect(
        (read.json_or_none() or {}).get("description") == "",
        '"" was stored as something else',
        read,
    )
    emptied = ctx.send("PATCH", todo_path(null["id"]), ctx.main, json={"description": ""})
    expect(
        (emptied.json_or_none() or {}).get("description") == "",
        'PATCH to "" did not keep ""',
        emptied,
    )
    cleared = ctx.send("PATCH", todo_path(empty["id"]), ctx.main, json={"description": None})
    expect(
        (cleared.json_or_none() or {}).get("description") is None,
        "PATCH to null did not clear",
        cleared,
    )


@check("EC-5", clauses=(op("PATCH", ONE, 200),))
def concurrent_updates_apply_whole_and_the_last_wins(ctx: Context) -> None:
    """Concurrent updates of one todo: each applies whole, and the last written is what stays"""
    todo = ctx.create(ctx.main, "raced")
    bodies = [
        {"title": ctx.title(f"writer {n}"), "description": f"d{n}", "is_completed": n % 2 == 0}
        for n in range(8)
    ]
    path = todo_path(todo["id"])
    answers = ctx.parallel(lambda n: ctx.send("PATCH", path, ctx.main, json=bodies[n]), 8)
    for answer in answers:
        expect(answer.status == 200, f"a concurrent update answered {answer.status}", answer)
    final = ctx.read(ctx.main, todo["id"])
    state = {
        k: (final.json_or_none() or {}).get(k) for k in ("title", "description", "is_completed")
    }
    expect(state in bodies, f"the todo holds parts of several updates: {state}", final)
    # The last applied is the one with the latest updated_at (FR-011 moves it forward
    # on every update; whether it does is that requirement's check, so ties pass).
    written = [a.json_or_none() or {} for a in answers]
    stamps = [order_key({**t, "created_at": t.get("updated_at")}) for t in written]
    last = [t for t, stamp in zip(written, stamps, strict=True) if stamp == max(stamps)]
    expect(final.json_or_none() in last, "what stays is not the update applied last", final)


@check("FR-012", clauses=(op("DELETE", ONE, 204), op("DELETE", ONE, 404)))
def concurrent_deletes_of_one_todo_delete_it_once(ctx: Context) -> None:
    """Eight concurrent DELETEs of one todo: exactly one 204, the rest 404"""
    todo = ctx.create(ctx.main, "going")
    path = todo_path(todo["id"])
    answers = ctx.parallel(lambda _: ctx.send("DELETE", path, ctx.main), 8)
    statuses = sorted(a.status for a in answers)
    expect(
        statuses == [204] + [404] * 7, f"expected one 204 and seven 404s, got {statuses}", *answers
    )


@check("SC-002", clauses=(op("GET", TODOS, 200),))
def a_list_of_a_thousand_is_whole_and_ordered_within_two_seconds(ctx: Context) -> None:
    """A list of 1,000 todos comes whole within 2 s"""
    quota = ctx.options.quota
    if quota is not None and quota < 1000:
        raise Inapplicable(f"the declared quota ({quota}) is below 1,000 todos")
    user = ctx.third
    have = len(ctx.listed(user))
    missing = max(0, 1000 - have)
    for start in range(0, missing, 16):

        def make(n: int, start: int = start) -> Exchange:
            title = ctx.title(f"thousand {start + n}")
            return ctx.send("POST", TODOS, user, json={"title": title})

        for made in ctx.parallel(make, min(16, missing - start)):
            if ctx.status(made) != 201:
                ctx.depart(("FR-008",), f"a create answered {made.status}", made)
                raise Broken(f"could not create the 1,000 todos: POST answered {made.status}")
    started = time.monotonic()
    answer = ctx.send("GET", TODOS, user)
    took = time.monotonic() - started
    body = answer.json_or_none() or {}
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise Failed(f"expected 200 and a list, got {answer.status}", answer)
    expect(
        len(items) >= 1000 and body.get("count") == len(items),
        f"{len(items)} items listed, not all",
        answer,
    )
    expect(took < 2, f"the list of 1,000 took {took:.2f} s (SC-002: well within 2 s)", answer)
