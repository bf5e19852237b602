"""The schema comes from the packaged Alembic migrations, safely run concurrently."""

import subprocess
import sys
import threading
import time
import uuid

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from conftest import SPEC_PATH, read_yaml
from databases import Databases
from served import Serve
from sqlalchemy import Connection, create_engine, text
from waits import until

from service import migrations
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
        conn.execute(text("DROP VIEW todos"))
        conn.execute(text("DROP TABLE todo_tags, todo_items, users, alembic_version"))
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
                "SELECT confdeltype FROM pg_constraint WHERE conrelid = 'todo_items'::regclass"
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
    spec = read_yaml(SPEC_PATH)["components"]["schemas"]
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


@pytest.mark.req("FR-221", "FR-005")
def test_2_0s_migration_goes_back_to_1_x_keeping_every_todo_and_comes_again(
    databases: Databases,
) -> None:
    """Downgrading 0007 leaves 1.3's schema as 1.3 made it (`todos` a table under row
    security, 1.x's columns and no other, every todo kept); upgrading again gives the
    todos 2.0's defaults."""
    url = databases.clone("downgrade")
    engine = create_engine(sqlalchemy_url(url))
    owner, todo = uuid.uuid4(), uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id) VALUES (:u)"), {"u": owner})
        conn.execute(
            text(
                "INSERT INTO todo_items (id, user_id, title, description, is_completed,"
                " priority, due_at, tags)"
                " VALUES (:t, :u, 'Buy milk', NULL, true, 'high', now(), ARRAY['home'])"
            ),
            {"t": todo, "u": owner},
        )
    command.downgrade(alembic_config(url), "0006")
    with engine.begin() as conn:
        kind, secured, forced = conn.execute(
            text(
                "SELECT relkind, relrowsecurity, relforcerowsecurity FROM pg_class"
                " WHERE oid = 'todos'::regclass"
            )
        ).one()
        assert (kind, secured, forced) == ("r", True, True)
        columns = conn.execute(
            text(
                "SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute"
                " WHERE attrelid = 'todos'::regclass AND attnum > 0 AND NOT attisdropped"
            )
        ).scalar_one()
        assert columns == [
            "id", "user_id", "title", "description", "is_completed", "created_at",
            "updated_at",
        ]  # fmt: skip
        assert conn.execute(text("SELECT to_regclass('todo_items')")).scalar_one() is None
        kept = conn.execute(text("SELECT title, is_completed FROM todos")).all()
        assert [tuple(row) for row in kept] == [("Buy milk", True)]
    migrations.upgrade(url)
    with engine.begin() as conn:
        again = conn.execute(
            text("SELECT priority::text, due_at, tags, completed_at IS NOT NULL FROM todo_items")
        ).one()
        assert tuple(again) == ("none", None, [], True)
    engine.dispose()


@pytest.mark.req("FR-221")
def test_2_0s_columns_wait_for_every_transaction_begun_before_the_1_x_view(
    databases: Databases,
) -> None:
    """A 1.3 keyed create casts its answer `::todos`, a type its statement looks up before
    it locks the table. One that looked it up before `todos` became todo_items must not
    meet todo_items' 2.0 columns: they are added only once every transaction begun before
    the view has ended."""
    url = databases.clone("older")
    engine = create_engine(sqlalchemy_url(url))

    def columns(conn: Connection) -> list[str]:
        return list(
            conn.execute(
                text(
                    "SELECT attname::text FROM pg_attribute WHERE attnum > 0"
                    " AND attrelid = to_regclass('todo_items')"
                )
            ).scalars()
        )

    with engine.connect() as older, engine.connect() as watcher:
        # A transaction begun before the rename; begun before the downgrade too, so that
        # behind PgBouncer it holds a server session of its own, not the one that kept
        # the downgrade's session-level migration lock.
        older.execute(text("SELECT 1"))
        command.downgrade(alembic_config(url), "0006")
        migrating = threading.Thread(target=migrations.upgrade, args=(url,), daemon=True)
        migrating.start()
        watcher.execution_options(isolation_level="AUTOCOMMIT")
        until(lambda: bool(columns(watcher)), 30, "todos renamed todo_items behind a view")
        # The next steps take milliseconds, and the migration waits up to 30 s: a second
        # later the columns are still to come. (Which session waits cannot be read from
        # pg_stat_activity behind PgBouncer, where sessions take turns on one backend.)
        time.sleep(1)
        assert "priority" not in columns(watcher), "2.0's columns came while 1.3's could read"
        older.rollback()
        migrating.join(120)
        assert not migrating.is_alive()
        assert "priority" in columns(watcher)
    engine.dispose()
