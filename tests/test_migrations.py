"""The schema comes from the packaged Alembic migrations, safely run concurrently."""

import subprocess
import sys

import pytest
import yaml
from alembic.script import ScriptDirectory
from conftest import SPEC_PATH
from served import Serve
from sqlalchemy import create_engine, text

from service.db import sqlalchemy_url
from service.embedded import EmbeddedPostgres
from service.migrations import alembic_config, newest


def _newest_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("unused")).get_current_head()
    assert head is not None
    return head


@pytest.mark.req("FR-001", "FR-005")
def test_concurrent_migrations_converge_on_one_schema(spare_postgres: EmbeddedPostgres) -> None:
    engine = create_engine(sqlalchemy_url(spare_postgres.url))
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE todos, users, alembic_version"))
    # Separate processes, as several `serve` processes starting at once would be.
    migrators = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"from service import migrations; migrations.upgrade({spare_postgres.url!r})",
            ]
        )
        for _ in range(4)
    ]
    assert [m.wait(timeout=60) for m in migrators] == [0, 0, 0, 0]
    with engine.begin() as conn:
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        assert versions == [_newest_revision()]
        fk = conn.execute(
            text(
                "SELECT confdeltype FROM pg_constraint WHERE conrelid = 'todos'::regclass"
                " AND contype = 'f'"
            )
        ).scalar_one()
        assert fk == "c", "deleting a user must cascade to their todos"
        index = conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = 'todos_user_newest_first'")
        ).scalar_one()
        assert "(user_id, created_at DESC, id DESC)" in index
    engine.dispose()


@pytest.mark.req("FR-001", "FR-111", "FR-193")
def test_each_view_of_a_todo_is_exactly_its_schema_in_the_contracts_order(
    postgres_url: str, database: object
) -> None:
    """The data layer spells a todo as row_to_json of a view's row type: todo_v1 holds
    exactly 1.x's members and todo_v2 exactly 2.0's, each in its schema's order, so no
    column added to todos changes an answer."""
    spec = yaml.safe_load(SPEC_PATH.read_text())["components"]["schemas"]
    engine = create_engine(sqlalchemy_url(postgres_url))
    with engine.begin() as conn:
        for row_type, schema in (("todo_v1", "Todo"), ("todo_v2", "TodoV2")):
            members = conn.execute(
                text(
                    "SELECT attname FROM pg_attribute WHERE attrelid = ("
                    " SELECT typrelid FROM pg_type WHERE typname = :name)"
                    " AND attnum > 0 ORDER BY attnum"
                ),
                {"name": row_type},
            ).scalars()
            assert list(members) == list(spec[schema]["properties"]), row_type
    engine.dispose()


@pytest.mark.req("FR-005")
def test_a_worker_on_a_schema_at_the_newest_revision_starts_no_migration(
    serve: Serve, postgres_url: str, database: object
) -> None:
    """The newest revision, read from the migrations' files without Alembic, is
    Alembic's own; a `serve` on a database already there starts no migration child (on
    a fresh one it migrates: tests/test_cli.py)."""
    assert newest() == _newest_revision()
    current = serve(postgres_url)
    current.wait_ready()
    output = current.stop()
    assert "schema is at the newest version already" in output
    assert "Running upgrade" not in output and "migrations failed" not in output
