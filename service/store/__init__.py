"""The store: the caller's rows in PostgreSQL, as JSON text, versions and positions.

Every function takes the caller and sends one statement through `Database`, written in
these modules as the SQL it is and restricted to that user (the first wall; the
row-level policies are the second). PostgreSQL writes the JSON itself: a todo is
`row_to_json` of its row as a view sees it (the row types `todo_v1` and `todo_v2`),
with timestamps in PostgreSQL's own RFC 3339 form (the request context pins TimeZone
to UTC), so every answer spells a todo with the same bytes. Nothing here knows HTTP:
the routes make entity tags, cursors and envelopes of these values."""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, NewType

from service.models import TodoCreate, TodoCreateV2, TodoUpdateV2, fold

UserId = NewType("UserId", uuid.UUID)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The todos every filter given lets through (each one whose value is not null), a
# list's and a bulk write's alike. `words` are LIKE patterns (each word of `q`,
# case-folded, with its `%`, `_` and `\` escaped); the longest one alone is what the
# trigram index finds candidates by, and all of them must match.
FILTERS = """
          AND (%(completed)s::boolean IS NULL OR is_completed = %(completed)s::boolean)
          AND (%(priorities)s::todo_priority[] IS NULL
               OR priority = ANY (%(priorities)s::todo_priority[]))
          AND (%(tags)s::text[] IS NULL OR tags @> %(tags)s::text[])
          AND (%(due_after)s::timestamptz IS NULL OR due_at > %(due_after)s::timestamptz)
          AND (%(due_before)s::timestamptz IS NULL OR due_at < %(due_before)s::timestamptz)
          AND (%(longest)s::text IS NULL
               OR title_folded || ' ' || description_folded LIKE %(longest)s::text)
          AND (%(words)s::text[] IS NULL
               OR title_folded || ' ' || description_folded LIKE ALL (%(words)s::text[]))"""


class View(Enum):
    """Which members of a todo an answer shows: 1.x's, or all of 2.0's. One row, one
    statement, two spellings (chosen by the `v1` value each statement takes)."""

    V1 = "1"
    V2 = "2"


@dataclass(frozen=True, slots=True)
class Caller:
    """The caller's user id; with a token, also the (issuer, subject) it was made from,
    which their users row records."""

    id: UserId
    issuer: str | None = None
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class Position:
    """A todo's place in a list's order: its sort key (None for the created_at sorts,
    whose key is created_at itself), then created_at in microseconds, then id. A
    position names a place, never a todo."""

    created_at_us: int
    todo_id: uuid.UUID
    key: str | None = None

    @property
    def created_at(self) -> datetime:
        return _EPOCH + timedelta(microseconds=self.created_at_us)


def view_of(data: object) -> View:
    """The view a request's body asks for: 2.0's models are 2.0's."""
    return View.V2 if isinstance(data, TodoCreateV2 | TodoUpdateV2) else View.V1


def new_todo(caller: Caller, data: TodoCreate | TodoCreateV2) -> dict[str, Any]:
    """A create's values: the todo (with 2.0's defaults when 1.x creates it), its folds,
    and whom a first write makes the users row for."""
    if isinstance(data, TodoCreateV2):
        priority, due_at, tags = data.priority, data.due_at, list(data.tags)
    else:
        priority, due_at, tags = "none", None, []
    return {
        "v1": view_of(data) is View.V1,
        "user_id": str(caller.id),
        "title": data.title,
        "description": data.description,
        "priority": priority,
        "due_at": due_at,
        "tags": tags,
        "title_folded": fold(data.title),
        "description_folded": fold(data.description or ""),
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
