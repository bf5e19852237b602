"""pgbench scripts made from the exact bytes the service sends for each operation: the
data layer runs once with marker ids, the sent SQL is recorded, and the markers become
pgbench expressions. The database ceiling is then PostgreSQL running our statements."""

from pathlib import Path
from typing import Any

from layout import SQL_TODO_ID, SQL_USER_ID, Range, todo_id, user_id

from service import todos
from service.db import Database, create_engine
from service.settings import Settings

_USER_MARK = user_id(0xFFFFFFFF)
_TODO_MARK = todo_id(0xFFFFFFFF)


def _pgbench(sql: str, header: str) -> str:
    sql = sql.replace(f"'{_USER_MARK}'", f"({SQL_USER_ID.format(k=':u')})")
    sql = sql.replace(f"'{_TODO_MARK}'", f"({SQL_TODO_ID.format(n=':n')})")
    # The context and the statement stay one query string: one round trip, as sent.
    context, statement = sql.split(";\n", 1)
    return f"{header}\n{context} \\;\n{statement};\n"


def write_scripts(url: str, directory: Path, pick: Range, deletable: Range) -> dict[str, Path]:
    settings = Settings(NEON_DATABASE_URL=url)
    db = Database(create_engine(url, settings), settings)
    user = _USER_MARK
    sent: dict[str, tuple[str, dict[str, Any]]] = {
        "get": (todos.STATEMENTS.get, {"todo_id": _TODO_MARK}),
        "list": (todos.STATEMENTS.list_all, {}),
        "create": (
            todos.STATEMENTS.create,
            {"new_title": "Benchmark todo", "new_description": "made under load"},
        ),
        "patch": (
            todos.STATEMENTS.patch[frozenset({"title", "is_completed"})],
            {"new_title": "Renamed", "new_is_completed": True, "todo_id": _TODO_MARK},
        ),
        "remove": (todos.STATEMENTS.remove, {"todo_id": _TODO_MARK}),
    }
    # The exact bytes the data layer sends: its statements with the request context,
    # rendered by the driver.
    rendered = {}
    with db.engine.connect() as conn:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        for name, (statement, params) in sent.items():
            sql, values = db.request_sql(user, statement, {"user_id": user, **params})
            rendered[name] = cursor.mogrify(sql, values).decode()
    db.dispose()
    get, listing, create, patch, remove = rendered.values()

    random_todo = f"\\set n random({pick.first}, {pick.last})\n\\set u 4 + (:n - 101011) % 9997"
    # Each client walks its own ids, as wrk's threads do, so every delete finds a row.
    next_todo = (
        f"\\set n {deletable.first} + :client_id + :k * :clients\n\\set k :k + 1\n"
        "\\set u 4 + (:n - 101011) % 9997"
    )
    scripts = {
        "get": _pgbench(get, random_todo),
        "list10": _pgbench(listing, "\\set u 3"),
        "list1000": _pgbench(listing, "\\set u 2"),
        "create": _pgbench(create, "\\set u random(4, 10000)"),
        "patch": _pgbench(patch, random_todo),
        "delete": _pgbench(remove, next_todo),
    }
    paths = {}
    for name, script in scripts.items():
        paths[name] = directory / f"{name}.sql"
        paths[name].write_text(script)
    return paths
