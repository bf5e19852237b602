"""Bulk writes (FR-211 to FR-213): every todo of the caller that meets a list's filters,
changed or deleted in one statement, which answers its own body (`{"updated": n}` or
`{"deleted": n}`).

Each statement first locks the todos it will write, in id order: two bulk writes of one
user lock what they share in the same order, and a single write locks one todo, so no
two writes ever wait on each other in a circle. A todo that a concurrent write changed
meanwhile is checked against the filters again as it is locked. The write then meets
the same filters in the same snapshot, so it writes the todos locked and no other, and
it is one scan of the user's todos: joined to the locked ids instead, it was planned
for the one row a new user's statistics promise, a nested loop comparing every todo with
every locked id (113 ms of a 141 ms toggle of 1,000 todos). A PATCH writes only the
todos whose values change: one that already holds every value given keeps its
`updated_at`, hence its ETag.

`If-Match` (the list versions it names) is checked where the list version moves, in
migration 0009's trigger, under the users row's lock, after the todos': the statement
sets `app.if_list_version` for itself, and a list that changed since fails it (the
Database answers 412). Under an Idempotency-Key, the key is claimed with the answer
once the todos are locked, and the write and its check happen only if the claim did:
a key's second use writes nothing, checks nothing, and reads the first answer. So every
write takes its locks in one order, todos, then a key, then the users row (a keyed
create claims its key before its todo, which nobody else can wait on yet)."""

import hashlib
from dataclasses import dataclass
from enum import Enum
from typing import Any

import orjson

from service.db import Database
from service.models import TodoBulkUpdate
from service.store import FILTERS, UserId, keys
from service.store.lists import Filters


class Kind(Enum):
    """A bulk write, by the member its answer counts in."""

    UPDATE = "updated"
    DELETE = "deleted"


# Only the todos a PATCH changes; `is_completed` and `priority` are never null.
_CHANGES = """
          AND (is_completed <> coalesce(%(is_completed)s::boolean, is_completed)
               OR priority <> coalesce(%(priority)s::todo_priority, priority)
               OR (%(sets_due_at)s AND due_at IS DISTINCT FROM %(due_at)s::timestamptz))"""


# The todos a bulk write writes, met twice in its statement: once as it locks them, and
# again, in the same snapshot, as it writes them.
_MEETS = {
    Kind.UPDATE: f"user_id = %(user_id)s{FILTERS}{_CHANGES}",
    Kind.DELETE: f"user_id = %(user_id)s{FILTERS}",
}
_LOCK = {Kind.UPDATE: "NO KEY UPDATE", Kind.DELETE: "UPDATE"}


def _target(kind: Kind) -> str:
    return f"""\
WITH target AS (
    SELECT id FROM todo_items
    WHERE {_MEETS[kind]}
    ORDER BY id
    FOR {_LOCK[kind]}
),"""


def _body(kind: Kind) -> str:
    """The answer's JSON, `{"updated": n}` or `{"deleted": n}`, counting the rows read."""
    return f"""'{{"{kind.value}":' || count(*) || '}}'"""


# The claim's answer counts what the write will: the locked todos, which nothing else
# can change before this transaction ends.
def _claimed(kind: Kind) -> str:
    return f"""
claim AS (
    INSERT INTO idempotency_keys (user_id, key, fingerprint, todo_id, body)
    SELECT %(user_id)s, %(key)s, %(fingerprint)s, NULL, {_body(kind)}
    FROM target
    ON CONFLICT (user_id, key) DO NOTHING
    RETURNING body
),
condition AS (
    SELECT set_config('app.if_list_version', %(if_list_version)s, true) FROM claim
),"""


# Counting the target locks all of it before the write's scan begins.
_UNCLAIMED = """
condition AS (
    SELECT set_config('app.if_list_version', %(if_list_version)s, true)
    FROM (SELECT count(*) FROM target) AS locked
),"""

