"""SQLModel shapes of what a client sends: the shared fields, then create and update.

They validate strictly: JSON types are not coerced, unknown fields are refused. The
schema itself is the migrations'; the store reads and writes it in SQL."""

from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, StringConstraints
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


class TodoUpdate(SQLModel):
    """Absent fields stay unchanged; the defaults are never validated, so an explicit
    `null` for title or is_completed is still refused."""

    model_config = _STRICT  # type: ignore[assignment]

    title: Title = Field(default=None)
    description: Description | None = Field(default=None)
    is_completed: bool = Field(default=None)

    def changes(self) -> dict[str, Any]:
        return self.model_dump(include=self.model_fields_set)
