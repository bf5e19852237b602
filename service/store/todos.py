"""The caller's todos: create, read, list (whole, streamed or a page), update, delete.

Conditional writes are one statement: the version check and the write happen together,
so no race slips between them. Every write bumps the caller's list version in the same
statement (migration 0004's triggers), so the list's version is one row away."""

import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from enum import Enum
from typing import Any

from service.db import Database
from service.models import TodoCreate, TodoCreateV2, TodoUpdate, TodoUpdateV2, fold
from service.store import Caller, Created, Position, Stored, UserId, View, new_todo, view_of

# Lists up to this long are built whole by PostgreSQL in one round trip; longer ones are
# streamed in batches this size, so memory stays flat however many todos a user has.
WHOLE_LIST_LIMIT = 2000

# The users row is made on the caller's first write, with a token's (issuer, subject).
# Within a quota, the trigger that counts the caller's todos refuses one too many
# (migration 0006; the Database raises QuotaExceeded).
# A todo as the asking view shows it (`v1`: 1.x's members only), in one statement for
# both: the value is known when the statement is planned, so only one branch is ever
# computed.
_SHOWN = """CASE WHEN %(v1)s
    THEN row_to_json(ROW(id, user_id, title, description, is_completed, created_at,
                         updated_at)::todo_v1)
    ELSE row_to_json(ROW(id, user_id, title, description, is_completed, created_at,
                         updated_at, priority, due_at, tags, completed_at)::todo_v2)
END"""

CREATE = f"""\
WITH new_user AS (
    INSERT INTO users (id, issuer, subject)
    VALUES (%(user_id)s, %(issuer)s, %(subject)s)
    ON CONFLICT DO NOTHING
)
INSERT INTO todos (user_id, title, description, priority, due_at, tags,
                   title_folded, description_folded)
VALUES (%(user_id)s, %(title)s, %(description)s, %(priority)s, %(due_at)s, %(tags)s::text[],
        %(title_folded)s, %(description_folded)s)
RETURNING {_SHOWN}::text, (extract(epoch FROM updated_at) * 1000000)::bigint, id"""

GET = f"""\
SELECT {_SHOWN}::text, (extract(epoch FROM updated_at) * 1000000)::bigint
FROM todos
WHERE user_id = %(user_id)s AND id = %(todo_id)s"""


# A PATCH: an absent title, is_completed, priority or tags keeps its value (none is
# ever null), and updated_at moves strictly forward even if two updates share a clock
# tick or the clock steps back. The description, which may be set to null, is written
# only by the statements that name it: assigning it to itself cost 2-4% of a PATCH at
# the database (bench/results/findings.md). `due_at`, which may be cleared too, is
# written when `sets_due_at`, a value the planner folds away. completed_at follows
# is_completed by migration 0007's trigger, for every build alike.
def _patched(description: bool) -> str:
    described = (
        "\n    description = %(description)s,\n    description_folded = %(description_folded)s,"
        if description
        else ""
    )
    return f"""\
UPDATE todos
SET title = coalesce(%(title)s, title),{described}
    is_completed = coalesce(%(is_completed)s, is_completed),
    priority = coalesce(%(priority)s::todo_priority, priority),
    due_at = CASE WHEN %(sets_due_at)s THEN %(due_at)s::timestamptz ELSE due_at END,
    tags = coalesce(%(tags)s::text[], tags),
    title_folded = coalesce(%(title_folded)s, title_folded),
    updated_at = greatest(now(), updated_at + interval '1 microsecond')
WHERE user_id = %(user_id)s AND id = %(todo_id)s"""


_DELETED = """\
DELETE FROM todos
WHERE user_id = %(user_id)s AND id = %(todo_id)s"""
# If-Match: only a todo at one of the versions it names, checked in the same step as
# the write.
_IF_MATCH = """
  AND (extract(epoch FROM updated_at) * 1000000)::bigint = ANY (%(if_match)s::bigint[])"""
_THE_TODO = f"""
RETURNING {_SHOWN}::text AS todo,
          (extract(epoch FROM updated_at) * 1000000)::bigint AS version"""


def _or_whether_it_exists(write: str, outcome: str) -> str:
    """A conditional write, and whether the todo exists at all: a todo the caller
    cannot see is missing, never stale."""
    return f"""\
WITH written AS (
{write}
)
SELECT {outcome},
       EXISTS (SELECT 1 FROM todos WHERE user_id = %(user_id)s AND id = %(todo_id)s)
FROM (SELECT 1) AS one LEFT JOIN written ON true"""


