"""The data layer. Every function takes the caller's user id, restricts every statement
on todos to it (the first wall; the row-level policies are the second), and sends one
statement in one round trip through `Database.scope`.

The statements are written with SQLAlchemy Core and compiled once, at import: a
request neither builds nor compiles SQL. PostgreSQL writes the JSON itself (`_TODO`),
lists included, so the hot paths hydrate no ORM objects and encode nothing in Python,
and every answer spells a todo the same way."""

import uuid
from collections.abc import Generator
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Text,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.elements import BindParameter

from service.db import Database
from service.identity import UserId
from service.models import Todo, TodoCreate, TodoUpdate, User

_todos = Todo.__table__  # type: ignore[attr-defined]
_users = User.__table__  # type: ignore[attr-defined]
_DIALECT = postgresql.psycopg2.dialect()  # type: ignore[no-untyped-call]
_UPDATABLE = ("title", "description", "is_completed")

# Lists up to this long are built whole by PostgreSQL in one round trip; longer ones are
# streamed in batches this size, so memory stays flat however many todos a user has.
WHOLE_LIST_LIMIT = 2000


def _literal(text: str) -> ColumnElement[str]:
    # Constants are written into the SQL, so the only parameters are the request's.
    return literal_column(f"'{text}'")


def _rfc3339(column: ColumnElement[Any]) -> ColumnElement[str]:
    # Pinned to UTC with a fixed six-digit fraction, whatever the session's TimeZone.
    return func.to_char(
        func.timezone(_literal("UTC"), column), _literal('YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
    )


_TODO = func.json_build_object(
    _literal("id"), _todos.c.id,
    _literal("user_id"), _todos.c.user_id,
    _literal("title"), _todos.c.title,
    _literal("description"), _todos.c.description,
    _literal("is_completed"), _todos.c.is_completed,
    _literal("created_at"), _rfc3339(_todos.c.created_at),
    _literal("updated_at"), _rfc3339(_todos.c.updated_at),
)  # fmt: skip
_AS_TEXT = cast(_TODO, Text)


def _sql(statement: ClauseElement) -> str:
    return str(statement.compile(dialect=_DIALECT))


@dataclass(frozen=True)
class Statements:
    """Each operation's SQL, with parameters user_id, todo_id and new_<field>; patch has
    one statement per set of fields. `mine` is the application's user filter."""

    create: str
    list_all: str
    stream_all: str
    get: str
    patch: dict[frozenset[str], str]
    remove: str

    @classmethod
    def build(cls, mine: ColumnElement[bool]) -> "Statements":
        user: BindParameter[str] = bindparam("user_id")
        todo: BindParameter[str] = bindparam("todo_id")
        one = (mine, _todos.c.id == todo)
        new_user = pg_insert(_users).values(id=user).on_conflict_do_nothing().cte("new_user")
        newest_first = (_todos.c.created_at.desc(), _todos.c.id.desc())
        # Strictly forward even if two updates share a clock tick or the clock steps back.
        updated_at = func.greatest(
            func.now(), _todos.c.updated_at + literal_column("interval '1 microsecond'")
        )
        return cls(
            create=_sql(
                insert(_todos)
                .add_cte(new_user)
                .values(
                    user_id=user,
                    title=bindparam("new_title"),
                    description=bindparam("new_description"),
                )
                .returning(_todos.c.id, _AS_TEXT)
            ),
            list_all=_whole_list(mine, newest_first),
            stream_all=_sql(select(_AS_TEXT).where(mine).order_by(*newest_first)),
            get=_sql(select(_AS_TEXT).where(*one)),
            patch={
                frozenset(fields): _sql(
                    update(_todos)
                    .where(*one)
                    .values(
                        {**{f: bindparam(f"new_{f}") for f in fields}, "updated_at": updated_at}
                    )
                    .returning(_AS_TEXT)
                )
                for size in range(1, len(_UPDATABLE) + 1)
                for fields in combinations(_UPDATABLE, size)
            },
            remove=_sql(delete(_todos).where(*one).returning(_todos.c.id)),
        )


def _whole_list(mine: ColumnElement[bool], newest_first: tuple[Any, ...]) -> str:
    """The whole response body, or NULL when the user has more than WHOLE_LIST_LIMIT."""
    page = (
        select(_TODO.label("todo"), _todos.c.created_at, _todos.c.id)
        .where(mine)
        .order_by(*newest_first)
        .limit(literal_column(str(WHOLE_LIST_LIMIT + 1)))
        .subquery("page")
    )
    items = func.json_agg(
        aggregate_order_by(page.c.todo, page.c.created_at.desc(), page.c.id.desc())
    )
    body = func.json_build_object(
        _literal("items"),
        func.coalesce(items, literal_column("'[]'::json")),
        _literal("count"),
        func.count(),
    )
    too_long = func.count() > literal_column(str(WHOLE_LIST_LIMIT))
    return _sql(select(case((too_long, None), else_=cast(body, Text))).select_from(page))


STATEMENTS = Statements.build(_todos.c.user_id == bindparam("user_id"))


def _one(db: Database, user: UserId, statement: str, params: dict[str, Any]) -> Any:
    rows = db.fetch(user, statement, {"user_id": str(user), **params})
    return rows[0] if rows else None


def create(db: Database, user: UserId, data: TodoCreate) -> tuple[str, str]:
    """The new todo's id and JSON. The user's row is made on their first write, in the
    same statement."""
    params = {"new_title": data.title, "new_description": data.description}
    todo_id, body = _one(db, user, STATEMENTS.create, params)
    return str(todo_id), str(body)


def list_all(db: Database, user: UserId) -> str | None:
    """The user's todos as the whole response body, newest first (the index's order);
    None when there are more than WHOLE_LIST_LIMIT: stream them with `stream_all`."""
    body: str | None = _one(db, user, STATEMENTS.list_all, {})[0]
    return body


def stream_all(db: Database, user: UserId) -> Generator[str, None, None]:
    """The same body as `list_all`, in pieces, from one snapshot. The first piece is
    made only once the cursor is open, so an outage surfaces before anything is sent."""
    batches = db.stream(user, STATEMENTS.stream_all, {"user_id": str(user)}, WHOLE_LIST_LIMIT)
    first = next(batches, [])
    count = len(first)
    yield '{"items":[' + ",".join(first)
    for batch in batches:
        yield "," + ",".join(batch)
        count += len(batch)
    yield f'],"count":{count}}}'


def get(db: Database, user: UserId, todo_id: uuid.UUID) -> str | None:
    row = _one(db, user, STATEMENTS.get, {"todo_id": str(todo_id)})
    return None if row is None else str(row[0])


def patch(db: Database, user: UserId, todo_id: uuid.UUID, changes: TodoUpdate) -> str | None:
    fields = changes.changes()
    params = {f"new_{f}": v for f, v in fields.items()}
    row = _one(db, user, STATEMENTS.patch[frozenset(fields)], {**params, "todo_id": str(todo_id)})
    return None if row is None else str(row[0])


def remove(db: Database, user: UserId, todo_id: uuid.UUID) -> bool:
    return _one(db, user, STATEMENTS.remove, {"todo_id": str(todo_id)}) is not None
