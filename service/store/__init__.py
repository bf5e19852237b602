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
from typing import Any, NewType

from service.models import TodoCreate

UserId = NewType("UserId", uuid.UUID)


@dataclass(frozen=True, slots=True)
class Caller:
    """The caller's user id; with a token, also the (issuer, subject) it was made from,
    which their users row records."""

    id: UserId
    issuer: str | None = None
    subject: str | None = None


def new_todo(caller: Caller, data: TodoCreate) -> dict[str, Any]:
    """A create's values: the todo, and whom a first write makes the users row for."""
    return {
        "user_id": str(caller.id),
        "title": data.title,
        "description": data.description,
        "issuer": caller.issuer,
        "subject": caller.subject,
    }


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
