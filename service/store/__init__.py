"""The store: the caller's rows in PostgreSQL, as JSON text, versions and positions.

Every function takes the caller and sends one statement through `Database`, written in
these modules as the SQL it is and restricted to that user (the first wall; the
row-level policies are the second). PostgreSQL writes the JSON itself: a todo is
`row_to_json` of its row, with timestamps in PostgreSQL's own RFC 3339 form (the
request context pins TimeZone to UTC), so every answer spells a todo with the same
bytes. Nothing here knows HTTP: the routes make entity tags, cursors and envelopes of
these values."""

import uuid
from dataclasses import dataclass
from typing import NewType

UserId = NewType("UserId", uuid.UUID)


@dataclass(frozen=True, slots=True)
class Caller:
    """The caller's user id; with a token, also the (issuer, subject) it was made from,
    which their users row records."""

    id: UserId
    issuer: str | None = None
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class Stored:
    """A todo as stored: its JSON, and its version (`updated_at` in microseconds since
    the epoch, which every update moves strictly forward)."""

    json: str
    version: int


@dataclass(frozen=True, slots=True)
class Created(Stored):
    todo_id: str
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class OverQuota:
    """Nothing was created: the caller holds as many todos as the quota allows."""


# With TODO_MAX_TODOS_PER_USER, a create first takes the caller's users row (made now
# if it is their first write, or locked as it stands) only if it counts fewer todos
# than the quota. The lock is what makes it exact: a create waiting on it sees the count
# the one before it left (migration 0005's triggers keep it), so of N concurrent
# creates at one below the quota exactly one finds room.
ROOM = """\
    INSERT INTO users AS u (id, issuer, subject)
    VALUES (%(user_id)s, %(issuer)s, %(subject)s)
    ON CONFLICT (id) DO UPDATE SET todo_count = u.todo_count
    WHERE u.id = %(user_id)s AND u.todo_count < %(quota)s
    RETURNING id"""
