"""The caller's lists under /api/v2: filtered, searched and sorted pages.

One statement per sort, each the same page (as store.todos.PAGE's: the list version,
the page as JSON, its count, where the next page starts, and whether one does) in its
own index order: (user_id, key, created_at, id), with ties by created_at, then id, in
the sort's own direction. Every filter is a condition in each statement, whose value is
null when not given: the values are in the statement's text when PostgreSQL plans it,
so an absent filter's condition folds away before the plan is made, and the page is
one index range scan starting at the cursor's position."""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from service.db import Database
from service.models import fold
from service.store import FILTERS, Position, UserId
from service.store.todos import Items

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# A tagged list in created_at's order is read from todo_tags, by its first tag, in that
# order: under row-level security no index can narrow `tags @>` (its operator is not
# leakproof), and text's `=` is (migration 0007). The other tags asked for are a filter;
# the first is what the rows read carry, which the planner could not know.
_TAGGED = """todo_tags JOIN todo_items ON todo_items.id = todo_tags.todo_id
        WHERE todo_tags.user_id = %(user_id)s AND todo_tags.tag = (%(tags)s::text[])[1]
          AND todo_items.user_id = %(user_id)s"""


# A searched list in created_at's order: the ids of its page, found by the trigram index
# as migration 0008's todo_search_page finds them (LIKE is not leakproof, so under the
# policy no index narrows it), read again here under the policy, every filter with them.
_SEARCHED = """todo_search_page(
            %(longest)s::text, %(words)s::text[], %(completed)s::boolean,
            %(priorities)s::todo_priority[], %(tags)s::text[], %(due_after)s::timestamptz,
            %(due_before)s::timestamptz, %(after_created_at)s::timestamptz,
            %(after_id)s::uuid, {newest_first}, %(limit)s + 1
        ) AS found(todo_id) JOIN todo_items ON todo_items.id = found.todo_id
        WHERE todo_items.user_id = %(user_id)s"""


def _page(
    key: str | None,
    descending: bool,
    after_key: str = "",
    kept: str = "NULL",
    tagged: bool = False,
    searched: bool = False,
) -> str:
    """A page in the order of `key` (None: created_at alone), then created_at and id,
    all ascending or all descending. `after_key` is the cursor's key as SQL; `kept` is
    what a cursor keeps of the page's last todo to make it again. `tagged` (created_at
    alone): the todos of the first tag asked for, from todo_tags; `searched` (created_at
    alone): the page todo_search_page finds for `q`."""
    order = " DESC" if descending else ""
    beyond = "<" if descending else ">"
    sort = f"{key}{order}, " if key else ""
    position = f"({key}, created_at, id)" if key else "(created_at, id)"
    cursor = f"{after_key}, " if key else ""
    source = "todo_items\n        WHERE user_id = %(user_id)s"
    if tagged:
        source, position = _TAGGED, "(todo_tags.created_at, todo_tags.todo_id)"
    if searched:
        source = _SEARCHED.format(newest_first="true" if descending else "false")
    ordered = f"{sort}created_at{order}, id{order}"
    filters = FILTERS
    if tagged:
        filters = FILTERS.replace("%(tags)s", "%(more_tags)s")
        ordered = f"todo_tags.created_at{order}, todo_tags.todo_id{order}"
    return f"""\
SELECT coalesce((SELECT version FROM users WHERE id = %(user_id)s), 0),
       (json_agg(w.shown) FILTER (WHERE w.n <= %(limit)s))::text,
       count(*) FILTER (WHERE w.n <= %(limit)s),
       max(w.created_at_us) FILTER (WHERE w.n = %(limit)s),
       max(w.id::text) FILTER (WHERE w.n = %(limit)s),
       max(w.kept) FILTER (WHERE w.n = %(limit)s),
       count(*) > %(limit)s
FROM (
    SELECT row_to_json(ROW(id, user_id, title, description, is_completed, created_at,
                           updated_at, priority, due_at, tags, completed_at)::todo_v2)
               AS shown,
           (extract(epoch FROM created_at) * 1000000)::bigint AS created_at_us,
           id, kept, row_number() OVER () AS n
    FROM (
        SELECT todo_items.*, ({kept})::text AS kept
        FROM {source}{filters}
          AND (%(after_id)s::uuid IS NULL
               OR {position}
                  {beyond} ({cursor}%(after_created_at)s::timestamptz, %(after_id)s::uuid))
        ORDER BY {ordered}
        LIMIT %(limit)s + 1
    ) AS t
) AS w"""


# A todo without due_at goes last in both directions; a due_at is always a real instant.
# Spelt with CASE, as migration 0010's indexes are: under row-level security a cursor
# on `coalesce` is no index condition, and a later page walked every todo before it.
_SOONEST = "CASE WHEN due_at IS NULL THEN 'infinity'::timestamptz ELSE due_at END"
_LATEST = "CASE WHEN due_at IS NULL THEN '-infinity'::timestamptz ELSE due_at END"
_DUE_US = "(extract(epoch FROM due_at) * 1000000)::bigint"
_AFTER_DUE = "coalesce(%(after_key)s::timestamptz, '{}'::timestamptz)"
# The title's fold in code point order; a cursor keeps the title itself (at most 255
# characters, where its fold may be three times as long), and the service folds it.
_TITLE = 'title_folded COLLATE "C"'
_AFTER_TITLE = '%(after_key)s::text COLLATE "C"'