# `condition` gates the write, so the setting is made before the write's trigger reads it.
_UPDATED = f"""
written AS (
    UPDATE todo_items
    SET is_completed = coalesce(%(is_completed)s::boolean, is_completed),
        priority = coalesce(%(priority)s::todo_priority, priority),
        due_at = CASE WHEN %(sets_due_at)s THEN %(due_at)s::timestamptz ELSE due_at END,
        updated_at = greatest(now(), updated_at + interval '1 microsecond')
    WHERE {_MEETS[Kind.UPDATE]}
      AND EXISTS (SELECT 1 FROM condition)
    RETURNING 1
)"""

_DELETED = f"""
written AS (
    DELETE FROM todo_items
    WHERE {_MEETS[Kind.DELETE]}
      AND EXISTS (SELECT 1 FROM condition)
    RETURNING 1
)"""


def _answered(kind: Kind) -> str:
    return f"""
SELECT {_body(kind)} FROM written"""


_ANSWER_CLAIMED = "\nSELECT body FROM claim"

UPDATE = _target(Kind.UPDATE) + _UNCLAIMED + _UPDATED + _answered(Kind.UPDATE)
UPDATE_KEYED = _target(Kind.UPDATE) + _claimed(Kind.UPDATE) + _UPDATED + _ANSWER_CLAIMED
DELETE = _target(Kind.DELETE) + _UNCLAIMED + _DELETED + _answered(Kind.DELETE)
DELETE_KEYED = _target(Kind.DELETE) + _claimed(Kind.DELETE) + _DELETED + _ANSWER_CLAIMED


def _statement(kind: Kind, keyed: bool) -> str:
    """Read as a write runs, so that a test may put another in its place."""
    if kind is Kind.UPDATE:
        return UPDATE_KEYED if keyed else UPDATE
    return DELETE_KEYED if keyed else DELETE


@dataclass(frozen=True, slots=True)
class Written:
    """A bulk write's answer, as JSON."""

    json: str
    replayed: bool = False


def _versions(if_match: list[int] | None) -> str:
    """The setting's value: the versions as an array, or empty for no condition."""
    return "" if if_match is None else "{" + ",".join(map(str, if_match)) + "}"


def _fingerprint(kind: Kind, filters: Filters, changes: dict[str, Any]) -> bytes:
    """The request as the service understood it: its method, filters and changes."""
    asked = [kind.value, filters.values(), sorted(changes.items())]
    return hashlib.sha256(orjson.dumps(asked)).digest()


async def write(
    db: Database,
    user: UserId,
    filters: Filters,
    changes: TodoBulkUpdate | None,
    if_match: list[int] | None = None,
    key: str | None = None,
) -> Written | keys.Reused:
    """Changes (`changes`) or deletes (None) every todo of `user` that meets `filters`.
    With `if_match` (list versions), only if the list is at one of them; with `key`, as
    an Idempotency-Key says."""
    kind = Kind.DELETE if changes is None else Kind.UPDATE
    given = {} if changes is None else changes.changes()
    params = {
        "user_id": str(user),
        **filters.values(),
        "is_completed": given.get("is_completed"),
        "priority": given.get("priority"),
        "sets_due_at": "due_at" in given,
        "due_at": given.get("due_at"),
        "if_list_version": _versions(if_match),
    }
    plain, keyed = _statement(kind, keyed=False), _statement(kind, keyed=True)
    if key is None:
        [(body,)] = await db.fetch(user, plain, params)
        return Written(body)
    fingerprint = _fingerprint(kind, filters, given)
    params |= {"key": key, "fingerprint": fingerprint}
    # As keys.create_once: a key claimed by an earlier use is read in a new snapshot;
    # one that expired meanwhile is released, and claimed once more.
    for _ in range(2):
        claimed = await db.fetch(user, keyed, params)
        if claimed:
            return Written(claimed[0][0])
        earlier = await db.fetch(user, keys.REPLAY, params)
        if earlier:
            _, body, _, earlier_print = earlier[0]
            if bytes(earlier_print) != fingerprint:
                return keys.Reused()
            return Written(body, replayed=True)
    raise db.unavailable(cause="timeout")
