"""A 2.0 list's query parameters into its filters, sort and page, or one 422 naming
every parameter out of its domain (FR-201 to FR-203). A single-valued parameter given
twice is refused, as FR-108 refuses any ambiguity; parameters the contract does not
name are ignored by a list, as in 1.x, and refused by a bulk write."""

from dataclasses import dataclass
from datetime import datetime

from starlette.datastructures import QueryParams

from service import cursors
from service.errors import FieldError, validation_failed
from service.models import PRIORITIES, TAGS_MAX, fold, instant, tag_problem
from service.parsing import PAGE_LIMIT_MAX, parse_limit
from service.store import Position
from service.store.lists import SORTS, Filters, Sort

PAGE_DEFAULT = 50
Q_MAX = 100
_BOOLEANS = {"true": True, "false": False}


@dataclass(frozen=True, slots=True)
class ListRequest:
    """A list asked for: its order, its filters, and a page of it."""

    sort: Sort
    filters: Filters
    limit: int
    after: Position | None
    # The digest of filters and sort that this list's cursors carry.
    bound: bytes


class _Errors(list[FieldError]):
    def once(self, query: QueryParams, name: str) -> str | None:
        values = query.getlist(name)
        if len(values) > 1:
            self.append(FieldError(name, "must be given once"))
            return None
        return values[0] if values else None


def _instant(errors: _Errors, query: QueryParams, name: str) -> datetime | None:
    text = errors.once(query, name)
    if text is None:
        return None
    try:
        return instant(text)
    except ValueError as invalid:
        errors.append(FieldError(name, str(invalid)))
        return None


def _words(errors: _Errors, query: QueryParams) -> tuple[str, ...]:
    q = errors.once(query, "q")
    if q is None:
        return ()
    if not 1 <= len(q) <= Q_MAX or "\x00" in q:
        errors.append(FieldError("q", f"must be 1 to {Q_MAX} characters, without U+0000"))
        return ()
    return tuple(fold(word) for word in q.split())


def _priorities(errors: _Errors, query: QueryParams) -> tuple[str, ...]:
    given = query.getlist("priority")
    if len(given) > len(PRIORITIES):
        errors.append(FieldError("priority", f"must be given at most {len(PRIORITIES)} times"))
        return ()
    if any(p not in PRIORITIES for p in given):
        errors.append(FieldError("priority", f"must each be one of: {', '.join(PRIORITIES)}"))
        return ()
    return tuple(p for p in PRIORITIES if p in given)


def _tags(errors: _Errors, query: QueryParams) -> tuple[str, ...]:
    given = query.getlist("tag")
    if len(given) > TAGS_MAX:
        errors.append(FieldError("tag", f"must be given at most {TAGS_MAX} times"))
        return ()
    for tag in given:
        if (problem := tag_problem(tag)) is not None:
            errors.append(FieldError("tag", f"must each be a tag: {problem}"))
            return ()
    return tuple(sorted(set(given)))


def _filters(errors: _Errors, query: QueryParams) -> Filters:
    completed_text = errors.once(query, "completed")
    completed = None
    if completed_text is not None:
        completed = _BOOLEANS.get(completed_text)
        if completed is None:
            errors.append(FieldError("completed", "must be true or false"))
    return Filters(
        completed=completed,
        priorities=_priorities(errors, query),
        tags=_tags(errors, query),
        due_after=_instant(errors, query, "due_after"),
        due_before=_instant(errors, query, "due_before"),
        words=_words(errors, query),
    )


def parse_list(query: QueryParams, cursor_key: bytes) -> ListRequest:
    errors = _Errors()
    filters = _filters(errors, query)
    # Absent is the default; given, even empty, it must name a sort.
    sort_given = errors.once(query, "sort")
    sort_name = "-created_at" if sort_given is None else sort_given
    sort = SORTS.get(sort_name)
    if sort is None:
        errors.append(FieldError("sort", f"must be one of: {', '.join(SORTS)}"))
    limit_text = errors.once(query, "limit")
    limit = PAGE_DEFAULT
    if limit_text is not None:
        limit = parse_limit(limit_text) or 0
        if not limit:
            errors.append(FieldError("limit", f"must be a whole number from 1 to {PAGE_LIMIT_MAX}"))
    bound = cursors.binding(sort_name, filters)
    cursor = errors.once(query, "cursor")
    after = None
    if cursor is not None:
        after = cursors.decode_v2(cursor_key, cursor, bound)
        if after is None:
            errors.append(
                FieldError(
                    "cursor",
                    "is not a cursor this service handed out (next_cursor) for these"
                    " filters and this sort",
                )
            )
    if errors or sort is None:
        raise validation_failed(errors)
    return ListRequest(sort, filters, limit, after, bound)


_FILTER_NAMES = ("completed", "priority", "tag", "due_after", "due_before", "q")
_EVERY = "all"
_LIST_ONLY = ("sort", "limit", "cursor")


def bulk_filters(query: QueryParams) -> tuple[Filters, list[FieldError]]:
    """A bulk write's filters, parsed as a list's, and what is wrong with the query
    (FR-213). Unlike a list, a bulk write refuses any parameter it does not take: a
    misspelt filter must never widen a write. Without a filter it needs `all=true`."""
    errors = _Errors()
    filters = _filters(errors, query)
    for name in dict.fromkeys(query.keys()):
        if name in _LIST_ONLY:
            errors.append(FieldError(name, "orders or pages a list; a bulk write takes none"))
        elif name not in _FILTER_NAMES and name != _EVERY:
            accepted = ", ".join((*_FILTER_NAMES, _EVERY))
            errors.append(FieldError(name, f"is not a parameter of a bulk write ({accepted})"))
    given = query.getlist("q")
    if len(given) == 1 and given[0] and not given[0].split():
        # A list takes it for no filter; a bulk write would then reach every todo.
        errors.append(FieldError("q", "must hold a word: spaces alone filter nothing"))
    every = errors.once(query, _EVERY)
    if every is not None and every != "true":
        errors.append(FieldError(_EVERY, "must be true, to mean every todo"))
    elif _EVERY not in query and not any(name in query for name in _FILTER_NAMES):
        filters_named = ", ".join(_FILTER_NAMES)
        errors.append(FieldError(_EVERY, f"must be true when no filter ({filters_named}) is given"))
    return filters, errors
