"""SQLModel shapes of a todo: shared fields, the request and response shapes, the tables.

Request shapes validate strictly (JSON types are not coerced, unknown fields are
refused); the tables mirror the migrations, which are the schema's source of truth.
"""

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, StringConstraints
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    LargeBinary,
    String,
    Text,
    false,
    func,
)
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
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


# The contract's title pattern uses `\s`, which is ECMA-262's whitespace, not Python's
# (str.isspace also counts U+001C..U+001F and U+0085, and leaves out U+FEFF).
_SPEC_WHITESPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)


def _not_blank(value: str) -> str:
    if not value.strip(_SPEC_WHITESPACE):
        raise ValueError("must contain at least one character that is not whitespace")
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


class TodoPublic(TodoBase):
    id: uuid.UUID
    user_id: uuid.UUID
    is_completed: bool
    created_at: datetime
    updated_at: datetime


def _timestamp() -> Any:
    return Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now())
    )


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: uuid.UUID = Field(sa_column=Column(PG_UUID(as_uuid=True), primary_key=True))
    created_at: datetime = _timestamp()
    # The token's (issuer, subject) in `jwt` mode; NULL in `header` mode.
    issuer: str | None = Field(default=None, sa_column=Column(Text))
    subject: str | None = Field(default=None, sa_column=Column(Text))
    # Bumped by every write to the user's todos: the list's entity tag.
    version: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default="0")
    )


class Todo(TodoBase, table=True):
    __tablename__ = "todos"

    id: uuid.UUID = Field(
        sa_column=Column(
            PG_UUID(as_uuid=True), primary_key=True, server_default=func.gen_random_uuid()
        )
    )
    user_id: uuid.UUID = Field(
        sa_column=Column(
            PG_UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        )
    )
    title: str = Field(sa_column=Column(String(TITLE_MAX), nullable=False))
    description: str | None = Field(default=None, sa_column=Column(String(DESCRIPTION_MAX)))
    is_completed: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=false())
    )
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class IdempotencyKey(SQLModel, table=True):
    """A POST's Idempotency-Key with its request's fingerprint and the response given."""

    __tablename__ = "idempotency_keys"

    user_id: uuid.UUID = Field(sa_column=Column(PG_UUID(as_uuid=True), primary_key=True))
    key: str = Field(sa_column=Column(String(255), primary_key=True))
    fingerprint: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    todo_id: uuid.UUID = Field(sa_column=Column(PG_UUID(as_uuid=True), nullable=False))
    body: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _timestamp()


class SigningKey(SQLModel, table=True):
    """Server-side secrets, by purpose (`cursor`: the page cursors' MAC key)."""

    __tablename__ = "signing_keys"

    purpose: str = Field(sa_column=Column(Text, primary_key=True))
    secret: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
