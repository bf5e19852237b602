"""The data layer. Every function takes the caller, restricts every statement on todos
(and on the caller's other rows) to them (the first wall; the row-level policies are the
second), and sends one statement in one round trip through `Database`.

The statements are written with SQLAlchemy Core and compiled once, at import: a
request neither builds nor compiles SQL. PostgreSQL writes the JSON itself: a todo is
`row_to_json` of its plain row, with timestamps in PostgreSQL's own RFC 3339 form (the
request context pins TimeZone to UTC), so every answer (one todo, a whole list, a
streamed list, a page, a replay) spells a todo with the same bytes.

Conditional writes, idempotent creates and pages are each one statement too: the check
and the write happen together, so no race slips between them. Every write bumps the
caller's list version in the same statement (migration 0004's triggers), so a
conditional read of the list asks that version first and reads the list only when it
changed."""

import hashlib
import uuid
from collections.abc import Generator
from dataclasses import dataclass
from itertools import combinations, count
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    FromClause,
    Text,
    any_,
    bindparam,
    cast,
    delete,
    exists,
    extract,
    false,
    func,
    insert,
    literal_column,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.selectable import NamedFromClause
from sqlalchemy.types import UserDefinedType

from service import cursors
from service.cursors import PageRequest
from service.db import Database
from service.errors import IdempotencyKeyReused, PreconditionFailed
from service.etags import Condition, item_tag, list_tag
from service.identity import Caller, UserId
from service.models import IdempotencyKey, Todo, TodoCreate, TodoUpdate, User

_todos = Todo.__table__  # type: ignore[attr-defined]
_users = User.__table__  # type: ignore[attr-defined]
_keys = IdempotencyKey.__table__  # type: ignore[attr-defined]
_DIALECT = postgresql.psycopg2.dialect()  # type: ignore[no-untyped-call]
_UPDATABLE = ("title", "description", "is_completed")
# The fields of a todo, in the contract's order: what `row_to_json` spells.
_FIELDS = ("id", "user_id", "title", "description", "is_completed", "created_at", "updated_at")

# Lists up to this long are built whole by PostgreSQL in one round trip; longer ones are
# streamed in batches this size, so memory stays flat however many todos a user has.
WHOLE_LIST_LIMIT = 2000
# json_agg's separator between elements; streamed lists write the same bytes.
ITEM_SEPARATOR = ", \n "
# How long an Idempotency-Key is remembered (the IETF draft leaves it to the server);
# migration 0004's sweep says the same.
KEY_LIFETIME: ColumnElement[Any] = literal_column("interval '24 hours'")
# Every 64th keyed create of a process (the first included) first deletes up to 256
# expired keys of any user (migration 0004's function, which runs as the owner): four
# for each key added, so the table stays bounded with no job, while the others skip the
# sweep's cost (about 1.4 ms, mostly planning its DELETE) and are sent without it. A
# statement of its own in the same round trip and transaction, so the claim sees the
# keys it swept as gone.
SWEEP_EVERY = 64
_SWEEP = "SELECT sweep_expired_idempotency_keys(256);\n"
_keyed_creates = count()


def _sql(statement: ClauseElement) -> str:
    return str(statement.compile(dialect=_DIALECT))


def _fields(source: FromClause) -> list[ColumnElement[Any]]:
    return [source.c[name] for name in _FIELDS]


def _as_json(row: NamedFromClause) -> ColumnElement[str]:
    return cast(func.row_to_json(row.table_valued()), Text)


# A todo row as JSON. The table's columns are exactly the contract's fields, in its
# order (tests/test_migrations.py holds the schema to that), so the whole row spells a
# todo with the same bytes as a row of `_fields`.
_THE_TODO = _as_json(_todos)


def _microseconds(column: ColumnElement[Any]) -> ColumnElement[int]:
    """A timestamp as whole microseconds since the epoch: exact (extract is numeric)."""
    return cast(extract("epoch", column) * literal_column("1000000"), BigInteger)


def _versions(name: str) -> ColumnElement[Any]:
    return any_(cast(bindparam(name), ARRAY(BigInteger)))


