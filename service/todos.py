"""The data layer. Every function takes the caller's user id, restricts every statement
on todos to it (the first wall; the row-level policies are the second), and sends one
statement in one round trip through `Database.scope`.

PostgreSQL writes each todo's JSON itself (`_AS_JSON`): the hot paths hydrate no ORM
objects and encode nothing in Python, and every answer spells a todo the same way."""

import uuid

from sqlalchemy import (
    ColumnElement,
    Text,
    cast,
    delete,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert

from service.db import Database
from service.identity import UserId
from service.models import Todo, TodoCreate, TodoUpdate, User

_todos = Todo.__table__  # type: ignore[attr-defined]
_users = User.__table__  # type: ignore[attr-defined]


def _rfc3339(column: ColumnElement[object]) -> ColumnElement[str]:
    # Pinned to UTC with a fixed six-digit fraction, whatever the session's TimeZone.
    return func.to_char(
        func.timezone("UTC", column), literal_column("""'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'""")
    )


_AS_JSON = cast(
    func.json_build_object(
        "id", _todos.c.id,
        "user_id", _todos.c.user_id,
        "title", _todos.c.title,
        "description", _todos.c.description,
        "is_completed", _todos.c.is_completed,
        "created_at", _rfc3339(_todos.c.created_at),
        "updated_at", _rfc3339(_todos.c.updated_at),
    ),
    Text,
)  # fmt: skip


def _mine(user: UserId) -> ColumnElement[bool]:
    mine: ColumnElement[bool] = _todos.c.user_id == user
    return mine


def create(db: Database, user: UserId, data: TodoCreate) -> tuple[uuid.UUID, str]:
    """The new todo's id and JSON. The user's row is made on their first write, in the
    same statement."""
    new_user = pg_insert(_users).values(id=user).on_conflict_do_nothing().cte("new_user")
    statement = (
        insert(_todos)
        .add_cte(new_user)
        .values(user_id=user, title=data.title, description=data.description)
        .returning(_todos.c.id, _AS_JSON)
    )
    with db.scope(user) as conn:
        todo_id, body = conn.execute(statement).one()
    return todo_id, body


def list_all(db: Database, user: UserId) -> list[str]:
    """The user's todos as JSON, newest first (the index's order)."""
    statement = (
        select(_AS_JSON).where(_mine(user)).order_by(_todos.c.created_at.desc(), _todos.c.id.desc())
    )
    with db.scope(user) as conn:
        return list(conn.execute(statement).scalars())


def get(db: Database, user: UserId, todo_id: uuid.UUID) -> str | None:
    statement = select(_AS_JSON).where(_mine(user), _todos.c.id == todo_id)
    with db.scope(user) as conn:
        return conn.execute(statement).scalar_one_or_none()


def patch(db: Database, user: UserId, todo_id: uuid.UUID, changes: TodoUpdate) -> str | None:
    # Strictly forward even if two updates share a clock tick or the clock steps back.
    updated_at = func.greatest(
        func.now(), _todos.c.updated_at + literal_column("interval '1 microsecond'")
    )
    statement = (
        update(_todos)
        .where(_mine(user), _todos.c.id == todo_id)
        .values(**changes.changes(), updated_at=updated_at)
        .returning(_AS_JSON)
    )
    with db.scope(user) as conn:
        return conn.execute(statement).scalar_one_or_none()


def remove(db: Database, user: UserId, todo_id: uuid.UUID) -> bool:
    statement = delete(_todos).where(_mine(user), _todos.c.id == todo_id).returning(_todos.c.id)
    with db.scope(user) as conn:
        return conn.execute(statement).scalar_one_or_none() is not None