PAGE_NEWEST_FIRST = _page(None, descending=True)
PAGE_OLDEST_FIRST = _page(None, descending=False)
PAGE_TAGGED_NEWEST_FIRST = _page(None, descending=True, tagged=True)
PAGE_TAGGED_OLDEST_FIRST = _page(None, descending=False, tagged=True)
PAGE_SEARCHED_NEWEST_FIRST = _page(None, descending=True, searched=True)
PAGE_SEARCHED_OLDEST_FIRST = _page(None, descending=False, searched=True)
PAGE_DUE_SOONEST = _page(_SOONEST, False, _AFTER_DUE.format("infinity"), _DUE_US)
PAGE_DUE_LATEST = _page(_LATEST, True, _AFTER_DUE.format("-infinity"), _DUE_US)
PAGE_PRIORITY_LOWEST = _page("priority", False, "%(after_key)s::todo_priority", "priority")
PAGE_PRIORITY_HIGHEST = _page("priority", True, "%(after_key)s::todo_priority", "priority")
PAGE_TITLE_A_Z = _page(_TITLE, False, _AFTER_TITLE, "title")
PAGE_TITLE_Z_A = _page(_TITLE, True, _AFTER_TITLE, "title")


@dataclass(frozen=True, slots=True)
class Sort:
    """One order of a list: its statement, and what its key is made of again from what
    a cursor kept ("none", "instant", "priority" or "title")."""

    name: str
    statement_name: str
    key: str
    tagged_statement_name: str | None = None
    searched_statement_name: str | None = None

    @property
    def statement(self) -> str:
        # Read when sent, so the statement is the module's as it is then.
        text: str = globals()[self.statement_name]
        return text

    def statement_for(self, filters: "Filters") -> str:
        """The statement for a list with `filters`: found by todo_search_page when `q`
        is given, else read from todo_tags when a tag is, where this sort has such a
        statement."""
        if filters.words and self.searched_statement_name:
            text: str = globals()[self.searched_statement_name]
            return text
        if filters.tags and self.tagged_statement_name:
            tagged: str = globals()[self.tagged_statement_name]
            return tagged
        return self.statement

    def after_key(self, kept: str | None) -> Any:
        if kept is None or self.key == "none":
            return None
        if self.key == "instant":
            return _EPOCH + timedelta(microseconds=int(kept))
        return fold(kept) if self.key == "title" else kept


SORTS = {
    sort.name: sort
    for sort in (
        Sort(
            "-created_at",
            "PAGE_NEWEST_FIRST",
            "none",
            "PAGE_TAGGED_NEWEST_FIRST",
            "PAGE_SEARCHED_NEWEST_FIRST",
        ),
        Sort(
            "created_at",
            "PAGE_OLDEST_FIRST",
            "none",
            "PAGE_TAGGED_OLDEST_FIRST",
            "PAGE_SEARCHED_OLDEST_FIRST",
        ),
        Sort("due_at", "PAGE_DUE_SOONEST", "instant"),
        Sort("-due_at", "PAGE_DUE_LATEST", "instant"),
        Sort("priority", "PAGE_PRIORITY_LOWEST", "priority"),
        Sort("-priority", "PAGE_PRIORITY_HIGHEST", "priority"),
        Sort("title", "PAGE_TITLE_A_Z", "title"),
        Sort("-title", "PAGE_TITLE_Z_A", "title"),
    )
}


@dataclass(frozen=True, slots=True)
class Filters:
    """What a list asks of its todos; None (or empty) asks nothing."""

    completed: bool | None = None
    priorities: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    due_after: datetime | None = None
    due_before: datetime | None = None
    words: tuple[str, ...] = ()  # case-folded

    def values(self) -> dict[str, Any]:
        patterns = [f"%{_escaped(word)}%" for word in self.words]
        return {
            "completed": self.completed,
            "priorities": list(self.priorities) or None,
            "tags": list(self.tags) or None,
            "more_tags": list(self.tags[1:]) or None,
            "due_after": self.due_after,
            "due_before": self.due_before,
            "longest": max(patterns, key=len) if patterns else None,
            "words": patterns or None,
        }


def _escaped(word: str) -> str:
    """`word` as LIKE reads it literally: `\\`, `%` and `_` are ordinary characters."""
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def parameters(
    user: UserId, sort: Sort, filters: Filters, limit: int, after: Position | None
) -> dict[str, Any]:
    """What `sort`'s statement for `filters` takes, for a page of `limit` after `after`."""
    return {
        "user_id": str(user),
        "limit": limit,
        "after_created_at": None if after is None else after.created_at,
        "after_id": None if after is None else str(after.todo_id),
        "after_key": None if after is None else sort.after_key(after.key),
        **filters.values(),
    }


async def page(
    db: Database,
    user: UserId,
    sort: Sort,
    filters: Filters,
    limit: int,
    after: Position | None,
) -> Items:
    """`limit` of the caller's todos that meet `filters`, in `sort`'s order, after
    `after` (from the start when None). A todo's place only changes with its sort key,
    so a walk through the pages meets every todo that exists throughout it with an
    unchanged key exactly once."""
    rows = await db.fetch(
        user, sort.statement_for(filters), parameters(user, sort, filters, limit, after)
    )
    version, items, count, last_at, last_id, last_key, more = rows[0]
    last = Position(last_at, uuid.UUID(last_id), last_key) if more else None
    return Items(version, items or "[]", count, last)