@dataclass(frozen=True)
class Statements:
    """Each operation's SQL, with parameters user_id, todo_id, new_<field> and the
    conditions' versions; patch has one statement per set of fields. `mine` is the
    application's user filter on todos."""

    create: str
    create_once: str
    replay: str
    list_version: str
    list_all: str
    stream_all: str
    first_page: str
    next_page: str
    get: str
    patch: dict[frozenset[str], str]
    patch_if: dict[frozenset[str], str]
    remove: str
    remove_if: str

    @classmethod
    def build(cls, mine: ColumnElement[bool]) -> "Statements":
        user: BindParameter[str] = bindparam("user_id")
        todo: BindParameter[str] = bindparam("todo_id")
        one = (mine, _todos.c.id == todo)
        newest_first = (_todos.c.created_at.desc(), _todos.c.id.desc())
        # Strictly forward even if two updates share a clock tick or the clock steps back.
        updated_at = func.greatest(
            func.now(), _todos.c.updated_at + literal_column("interval '1 microsecond'")
        )
        matches = _microseconds(_todos.c.updated_at) == _versions("if_match")
        after = tuple_(_todos.c.created_at, _todos.c.id) < tuple_(
            bindparam("after_created_at"), bindparam("after_id")
        )
        patches = [
            frozenset(fields)
            for size in range(1, len(_UPDATABLE) + 1)
            for fields in combinations(_UPDATABLE, size)
        ]
        return cls(
            create=_create(user),
            create_once=_create_once(user),
            replay=_replay(user),
            list_version=_sql(select(_version(user))),
            list_all=_whole_list(mine, newest_first),
            stream_all=_stream(mine, newest_first),
            first_page=_page(mine, newest_first, None),
            next_page=_page(mine, newest_first, after),
            get=_get(one),
            patch={f: _patch(one, f, updated_at, condition=None) for f in patches},
            patch_if={f: _patch(one, f, updated_at, condition=matches) for f in patches},
            remove=_remove(one, condition=None),
            remove_if=_remove(one, condition=matches),
        )


def _version(user: Any) -> ColumnElement[int]:
    """The caller's list version; 0 for a user who never wrote (no users row)."""
    found = select(_users.c.version).where(_users.c.id == user).scalar_subquery()
    return func.coalesce(found, literal_column("0"))


def _new_user(user: Any) -> Any:
    """The caller's users row, made on their first write with a token's (issuer,
    subject). (The triggers of migration 0004 bump its version.)"""
    row = {"id": user, "issuer": bindparam("issuer"), "subject": bindparam("subject")}
    return pg_insert(_users).values(row).on_conflict_do_nothing().cte("new_user")


def _create(user: Any) -> str:
    return _sql(
        insert(_todos)
        .add_cte(_new_user(user))
        .values(
            user_id=user,
            title=bindparam("new_title"),
            description=bindparam("new_description"),
        )
        .returning(_THE_TODO, _microseconds(_todos.c.updated_at), _todos.c.id)
    )