# Composed from the parts above; statements.sql has each whole.
PATCH = _patched(description=False) + _THE_TODO
PATCH_DESCRIPTION = _patched(description=True) + _THE_TODO
PATCH_IF = _or_whether_it_exists(
    _patched(description=False) + _IF_MATCH + _THE_TODO, "written.todo, written.version"
)
PATCH_DESCRIPTION_IF = _or_whether_it_exists(
    _patched(description=True) + _IF_MATCH + _THE_TODO, "written.todo, written.version"
)
REMOVE = _DELETED + "\nRETURNING id"
REMOVE_IF = _or_whether_it_exists(_DELETED + _IF_MATCH + "\nRETURNING id", "written.id")

# The caller's list version: 0 for a user who never wrote (no users row).
LIST_VERSION = """\
SELECT coalesce((SELECT version FROM users WHERE id = %(user_id)s), 0)"""

# The list version, and at most `limit` todos newest first (the index's order) as one
# JSON array, and their count.
LIST = """\
SELECT coalesce((SELECT version FROM users WHERE id = %(user_id)s), 0),
       json_agg(t)::text,
       count(*)
FROM (
    SELECT id, user_id, title, description, is_completed, created_at, updated_at
    FROM todos
    WHERE user_id = %(user_id)s
    ORDER BY created_at DESC, id DESC
    LIMIT %(limit)s
) AS t"""

STREAM = """\
SELECT row_to_json(t)::text, coalesce((SELECT version FROM users WHERE id = %(user_id)s), 0)
FROM (
    SELECT id, user_id, title, description, is_completed, created_at, updated_at
    FROM todos
    WHERE user_id = %(user_id)s
    ORDER BY created_at DESC, id DESC
) AS t"""

# One page: the list version, then `limit` todos after a position (from the start when
# none is given) as a JSON array, their count, the last one's position, and whether any
# todo follows it (one row more than the page is read to know). A position names a
# place in the order, never a todo: it reaches only the caller's own.
PAGE = """\
SELECT coalesce((SELECT version FROM users WHERE id = %(user_id)s), 0),
       (json_agg(w.todo) FILTER (WHERE w.n <= %(limit)s))::text,
       count(*) FILTER (WHERE w.n <= %(limit)s),
       max((extract(epoch FROM (w.todo).created_at) * 1000000)::bigint)
           FILTER (WHERE w.n = %(limit)s),
       max((w.todo).id::text) FILTER (WHERE w.n = %(limit)s),
       count(*) > %(limit)s
FROM (
    SELECT t AS todo, row_number() OVER () AS n
    FROM (
        SELECT id, user_id, title, description, is_completed, created_at, updated_at
        FROM todos
        WHERE user_id = %(user_id)s
          AND (%(after_id)s::uuid IS NULL
               OR (created_at, id) < (%(after_created_at)s::timestamptz, %(after_id)s::uuid))
        ORDER BY created_at DESC, id DESC
        LIMIT %(limit)s + 1
    ) AS t
) AS w"""


class Unwritten(Enum):
    """Why a write to one todo did not happen."""

    MISSING = "the caller has no such todo"
    STALE = "the todo is at none of the versions the condition names"


@dataclass(frozen=True, slots=True)
class Items:
    """Some of the caller's todos as a JSON array, with the list version; for a page,
    `last` is where the next page starts, None on the last page."""

    version: int
    json: str
    count: int
    last: Position | None = None


async def _one(db: Database, user: UserId, statement: str, **params: Any) -> Any:
    rows = await db.fetch(user, statement, {"user_id": str(user), **params})
    return rows[0] if rows else None


async def create(db: Database, caller: Caller, data: TodoCreate | TodoCreateV2) -> Created:
    """The new todo, shown as the version whose model `data` is shows it."""
    created = await db.fetch(caller.id, CREATE, new_todo(caller, data), creates=True)
    body, version, todo_id = created[0]
    return Created(body, version, str(todo_id))


async def get(
    db: Database, user: UserId, todo_id: uuid.UUID, view: View = View.V1
) -> Stored | None:
    row = await _one(db, user, GET, todo_id=str(todo_id), v1=view is View.V1)
    return None if row is None else Stored(*row)


