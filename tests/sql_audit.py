"""Records every SQL statement the service sends and judges whether each statement
that touches a user's rows (todos, idempotency keys, the users row itself) is
restricted to one user."""

import re
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp
from whole_run import WholeRun

from service import db
from service.db import QUOTA_CONTEXT, RATE_LIMIT_STEP, REQUEST_CONTEXT, Database
from service.store import bulk, keys, lists, summary, todos
from service.store.named import statements

_PYFORMAT = re.compile(r"%\((\w+)\)s")
# A cursor's query is judged as the query it is; transaction control names no table.
_CURSOR = re.compile(r"^\s*DECLARE\s+\w+\s+(?:NO\s+SCROLL\s+)?CURSOR\s+FOR\s+", re.IGNORECASE)
_TRANSACTION = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK)\b[\w ]*$", re.IGNORECASE)


def sendable() -> dict[str, str]:
    """Every query string the service may send after its request context, by name: each
    store statement alone, or as the store and the Database compose them (a sweep before
    a claim, a stream's cursor around its query), and the Database's own."""
    forms = {
        **statements(todos),
        **statements(keys),
        **statements(lists),
        **statements(summary),
        **statements(bulk),
    }
    del forms["service.store.keys.SWEEP"], forms["service.store.todos.STREAM"]
    return {
        **forms,
        "service.store.keys.CLAIM, after a sweep": keys.SWEEP + keys.CLAIM,
        "service.store.todos.STREAM, through a cursor": db.OPEN_STREAM + todos.STREAM,
        "service.db.PING": db.PING,
        "service.db.CURSOR_KEY": db.CURSOR_KEY,
    }


@dataclass
class StatementLog:
    """Every query string a Database sent, as sent (before the driver put the values in),
    its request context taken off the front: this process's in `statements`, and, kept
    in `run`, every process's."""

    run: WholeRun | None = None
    statements: list[str] = field(default_factory=list)
    # How many of them also took a step of their caller's rate limit, and how many were
    # sent with the quota.
    steps: int = 0
    quotas: int = 0

    def everything(self) -> list[str]:
        """The statements of the whole run, every worker process's."""
        return self.statements if self.run is None else list(self.run.read("statements"))

    def attach(self, database: Database) -> None:
        send = database.request_sql

        def recorded(
            user: Any,
            statement: str,
            parameters: dict[str, Any],
            step: bool = False,
            creates: bool = False,
        ) -> tuple[str, dict[str, Any]]:
            sql, values = send(user, statement, parameters, step, creates)
            assert sql.startswith(REQUEST_CONTEXT), "every statement goes in a request context"
            sent = sql.removeprefix(REQUEST_CONTEXT)
            if sent.startswith(RATE_LIMIT_STEP):
                self.steps += 1
                sent = sent.removeprefix(RATE_LIMIT_STEP)
            if sent.startswith(QUOTA_CONTEXT):
                self.quotas += 1
                sent = sent.removeprefix(QUOTA_CONTEXT)
            self.statements.append(sent)
            if self.run is not None:
                self.run.record("statements", sent)
            return sql, values

        database.request_sql = recorded  # type: ignore[method-assign]


def _conjuncts(condition: Any) -> list[Any]:
    if condition is None:
        return []
    if isinstance(condition, exp.Paren):
        return _conjuncts(condition.this)
    if isinstance(condition, exp.And):
        return _conjuncts(condition.left) + _conjuncts(condition.right)
    return [condition]


def _is_parameter(node: Any) -> bool:
    if isinstance(node, exp.Cast):
        return _is_parameter(node.this)
    return isinstance(node, exp.Placeholder | exp.Parameter)


# Each table of a user's rows, and the column that names the user (`todos`: 1.x's view
# of `todo_items`, which 1.x builds name).
OWNER_COLUMNS = {
    "todo_items": "user_id",
    "todos": "user_id",
    "todo_tags": "user_id",
    "idempotency_keys": "user_id",
    "users": "id",
}


def _pins_user(condition: Any, owner: str) -> bool:
    """True when one AND-ed term is `<owner> = <bound parameter>`."""
    for term in _conjuncts(condition):
        if not isinstance(term, exp.EQ):
            continue
        sides = (term.left, term.right)
        column = any(isinstance(s, exp.Column) and s.name == owner for s in sides)
        parameter = any(_is_parameter(s) for s in sides)
        if column and parameter:
            return True
    return False


def _touches_user_rows(node: Any) -> bool:
    return any(table.name in OWNER_COLUMNS for table in node.find_all(exp.Table))


_STATEMENTS = (exp.Select, exp.Update, exp.Delete, exp.Insert)


def violations(sent: str) -> list[str]:
    """Why these statements (one query string) are not each restricted to one user;
    empty when they are (or when they touch no user's rows)."""
    return [
        problem
        for statement in sent.split(";\n")
        if not _TRANSACTION.match(statement)
        for problem in _violations(statement)
    ]


def _violations(statement: str) -> list[str]:
    sql = _CURSOR.sub("", _PYFORMAT.sub(r":\1", statement))
    problems = []
    try:
        trees = sqlglot.parse(sql, read="postgres")
    except sqlglot.errors.ParseError:
        # Transaction control and FETCH name no table; anything else must be readable.
        unreadable = any(table in sql for table in OWNER_COLUMNS)
        return ["unreadable statement on a user's rows"] if unreadable else []
    for tree in trees:
        if tree is None or not _touches_user_rows(tree):
            continue
        for insert in tree.find_all(exp.Insert):
            target = insert.this
            table = target.this if isinstance(target, exp.Schema) else target
            if isinstance(table, exp.Table) and table.name in OWNER_COLUMNS:
                owner = OWNER_COLUMNS[table.name]
                columns = (
                    [c.name for c in target.expressions] if isinstance(target, exp.Schema) else []
                )
                if owner not in columns:
                    problems.append(f"INSERT INTO {table.name} without a {owner} value")
        for node in tree.find_all(exp.Select, exp.Update, exp.Delete):
            # A table belongs to the innermost statement around it; an INSERT's target is
            # judged above, by its columns.
            direct = {
                t.name
                for t in node.find_all(exp.Table)
                if t.name in OWNER_COLUMNS and t.find_ancestor(*_STATEMENTS) is node
            }
            where = node.args.get("where") and node.args["where"].this
            for name in sorted(direct):
                owner = OWNER_COLUMNS[name]
                if not _pins_user(where, owner):
                    problems.append(f"{node.key.upper()} on {name} without `{owner} = <parameter>`")
    return problems
