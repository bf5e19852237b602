"""Every statement the service sends is in the repository as SQL: written out in the
store's modules and the Database's, and all of them, whole and composed as they are
sent, in one file a reviewer can read (service/store/statements.sql), which this test
renders again and compares. (The SQL audit checks that what is sent is among them.)"""

import os

import pytest
from conftest import REPO
from sql_audit import sendable

from service import db

CATALOGUE = REPO / "service" / "store" / "statements.sql"

_HEADER = """\
-- Every statement the service sends, by the name it has in the code, rendered from
-- service/db.py and service/store/ by tests/test_statements.py (which fails when this
-- file and the code differ; REGENERATE_STATEMENTS=1 writes it anew).
--
-- Each is sent after service.db.REQUEST_CONTEXT (and, with TODO_RATE_LIMIT, a request's
-- first one after RATE_LIMIT_STEP too; with TODO_MAX_TODOS_PER_USER, a create after
-- QUOTA_CONTEXT), in one query string: one round trip, one transaction. A stream then
-- sends FETCH_STREAM until no row comes back, then CLOSE_STREAM, on the same
-- connection. %(name)s marks a value the driver puts in.
"""


def render() -> str:
    parts = [_HEADER]
    alone = {
        "service.db.REQUEST_CONTEXT": db.REQUEST_CONTEXT,
        "service.db.RATE_LIMIT_STEP": db.RATE_LIMIT_STEP,
        "service.db.QUOTA_CONTEXT": db.QUOTA_CONTEXT,
        "service.db.FETCH_STREAM": db.FETCH_STREAM,
        "service.db.CLOSE_STREAM": db.CLOSE_STREAM,
    }
    for name, statement in {**alone, **sendable()}.items():
        parts.append(f"-- {name}\n{statement.rstrip().rstrip(';')};\n")
    return "\n".join(parts)


@pytest.mark.req("FR-013")
def test_statements_sql_holds_every_statement_as_the_service_sends_it() -> None:
    rendered = render()
    if os.environ.get("REGENERATE_STATEMENTS"):
        CATALOGUE.write_text(rendered)
    assert CATALOGUE.read_text() == rendered, "REGENERATE_STATEMENTS=1 pytest this test"
