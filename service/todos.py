"""The data layer. Every function takes the caller's user id and restricts every
statement on todos to it; each runs in one transaction from `Database.transaction`."""

import uuid
from typing import Any

from sqlalchemy import delete, func, insert, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from service.db import Database
from service.identity import UserId
from service.models import Todo, TodoCreate, TodoUpdate, User

_todos = Todo.__table__  # type: ignore[attr-defined]
_users = User.__table__  # type: ignore[attr-defined]
_COLUMNS = (
    _todos.c.id,
    _todos.c.user_id,
    _todos.c.title,
    _todos.c.description,
    _todos.c.is_completed,
    _todos.c.created_at,
    _todos.c.updated_at,
)

Row = dict[str, Any]


def create(db: Database, user: UserId, data: TodoCreate) -> Row:
    # The user's row is made on their first write, in the same statement.
    new_user = pg_insert(_users).values(id=user).on_conflict_do_nothing().cte("new_user")
    statement = (
        insert(_todos)
        .add_cte(new_user)
        .values(user_id=user, title=data.title, description=data.description)
        .returning(*_COLUMNS)
    )
    with db.transaction() as conn:
        return dict(conn.execute(statement).one()._mapping)


def list_all(db: Database, user: UserId) -> list[Row]:
    statement = (
        select(*_COLUMNS)
        .where(_todos.c.user_id == user)
        .order_by(_todos.c.created_at.desc(), _todos.c.id.desc())
    )
    with db.transaction() as conn:
        return [dict(row._mapping) for row in conn.execute(statement)]


def get(db: Database, user: UserId, todo_id: uuid.UUID) -> Row | None:
    statement = select(*_COLUMNS).where(_todos.c.user_id == user, _todos.c.id == todo_id)
    with db.transaction() as conn:
        row = conn.execute(statement).one_or_none()
    return None if row is None else dict(row._mapping)


def patch(db: Database, user: UserId, todo_id: uuid.UUID, changes: TodoUpdate) -> Row | None:
    # Strictly forward even if two updates share a clock tick or the clock steps back.
    updated_at = func.greatest(
        func.now(), _todos.c.updated_at + literal_column("interval '1 microsecond'")
    )
    statement = (
        update(_todos)
        .where(_todos.c.user_id == user, _todos.c.id == todo_id)
        .values(**changes.changes(), updated_at=updated_at)
        .returning(*_COLUMNS)
    )
    with db.transaction() as conn:
        row = conn.execute(statement).one_or_none()
    return None if row is None else dict(row._mapping)


def remove(db: Database, user: UserId, todo_id: uuid.UUID) -> bool:
    statement = (
        delete(_todos)
        .where(_todos.c.user_id == user, _todos.c.id == todo_id)
        .returning(_todos.c.id)
    )
    with db.transaction() as conn:
        return conn.execute(statement).one_or_none() is not None
