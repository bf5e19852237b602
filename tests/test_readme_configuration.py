"""The README's configuration table and the service agree: every variable the table
names is one the service reads, and every variable the service reads is in the table.
Read from both sides as they are (the markdown table; every environment variable name
written in service/'s code), so that a setting added to either alone fails here."""

import ast
import re
from pathlib import Path

from conftest import REPO

import service

# How the service's variables are spelled: its own, Neon's, OpenTelemetry's and
# prometheus-client's.
VARIABLE = re.compile(r"(?:TODO|NEON|OTEL|PROMETHEUS)_[A-Z0-9_]*[A-Z0-9]")
# Set by `serve` for its own workers, never by an operator.
INTERNAL = {"TODO_RUN_DIR"}


def _table(markdown: str) -> set[str]:
    """The variables of the table whose first column is `variable`: each name written
    in backticks in that column (a row may name two)."""
    names: set[str] = set()
    in_table = False
    for line in markdown.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.lstrip().startswith("|"):
            in_table = False
        elif cells[0] == "variable":
            in_table = True
        elif in_table:
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0]))
    return names


def _read_by_the_service() -> set[str]:
    """Every string in service/'s code that is a whole variable name: the settings'
    aliases, and what is read from os.environ."""
    names: set[str] = set()
    for source in Path(service.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                names |= {node.value} if VARIABLE.fullmatch(node.value) else set()
    return names - INTERNAL


def test_every_variable_in_the_readme_table_is_one_the_service_reads() -> None:
    table = _table((REPO / "README.md").read_text())
    assert len(table) > 20, "the README's configuration table was not found"
    assert table - _read_by_the_service() == set()


def test_every_variable_the_service_reads_is_in_the_readme_table() -> None:
    table = _table((REPO / "README.md").read_text())
    assert _read_by_the_service() - table == set()
