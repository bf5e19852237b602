"""The database's ceilings, made honest: for each read, every statement we could find
that returns byte for byte the body the service sends (checked against the service's
own answer before it is timed), the service's own statement among them; for each write,
the exact statement the service sends. pgbench runs each with the same request context
(role, caller, statement timeout, TimeZone) in the same query string, as sent; the
fastest is the ceiling.

Scripts are made from the exact bytes: the statement is rendered by the driver with
marker ids, and the markers become pgbench expressions."""

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg2
from layout import SQL_TODO_ID, SQL_USER_ID, TEN, THOUSAND, Range, todo_id, user_id

from service.db import Database
from service.settings import Settings
from service.store import todos

_USER_MARK = user_id(0xFFFFFFFF)
_TODO_MARK = todo_id(0xFFFFFFFF)

Body = Callable[[tuple[Any, ...]], bytes]

_FIELDS = "id, user_id, title, description, is_completed, created_at, updated_at"
_ONE = "todos.user_id = %(user_id)s::uuid AND todos.id = %(todo_id)s::uuid"
_MINE = (
    f"SELECT {_FIELDS} FROM todos WHERE todos.user_id = %(user_id)s::uuid"
    " ORDER BY created_at DESC, id DESC LIMIT 2001"
)


@dataclass(frozen=True)
class Candidate:
    name: str
    statement: str
    body: Body


def _text(row: tuple[Any, ...]) -> bytes:
    return str(row[0]).encode()


def _envelope(items: str | None, count: int) -> bytes:
    return ('{"items":' + (items or "[]") + f',"count":{count}}}').encode()


READS: dict[str, list[Candidate]] = {
    "get": [
        Candidate("the service's: the row as JSON and its ETag", todos.GET, _text),
        Candidate(
            "the row as JSON alone",
            f"SELECT CAST(row_to_json(todos) AS TEXT) FROM todos WHERE {_ONE}",
            _text,
        ),
        Candidate(
            "row_to_json of a subquery of the fields",
            f"SELECT CAST(row_to_json(t) AS TEXT) FROM (SELECT {_FIELDS} FROM todos"
            f" WHERE {_ONE}) AS t",
            _text,
        ),
    ],
    "list": [
        Candidate(
            "the service's: version, json_agg and count (the envelope in Python)",
            todos.LIST,
            lambda row: _envelope(row[1], row[2]),
        ),
        Candidate(
            "json_agg and count, no version",
            f"SELECT CAST(json_agg(t) AS TEXT), count(*) FROM ({_MINE}) AS t",
            lambda row: _envelope(row[0], row[1]),
        ),
        Candidate(
            "the whole body in SQL from json_agg",
            "SELECT '{\"items\":' || coalesce(CAST(json_agg(t) AS TEXT), '[]')"
            f" || ',\"count\":' || count(*) || '}}' FROM ({_MINE}) AS t",
            _text,
        ),
        Candidate(
            "the whole body in SQL from json_agg ORDER BY",
            "SELECT '{\"items\":' || coalesce(CAST(json_agg(t ORDER BY t.created_at DESC,"
            " t.id DESC) AS TEXT), '[]')"
            f" || ',\"count\":' || count(*) || '}}' FROM ({_MINE}) AS t",
            _text,
        ),
        Candidate(
            "the whole body in SQL from string_agg of rows",
            "SELECT '{\"items\":[' || coalesce(string_agg(CAST(row_to_json(t) AS TEXT),"
            f" ', \n '), '') || '],\"count\":' || count(*) || '}}' FROM ({_MINE}) AS t",
            _text,
        ),
    ],
}

# What each read binds besides the caller (the list's limit is one more than a whole
# list may hold, as the service sends it).
LIST_PARAMS = {"limit": todos.WHOLE_LIST_LIMIT + 1}

WRITES: dict[str, tuple[str, dict[str, Any]]] = {
    "create": (
        todos.CREATE,
        {
            "title": "Benchmark todo",
            "description": "made under load",
            "issuer": None,
            "subject": None,
            # 2.0's members as a 1.x create sends them (their defaults, the folds).
            "priority": "none",
            "due_at": None,
            "tags": [],
            "title_folded": "benchmark todo",
            "description_folded": "made under load",
        },
    ),
    "patch": (
        todos.PATCH,
        {
            "title": "Renamed",
            "is_completed": True,
            "todo_id": _TODO_MARK,
            # 2.0's members a 1.x PATCH leaves as they are.
            "priority": None,
            "sets_due_at": False,
            "due_at": None,
            "tags": None,
            "title_folded": "renamed",
        },
    ),
    "delete": (todos.REMOVE, {"todo_id": _TODO_MARK}),
}