async def patch(
    db: Database,
    user: UserId,
    todo_id: uuid.UUID,
    changes: TodoUpdate | TodoUpdateV2,
    if_match: list[int] | None = None,
) -> Stored | Unwritten:
    """The updated todo, shown as the version whose model `changes` is shows it. With
    `if_match` (versions), written only if its current version is one of them."""
    given = changes.changes()
    title, description = given.get("title"), given.get("description")
    params = {
        "v1": view_of(changes) is View.V1,
        "todo_id": str(todo_id),
        "title": title,
        "title_folded": None if title is None else fold(title),
        "description": description,
        "description_folded": fold(description or ""),
        "is_completed": given.get("is_completed"),
        "priority": given.get("priority"),
        "sets_due_at": "due_at" in given,
        "due_at": given.get("due_at"),
        "tags": given.get("tags"),
    }
    describes = "description" in given
    if if_match is None:
        row = await _one(db, user, PATCH_DESCRIPTION if describes else PATCH, **params)
        return Unwritten.MISSING if row is None else Stored(*row)
    conditional = PATCH_DESCRIPTION_IF if describes else PATCH_IF
    body, version, found = await _one(db, user, conditional, if_match=if_match, **params)
    if body is not None:
        return Stored(body, version)
    return Unwritten.STALE if found else Unwritten.MISSING


async def remove(
    db: Database, user: UserId, todo_id: uuid.UUID, if_match: list[int] | None = None
) -> Unwritten | None:
    """None once the todo is deleted; with `if_match`, as in `patch`."""
    if if_match is None:
        gone = await _one(db, user, REMOVE, todo_id=str(todo_id))
        return Unwritten.MISSING if gone is None else None
    gone, found = await _one(db, user, REMOVE_IF, todo_id=str(todo_id), if_match=if_match)
    if gone is not None:
        return None
    return Unwritten.STALE if found else Unwritten.MISSING


async def list_version(db: Database, user: UserId) -> int:
    (version,) = await _one(db, user, LIST_VERSION)
    return int(version)


async def list_all(db: Database, user: UserId) -> Items | None:
    """Every todo of the caller, newest first; None when there are more than
    WHOLE_LIST_LIMIT: stream them."""
    version, items, count = await _one(db, user, LIST, limit=WHOLE_LIST_LIMIT + 1)
    if count > WHOLE_LIST_LIMIT:
        return None
    return Items(version, items or "[]", count)


class Batches:
    """The todos' JSON, a batch at a time, from one open snapshot. Closing it gives the
    snapshot's connection back whether a batch was read or not (a generator closed
    before its first step would run no `finally`, and leave that to the collector)."""

    def __init__(
        self, first: list[tuple[Any, ...]], rows: AsyncGenerator[list[tuple[Any, ...]], None]
    ) -> None:
        self._first: list[tuple[Any, ...]] | None = first
        self._rows = rows

    def __aiter__(self) -> "Batches":
        return self

    async def __anext__(self) -> list[str]:
        batch, self._first = self._first, None
        if batch is None:
            batch = await anext(self._rows)
        return [row[0] for row in batch]

    async def aclose(self) -> None:
        await self._rows.aclose()


async def stream_all(db: Database, user: UserId) -> tuple[int, Batches]:
    """The list version and the same todos as `list_all`, as JSON, in batches from one
    snapshot. The first batch is read before this returns, so an outage surfaces
    before anything is answered."""
    rows = db.stream(user, STREAM, {"user_id": str(user)}, WHOLE_LIST_LIMIT)
    try:
        first: list[tuple[Any, ...]] = await anext(rows, [])
    except BaseException:
        await rows.aclose()
        raise
    version = first[0][1] if first else 0
    return version, Batches(first, rows)


async def page(db: Database, user: UserId, limit: int, after: Position | None) -> Items:
    """`limit` todos after `after` (from the start when None), newest first. A todo's
    place never changes, so a walk through the pages meets every todo that exists
    throughout it exactly once, whatever is created or deleted meanwhile."""
    version, items, count, last_at, last_id, more = await _one(
        db,
        user,
        PAGE,
        limit=limit,
        after_created_at=None if after is None else after.created_at,
        after_id=None if after is None else str(after.todo_id),
    )
    last = Position(last_at, uuid.UUID(last_id)) if more else None
    return Items(version, items or "[]", count, last)
