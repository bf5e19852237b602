"""Records every SQL statement the service sends and judges whether each statement
that touches todos is restricted to one user."""

import re
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp

from service.db import Database

_PYFORMAT = re.compile(r"%\((\w+)\)s")
# A cursor's query is judged as the query it is.
_CURSOR = re.compile(r"^\s*DECLARE\s+\w+\s+(?:NO\s+SCROLL\s+)?CURSOR\s+FOR\s+", re.IGNORECASE)


@dataclass
class StatementLog:
    statements: list[str] = field(default_factory=list)

    def attach(self, database: Database) -> None:
        database.observers.append(self.statements.append)


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


def _pins_user(condition: Any) -> bool:
    """True when one AND-ed term is `user_id = <bound parameter>`."""
    for term in _conjuncts(condition):
        if not isinstance(term, exp.EQ):
            continue
        sides = (term.left, term.right)
        column = any(isinstance(s, exp.Column) and s.name == "user_id" for s in sides)
        parameter = any(_is_parameter(s) for s in sides)
        if column and parameter:
            return True
    return False


def _touches_todos(node: Any) -> bool:
    return any(table.name == "todos" for table in node.find_all(exp.Table))


def violations(statement: str) -> list[str]:
    """Why this statement is not restricted to one user; empty when it is (or when it
    does not touch todos)."""
    sql = _CURSOR.sub("", _PYFORMAT.sub(r":\1", statement))
    problems = []
    try:
        trees = sqlglot.parse(sql, read="postgres")
    except sqlglot.errors.ParseError:
        # Transaction control and FETCH name no table; anything else must be readable.
        return ["unreadable statement on todos"] if "todos" in sql else []
    for tree in trees:
        if tree is None or not _touches_todos(tree):
            continue
        for insert in tree.find_all(exp.Insert):
            target = insert.this
            table = target.this if isinstance(target, exp.Schema) else target
            if isinstance(table, exp.Table) and table.name == "todos":
                columns = (
                    [c.name for c in target.expressions] if isinstance(target, exp.Schema) else []
                )
                if "user_id" not in columns:
                    problems.append("INSERT INTO todos without a user_id value")
        for node in tree.find_all(exp.Select, exp.Update, exp.Delete):
            tables = [t for t in node.find_all(exp.Table) if t.name == "todos"]
            direct = [
                t for t in tables if t.find_ancestor(exp.Select, exp.Update, exp.Delete) is node
            ]
            if direct and not _pins_user(node.args.get("where") and node.args["where"].this):
                problems.append(f"{node.key.upper()} on todos without `user_id = <parameter>`")
    return problems
