"""SQLModel shapes of what a client sends: the shared fields, then create and update.

They validate strictly: JSON types are not coerced, unknown fields are refused. The
schema itself is the migrations'; the store reads and writes it in SQL."""

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    StringConstraints,
    model_validator,
)
from sqlmodel import Field, SQLModel

TITLE_MAX = 255
DESCRIPTION_MAX = 2000


def _storable(value: str) -> str:
    # PostgreSQL text cannot hold U+0000, and UTF-8 cannot encode a lone surrogate.
    if "\x00" in value:
        raise ValueError("must not contain the character U+0000")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must not contain unpaired surrogate characters") from None
    return value


# A title must have something to see. Whitespace is what the contract's pattern means by
# `\s` (ECMA-262's, not Python's: str.isspace also counts U+001C..U+001F and U+0085,
# and leaves out U+FEFF). Invisible are the Basic Multilingual Plane's other
# default-ignorable code points (Unicode's "not shown unless specially"): zero-width
# spaces and joiners, bidirectional marks, variation selectors, fillers. The contract's
# Title pattern lists the same characters.
_WHITESPACE = frozenset(
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_INVISIBLE = frozenset(
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u3164\uffa0"
    + "".join(map(chr, range(0x180B, 0x1810)))
    + "".join(map(chr, range(0x200B, 0x2010)))
    + "".join(map(chr, range(0x202A, 0x202F)))
    + "".join(map(chr, range(0x2060, 0x2070)))
    + "".join(map(chr, range(0xFE00, 0xFE10)))
    + "".join(map(chr, range(0xFFF0, 0xFFF9)))
)
_BLANK = _WHITESPACE | _INVISIBLE


def _not_blank(value: str) -> str:
    if _WHITESPACE.issuperset(value):
        raise ValueError("must contain at least one character that is not whitespace")
    if _BLANK.issuperset(value):
        raise ValueError(
            "must contain at least one visible character: whitespace and invisible"
            " formatting characters (such as U+200B ZERO WIDTH SPACE) do not count"
        )
    return value


Title = Annotated[
    str,
    StringConstraints(max_length=TITLE_MAX),
    AfterValidator(_storable),
    AfterValidator(_not_blank),
]
Description = Annotated[
    str, StringConstraints(max_length=DESCRIPTION_MAX), AfterValidator(_storable)
]

_STRICT = ConfigDict(strict=True, extra="forbid")


class TodoBase(SQLModel):
    title: Title = Field(max_length=TITLE_MAX)
    description: Description | None = Field(default=None, max_length=DESCRIPTION_MAX)


class TodoCreate(TodoBase):
    model_config = _STRICT  # type: ignore[assignment]


class _AtLeastOne(SQLModel):
    """A partial update: absent members stay as they are, and at least one must be
    given (the model's own rule, which the parser reports like any other)."""

    @model_validator(mode="after")
    def _changes_something(self) -> Self:
        if not self.model_fields_set:
            raise ValueError(f"must set at least one of: {', '.join(type(self).model_fields)}")
        return self

    def changes(self) -> dict[str, Any]:
        return self.model_dump(include=self.model_fields_set)


class TodoUpdate(_AtLeastOne):
    """Absent fields stay unchanged; the defaults are never validated, so an explicit
    `null` for title or is_completed is still refused."""

    model_config = _STRICT  # type: ignore[assignment]

    title: Title = Field(default=None)
    description: Description | None = Field(default=None)
    is_completed: bool = Field(default=None)


def fold(text: str) -> str:
    """Unicode's full case folding, which `q` and the `title` sort compare by: computed
    here, so that no database collation changes what matches (`É` is `é`, `ß` is `ss`).
    Migration 0007's `todo_fold` is its twin for rows a 1.x build writes."""
    return text.casefold()


TAG_MAX = 32
TAGS_MAX = 10
PRIORITIES = ("none", "low", "medium", "high")
Priority = Literal["none", "low", "medium", "high"]
# Unicode's control characters (general category Cc).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# RFC 3339's date-time: an explicit offset (Z or ±hh:mm) is required.
_INSTANT = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]([0-9]{2}:[0-9]{2}:[0-9]{2})"
    r"(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def tag_problem(value: str) -> str | None:
    """Why `value` is no tag, or None when it is one."""
    if not 1 <= len(value) <= TAG_MAX:
        return f"must be 1 to {TAG_MAX} characters"
    if _CONTROL.search(value):
        return "must not contain control characters"
    if value[0] in _WHITESPACE or value[-1] in _WHITESPACE:
        return "must not begin or end with whitespace"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must not contain unpaired surrogate characters"
    return None


def _tag(value: str) -> str:
    if (problem := tag_problem(value)) is not None:
        raise ValueError(problem)
    return value


def _distinct(values: list[str]) -> list[str]:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"must not repeat a tag ({value!r} comes twice)")
        seen.add(value)
    return values


def instant(value: object) -> datetime:
    """An RFC 3339 timestamp with an explicit offset, as an aware datetime."""
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError(
            "must be an RFC 3339 timestamp with an offset, such as 2026-12-04T17:00:00Z"
        )
    found = _INSTANT.fullmatch(value)
    if found is None:
        raise ValueError(
            "must be an RFC 3339 timestamp with an explicit offset (Z or +hh:mm),"
            " such as 2026-12-04T17:00:00Z"
        )
    day, time, fraction, offset = found.groups()
    offset = "+00:00" if offset in ("Z", "z") else offset
    try:
        given = datetime.fromisoformat(f"{day}T{time}{(fraction or '')[:7]}{offset}")
        return given.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError("must be a date and time that exist, with an offset") from None


Tag = Annotated[str, AfterValidator(_tag)]
Tags = Annotated[list[Tag], Field(max_length=TAGS_MAX), AfterValidator(_distinct)]
DueAt = Annotated[datetime, BeforeValidator(instant)]


class TodoCreateV2(TodoBase):
    model_config = _STRICT  # type: ignore[assignment]

    priority: Priority = "none"
    due_at: DueAt | None = None
    tags: Tags = Field(default_factory=list)


class TodoUpdateV2(_AtLeastOne):
    """As TodoUpdate, and 2.0's members: `due_at: null` clears it; `priority` and
    `tags` may not be null."""

    model_config = _STRICT  # type: ignore[assignment]

    title: Title = Field(default=None)
    description: Description | None = Field(default=None)
    is_completed: bool = Field(default=None)
    priority: Priority = Field(default=None)
    due_at: DueAt | None = Field(default=None)
    tags: Tags = Field(default=None)


class TodoBulkUpdate(_AtLeastOne):
    """What a bulk PATCH may set on every todo it matches: TodoUpdateV2's members that
    make sense for many todos at once, validated alike."""

    model_config = _STRICT  # type: ignore[assignment]

    is_completed: bool = Field(default=None)
    priority: Priority = Field(default=None)
    due_at: DueAt | None = Field(default=None)