class _TodoRow(UserDefinedType[Any]):
    """The row type of `todos`, to spell a todo that is not yet stored as
    `row_to_json` will spell it once it is."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "todos"


def _create_once(user: Any) -> str:
    """A create under an Idempotency-Key. The key is claimed first, with the response
    the todo will have, and the todo (its id chosen by the service) is written only if
    the claim succeeded. A duplicate running at the same time waits on the key's row
    and then claims nothing, so two todos can never come of one key. A key that claims
    nothing was used before: `replay` reads what it answered then, or releases it if
    it has expired. (Releasing there rather than taking the key over here lets every
    claim be `DO NOTHING`, and a claim of plain values is cheaper than one selected
    from a derived row: with the sweep sent only when due, +15-19% at the database,
    measured with pgbench.)"""
    todo_id: BindParameter[str] = bindparam("todo_id")
    title: BindParameter[str] = bindparam("new_title")
    description: BindParameter[str] = bindparam("new_description")
    now = func.now()
    # The todo as it will be stored (the columns' defaults give the rest, at the same
    # transaction time), field by field in the table's order.
    stored = {
        "id": todo_id,
        "user_id": user,
        "title": title,
        "description": description,
        "is_completed": false(),
        "created_at": now,
        "updated_at": now,
    }
    todo = tuple_(*(stored[name] for name in _FIELDS))
    claim = (
        pg_insert(_keys)
        .values(
            user_id=user,
            key=bindparam("key"),
            fingerprint=bindparam("fingerprint"),
            todo_id=todo_id,
            body=cast(func.row_to_json(cast(todo, _TodoRow())), Text),
        )
        .on_conflict_do_nothing(index_elements=[_keys.c.user_id, _keys.c.key])
        .returning(_keys.c.todo_id, _keys.c.body)
        .cte("claim")
    )
    created = (
        insert(_todos)
        .from_select(
            ["id", "user_id", "title", "description"],
            select(claim.c.todo_id, user, title, description).select_from(claim),
        )
        .cte("created")
    )
    return _sql(
        select(claim.c.body, _microseconds(now), claim.c.todo_id)
        .add_cte(claim)
        .add_cte(_new_user(user))
        .add_cte(created)
    )


def _replay(user: Any) -> str:
    """The answer an unexpired key was given, and the request it was given for. An
    expired key is deleted in the same statement and not read, so nothing comes back
    and the next claim of that key creates afresh."""
    the_key = (_keys.c.user_id == user, _keys.c.key == bindparam("key"))
    expiry = func.now() - KEY_LIFETIME
    released = delete(_keys).where(*the_key, _keys.c.created_at <= expiry).cte("released")
    return _sql(
        select(
            _keys.c.todo_id, _keys.c.body, _microseconds(_keys.c.created_at), _keys.c.fingerprint
        )
        .where(*the_key, _keys.c.created_at > expiry)
        .add_cte(released)
    )


def _whole_list(mine: ColumnElement[bool], newest_first: tuple[Any, ...]) -> str:
    """The list version, the items (json_agg's array) and their count, of at most
    WHOLE_LIST_LIMIT + 1 todos: one more means the list is streamed instead."""
    user: BindParameter[str] = bindparam("user_id")
    rows = (
        select(*_fields(_todos))
        .where(mine)
        .order_by(*newest_first)
        .limit(literal_column(str(WHOLE_LIST_LIMIT + 1)))
        .subquery("t")
    )
    items = cast(func.json_agg(rows.table_valued()), Text)
    return _sql(select(_version(user), items, func.count()).select_from(rows))


def _stream(mine: ColumnElement[bool], newest_first: tuple[Any, ...]) -> str:
    rows = select(*_fields(_todos)).where(mine).order_by(*newest_first).subquery("t")
    return _sql(select(_as_json(rows), _version(bindparam("user_id"))).select_from(rows))


def _page(
    mine: ColumnElement[bool], newest_first: tuple[Any, ...], after: ColumnElement[bool] | None
) -> str:
    """The list version, and one page: its items (in json_agg's spelling), their
    count, the last item's position, and whether any todo follows it. One row more than
    the page is read to know."""
    user: BindParameter[str] = bindparam("user_id")
    limit: BindParameter[int] = bindparam("limit")
    rows = (
        select(*_fields(_todos))
        .where(mine, *(() if after is None else (after,)))
        .order_by(*newest_first)
        .limit(bindparam("limit_plus_one"))
        .subquery("t")
    )
    numbered = select(
        rows.table_valued().label("todo"), func.row_number().over().label("n")
    ).subquery("w")
    in_page = numbered.c.n <= limit
    last = numbered.c.n == limit
    page = select(
        cast(func.json_agg(numbered.c.todo).filter(in_page), Text).label("items"),
        func.count().filter(in_page).label("count"),
        func.max(_microseconds(literal_column("(w.todo).created_at"))).filter(last),
        func.max(cast(literal_column("(w.todo).id"), Text)).filter(last),
        (func.count() > limit).label("more"),
    ).subquery("page")
    return _sql(select(_version(user), *page.c))


def _get(one: tuple[ColumnElement[bool], ...]) -> str:
    return _sql(select(_THE_TODO, _microseconds(_todos.c.updated_at)).where(*one))


def _patch(
    one: tuple[ColumnElement[bool], ...],
    fields: frozenset[str],
    updated_at: ColumnElement[Any],
    condition: ColumnElement[bool] | None,
) -> str:
    changes = {**{f: bindparam(f"new_{f}") for f in fields}, "updated_at": updated_at}
    changed = (
        update(_todos)
        .where(*one, *(() if condition is None else (condition,)))
        .values(changes)
        .returning(_THE_TODO.label("todo"), _microseconds(_todos.c.updated_at).label("version"))
    )
    if condition is None:
        return _sql(changed)
    written = changed.cte("changed")
    return _found_or_not(written, [written.c.todo, written.c.version], one)


def _remove(one: tuple[ColumnElement[bool], ...], condition: ColumnElement[bool] | None) -> str:
    gone = (
        delete(_todos)
        .where(*one, *(() if condition is None else (condition,)))
        .returning(_todos.c.id)
    )
    if condition is None:
        return _sql(gone)
    written = gone.cte("gone")
    return _found_or_not(written, [written.c.id], one)


def _found_or_not(
    written: Any, outcome: list[ColumnElement[Any]], one: tuple[ColumnElement[bool], ...]
) -> str:
    """A conditional write's outcome, and whether the todo exists at all: a todo the
    caller cannot see is 404, and only a stale tag is 412."""
    found = exists(select(_todos.c.id).where(*one))
    return _sql(
        select(*outcome, found)
        .select_from(select(literal_column("1")).subquery("one"))
        .outerjoin(written, true())
        .add_cte(written)
    )


STATEMENTS = Statements.build(_todos.c.user_id == bindparam("user_id"))


@dataclass(frozen=True, slots=True)
class Entity:
    """A todo as answered: its JSON and its entity tag."""

    json: str
    etag: str


@dataclass(frozen=True, slots=True)
class Created(Entity):
    todo_id: str
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Listing:
    """A list (whole or one page) as answered. `json` is None when the condition
    matched (answer 304) or, for a whole list, when it is too long to build whole."""

    etag: str
    json: str | None
    not_modified: bool


def _params(user: UserId, **params: Any) -> dict[str, Any]:
    return {"user_id": str(user), **params}


async def _one(db: Database, user: UserId, statement: str, params: dict[str, Any]) -> Any:
    rows = await db.fetch(user, statement, _params(user, **params))
    return rows[0] if rows else None


def _new_todo(caller: Caller, data: TodoCreate) -> dict[str, Any]:
    """What every create binds: the todo, and who the caller's users row names."""
    return {
        "new_title": data.title,
        "new_description": data.description,
        "issuer": caller.issuer,
        "subject": caller.subject,
    }


def _created(row: Any) -> Created:
    body, version, todo_id = row
    return Created(str(body), item_tag(version), str(todo_id))


async def create(db: Database, caller: Caller, data: TodoCreate) -> Created:
    """The new todo. The caller's user row is made on their first write, in the same
    statement."""
    return _created(await _one(db, caller.id, STATEMENTS.create, _new_todo(caller, data)))


def _fingerprint(data: TodoCreate) -> bytes:
    """The request as the service understood it: the same todo asked for twice is the
    same request however its JSON was spelled."""
    return hashlib.sha256(orjson.dumps([data.title, data.description])).digest()


async def create_once(db: Database, caller: Caller, data: TodoCreate, key: str) -> Created:
    """A create under an Idempotency-Key: the first use creates, a retry with the same
    request within 24 hours gets the first answer again, another request under the same
    key is refused. Keys are the caller's own."""
    fingerprint = _fingerprint(data)
    params = {
        **_new_todo(caller, data),
        "key": key,
        "fingerprint": fingerprint,
        "todo_id": str(uuid.uuid4()),
    }
    sweeping = next(_keyed_creates) % SWEEP_EVERY == 0
    claim = _SWEEP + STATEMENTS.create_once if sweeping else STATEMENTS.create_once
    # Claiming nothing means the key was used: its answer is read in a new snapshot, which
    # sees a use that committed while the claim waited on it. Should that use have
    # expired, it is released (or was swept) meanwhile, and the key is free again: one
    # more try.
    for _ in range(2):
        claimed = await _one(db, caller.id, claim, params)
        if claimed is not None:
            return _created(claimed)
        earlier = await _one(db, caller.id, STATEMENTS.replay, {"key": key})
        if earlier is not None:
            break
    else:
        raise db.unavailable()
    earlier_id, earlier_body, version, earlier_print = earlier
    if bytes(earlier_print) != fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used for a different request; use a new key."
        )
    return Created(str(earlier_body), item_tag(version), str(earlier_id), replayed=True)


async def _unchanged(db: Database, user: UserId, if_none_match: Condition | None) -> str | None:
    """The list's entity tag when If-None-Match names it: one index lookup, and the list
    is never read. None when the list must be answered."""
    if if_none_match is None:
        return None
    (version,) = await _one(db, user, STATEMENTS.list_version, {})
    etag = list_tag(user, version)
    return etag if if_none_match.matches(etag, weak_comparison=True) else None


async def list_all(db: Database, user: UserId, if_none_match: Condition | None = None) -> Listing:
    """The user's todos as the whole response body, newest first (the index's order),
    unless If-None-Match names the current version; `json` is None, and not
    `not_modified`, when there are more than WHOLE_LIST_LIMIT: stream them."""
    if (unchanged := await _unchanged(db, user, if_none_match)) is not None:
        return Listing(unchanged, None, True)
    version, items, count = await _one(db, user, STATEMENTS.list_all, {})
    etag = list_tag(user, version)
    if count > WHOLE_LIST_LIMIT:
        return Listing(etag, None, False)
    return Listing(etag, '{"items":' + (items or "[]") + f',"count":{count}}}', False)


def stream_all(db: Database, user: UserId) -> tuple[str, Generator[str, None, None]]:
    """The list's entity tag and the same body as `list_all`, in pieces, from one
    snapshot. The cursor is open and the first batch read before this returns, so an
    outage surfaces before anything is sent."""
    batches = db.stream(user, STATEMENTS.stream_all, _params(user), WHOLE_LIST_LIMIT)
    first = next(batches, [])
    version = first[0][1] if first else 0

    def pieces() -> Generator[str, None, None]:
        count = len(first)
        yield '{"items":[' + ITEM_SEPARATOR.join(row[0] for row in first)
        for batch in batches:
            yield ITEM_SEPARATOR + ITEM_SEPARATOR.join(row[0] for row in batch)
            count += len(batch)
        yield f'],"count":{count}}}'

    return list_tag(user, version), pieces()


@dataclass(frozen=True, slots=True)
class Page(Listing):
    next_cursor: str | None


async def page(
    db: Database,
    user: UserId,
    request: PageRequest,
    cursor_key: bytes,
    if_none_match: Condition | None = None,
) -> Page:
    """`request.limit` todos after `request.after` (from the start when None), newest
    first, and the cursor where the next page starts. A todo's place in the order never
    changes, so a walk through the pages meets every todo that exists throughout it
    exactly once, whatever is created or deleted meanwhile."""
    if (unchanged := await _unchanged(db, user, if_none_match)) is not None:
        return Page(unchanged, None, True, None)
    params: dict[str, Any] = {"limit": request.limit, "limit_plus_one": request.limit + 1}
    statement = STATEMENTS.first_page
    if request.after is not None:
        statement = STATEMENTS.next_page
        params["after_created_at"] = request.after.created_at
        params["after_id"] = str(request.after.todo_id)
    version, items, count, last_at, last_id, more = await _one(db, user, statement, params)
    etag = list_tag(user, version)
    following = None
    if more:
        following = cursors.encode(cursor_key, cursors.Position(last_at, uuid.UUID(last_id)))
    body = (
        '{"items":'
        + (items or "[]")
        + f',"count":{count},"next_cursor":'
        + ("null" if following is None else f'"{following}"')
        + "}"
    )
    return Page(etag, body, False, following)


async def get(db: Database, user: UserId, todo_id: uuid.UUID) -> Entity | None:
    row = await _one(db, user, STATEMENTS.get, {"todo_id": str(todo_id)})
    return None if row is None else Entity(str(row[0]), item_tag(row[1]))


async def patch(
    db: Database,
    user: UserId,
    todo_id: uuid.UUID,
    changes: TodoUpdate,
    if_match: list[int] | None = None,
) -> Entity | None:
    """The updated todo, or None when the caller has no such todo. With `if_match`
    (the versions If-Match names), it is written only if its current version is one of
    them, else PreconditionFailed; the check and the write are one statement."""
    fields = frozenset(changes.changes())
    params = {f"new_{f}": v for f, v in changes.changes().items()}
    params["todo_id"] = str(todo_id)
    if if_match is None:
        row = await _one(db, user, STATEMENTS.patch[fields], params)
        return None if row is None else Entity(str(row[0]), item_tag(row[1]))
    body, version, found = await _one(
        db, user, STATEMENTS.patch_if[fields], {**params, "if_match": if_match}
    )
    if body is not None:
        return Entity(str(body), item_tag(version))
    if found:
        raise _stale()
    return None


async def remove(
    db: Database, user: UserId, todo_id: uuid.UUID, if_match: list[int] | None = None
) -> bool:
    """Whether the caller's todo was deleted; with `if_match`, as in `patch`."""
    params: dict[str, Any] = {"todo_id": str(todo_id)}
    if if_match is None:
        return await _one(db, user, STATEMENTS.remove, params) is not None
    gone, found = await _one(db, user, STATEMENTS.remove_if, {**params, "if_match": if_match})
    if gone is None and found:
        raise _stale()
    return gone is not None


def _stale() -> PreconditionFailed:
    return PreconditionFailed(
        "The todo changed since the ETag given in If-Match; read it again and retry."
    )