class Renderer:
    """Statements as the service sends them: the request context and the statement in
    one query string, rendered by the driver."""

    def __init__(self, url: str) -> None:
        self.db = Database(Settings(NEON_DATABASE_URL=url))
        self.connection = psycopg2.connect(url)
        self.connection.autocommit = True

    def render(self, statement: str, user: str, params: dict[str, Any]) -> str:
        sql, values = self.db.request_sql(
            uuid.UUID(user), statement, {"user_id": user, "v1": True, **params}
        )
        with self.connection.cursor() as cursor:
            rendered: bytes = cursor.mogrify(sql, values)
        return rendered.decode()

    def run(self, statement: str, user: str, params: dict[str, Any]) -> tuple[Any, ...]:
        with self.connection.cursor() as cursor:
            cursor.execute(self.render(statement, user, params))
            row: tuple[Any, ...] = cursor.fetchone()
        return row

    def close(self) -> None:
        self.connection.close()
        self.db.close()


def _script(sql: str, header: str) -> str:
    # The context and the statement stay one query string: one round trip, as sent. The
    # markers become pgbench expressions: text where the context sets the caller, uuid
    # where the statement compares or stores an id.
    context, statement = sql.split(";\n", 1)
    user, todo = SQL_USER_ID.format(k=":u"), SQL_TODO_ID.format(n=":n")
    context = context.replace(f"'{_USER_MARK}'", f"({user})")
    statement = statement.replace(f"'{_USER_MARK}'", f"({user})::uuid")
    statement = statement.replace(f"'{_TODO_MARK}'", f"({todo})::uuid")
    return f"{header}\n{context} \\;\n{statement.rstrip().rstrip(';')};\n"


def verify(renderer: Renderer, service: str, sample_todo: int, sample_owner: int) -> list[str]:
    """Each read candidate's body, for a sample, against the service's answer: a
    candidate that differs by a byte is no ceiling for this service."""
    failures = []
    cases: dict[str, list[tuple[int, dict[str, Any], str]]] = {
        "get": [(sample_owner, {"todo_id": todo_id(sample_todo)}, f"/{todo_id(sample_todo)}")],
        "list": [(TEN, LIST_PARAMS, ""), (THOUSAND, LIST_PARAMS, "")],
    }
    for op, samples in cases.items():
        for owner, params, path in samples:
            answer = httpx.get(
                f"{service}/api/v1/todos{path}", headers={"X-User-ID": user_id(owner)}, timeout=10
            )
            for candidate in READS[op]:
                got = candidate.body(renderer.run(candidate.statement, user_id(owner), params))
                if got != answer.content:
                    failures.append(f"{op}: {candidate.name}")
    return failures


def write_scripts(
    renderer: Renderer, directory: Path, pick: Range, deletable: Range
) -> dict[str, list[tuple[str, Path]]]:
    """pgbench scripts by operation: (candidate name, script) for each candidate."""
    random_todo = f"\\set n random({pick.first}, {pick.last})\n\\set u 4 + (:n - 101011) % 9997"
    # Each client walks its own ids, as wrk's threads do, so every delete finds a row.
    next_todo = (
        f"\\set n {deletable.first} + :client_id + :k * :clients\n\\set k :k + 1\n"
        "\\set u 4 + (:n - 101011) % 9997"
    )
    headers = {
        "get": random_todo,
        "list10": f"\\set u {TEN}",
        "list1000": f"\\set u {THOUSAND}",
        "create": "\\set u random(4, 10000)",
        "patch": random_todo,
        "delete": next_todo,
    }
    scripts: dict[str, list[tuple[str, Path]]] = {}

    def add(op: str, index: int, name: str, sql: str) -> None:
        path = directory / f"{op}-{index}.sql"
        path.write_text(_script(sql, headers[op]))
        scripts.setdefault(op, []).append((name, path))

    for op, kind in (("get", "get"), ("list10", "list"), ("list1000", "list")):
        for index, candidate in enumerate(READS[kind]):
            params = {"todo_id": _TODO_MARK} if kind == "get" else LIST_PARAMS
            add(op, index, candidate.name, renderer.render(candidate.statement, _USER_MARK, params))
    for op, (statement, params) in WRITES.items():
        add(op, 0, "the service's", renderer.render(statement, _USER_MARK, params))
    return scripts
