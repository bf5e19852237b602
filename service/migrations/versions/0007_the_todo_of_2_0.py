"""The todo of 2.0 (FR-191, FR-201 to FR-204), added online (FR-221).

- The table becomes `todo_items`, and `todos` is a view of it with exactly 1.x's
  columns (`security_invoker`, so the table's row-level policy binds whoever reads or
  writes through it). A 1.3 build still serving names `todos` in its SQL
  (`row_to_json(todos)`, `RETURNING`, a record cast `::todos`): through the view it
  sees, writes and spells exactly 1.x's todo, so a rolling deploy is safe. The view is
  auto-updatable; the table's triggers, defaults, checks and policy apply to writes
  through it. The 2.0 service names `todo_items`. docs/design/v2-storage.md has the
  options weighed and the measurements.
- Columns: `priority` (an enum, so that it sorts none < low < medium < high),
  `due_at`, `tags`, `completed_at`; and the case folds of the title and the
  description (Python's `str.casefold`, which the service computes on every write), on
  which `q` searches and `title` sorts whatever the database's collation. Each column
  is added with a constant default or none: no table rewrite on PostgreSQL 11+.
- `todo_v1` and `todo_v2`: the two views of a todo, as row types, so that PostgreSQL
  spells each the same way everywhere (`row_to_json`) and a 1.x answer stays exactly
  1.x's, whatever columns the table grows.
- A row trigger keeps what a 1.3 build, which knows nothing of these columns, does not
  write: `completed_at` (the time of the write that completed the todo, kept while it
  stays completed, null while open) and the folds, from `todo_fold`, the SQL twin of
  `str.casefold` (tests/test_v2_todo.py holds it to Python's for every character).
  The 2.0 service relies on the same trigger for `completed_at`, so there is one rule.
- An index for each sort, on (user_id, key, created_at, id), and for the filters: a
  page is one index range scan in the requested order.
- `todo_tags`: one row per tag of a todo, under the same row-level policy, kept from
  `tags` by a trigger. Under row-level security PostgreSQL uses a condition as an index
  condition only if its operator is leakproof, and an array's `@>` is not: a GIN index
  on `tags` could not narrow a `tag` filter, which read the caller's whole set. Text's
  `=` is leakproof, so a tagged page is a range scan of (user_id, tag, created_at,
  todo_id) in the list's order.
- Todos of before 2.0 get their folds, and a completed one its `updated_at` as
  `completed_at`, in batches of their own transactions.
- The columns are added only once every transaction older than the view has ended. A
  1.3 keyed create casts its answer `::todos`, a type its statement looks up before it
  locks the table: one that had looked it up before the rename, and then waited on the
  table's lock through the rename and the columns' addition, spelled a 1.x todo as
  todo_items' wider row (its new members null), seen once in 66,708 requests under load.

Every statement runs outside a long transaction (Alembic's autocommit block), waits
for no lock longer than LOCK_TIMEOUT and is retried (so no request queues behind it for
longer), and is safe to run again over what an interrupted run left behind: an index
left invalid by an interrupted build is built again. The migration lock (env.py) is
held for the session, across these transactions.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

import time
from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

from service.migrations.todo_2_0_sql import (
    KEEP_2_0_MEMBERS,
    KEEP_TAGS_TRIGGERS,
    TODO_TAGS,
    fold_function,
)

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

LOCK_TIMEOUT = "1s"
ATTEMPTS = 60
BATCH = 2000
_LOCK_NOT_AVAILABLE = "55P03"

_V1_COLUMNS = "id, user_id, title, description, is_completed, created_at, updated_at"
_V1 = """id uuid, user_id uuid, title text, description text, is_completed boolean,
    created_at timestamptz, updated_at timestamptz"""
_V2 = f"""{_V1}, priority todo_priority, due_at timestamptz, tags text[],
    completed_at timestamptz"""


# One statement, so one transaction: no request ever finds neither the table nor the view.
_RENAMED_BEHIND_A_1_X_VIEW = f"""
    DO $$
    BEGIN
        IF to_regclass('todo_items') IS NULL THEN
            ALTER TABLE todos RENAME TO todo_items;
            CREATE VIEW todos WITH (security_invoker = true) AS
                SELECT {_V1_COLUMNS} FROM todo_items;
            GRANT SELECT, INSERT, UPDATE, DELETE ON todos TO todo_app;
        END IF;
    END
    $$
"""

# name: (how, what): each sort's index is (user_id, key, created_at, id), which serves
# the sort in both directions (a backward scan); `due_at` puts todos without one last in
# both directions, so each direction has its own. -created_at and created_at have
# 0001's todos_user_newest_first.
INDEXES = {
    "todos_user_priority": ("btree", "user_id, priority, created_at, id"),
    "todos_user_due_soonest": (
        "btree",
        "user_id, (coalesce(due_at, 'infinity'::timestamptz)), created_at, id",
    ),
    "todos_user_due_latest": (
        "btree",
        "user_id, (coalesce(due_at, '-infinity'::timestamptz)), created_at, id",
    ),
    "todos_user_title": ("btree", 'user_id, (title_folded COLLATE "C"), created_at, id'),
    "todos_user_completed": ("btree", "user_id, is_completed, created_at, id"),
    "todos_user_search": (
        "gin",
        "user_id, (title_folded || ' ' || description_folded) gin_trgm_ops",
    ),
}

_FILL = f"""
    WITH batch AS (
        SELECT id FROM todo_items WHERE id > :after ORDER BY id LIMIT {BATCH}
    ),
    filled AS (
        UPDATE todo_items
        SET title_folded = coalesce(title_folded, todo_fold(title)),
            description_folded =
                coalesce(description_folded, todo_fold(coalesce(description, ''))),
            completed_at = CASE WHEN is_completed THEN coalesce(completed_at, updated_at) END
        FROM batch
        WHERE todo_items.id = batch.id
          AND (title_folded IS NULL OR description_folded IS NULL
               OR (is_completed AND completed_at IS NULL))
    )
    SELECT id FROM batch ORDER BY id DESC LIMIT 1
"""


def _retried(step: Callable[[sa.Connection], object], connection: sa.Connection) -> object:
    """`step`, once it finds its locks within LOCK_TIMEOUT: a statement that would queue
    behind a long transaction gives up and tries again later, so requests never queue
    behind it."""
    for attempt in range(ATTEMPTS):
        try:
            return step(connection)
        except sa.exc.OperationalError as error:
            if getattr(error.orig, "pgcode", None) != _LOCK_NOT_AVAILABLE:
                raise
            time.sleep(min(0.1 * 2**attempt, 2.0))
    raise RuntimeError(f"no lock within {LOCK_TIMEOUT} in {ATTEMPTS} attempts")


# How long the columns wait for transactions older than the view, at the most: one
# that outlasts it is no statement of a 1.3 build's request, whose statements are short.
OLDER_WAIT = 30.0


def _older_transactions_ended(connection: sa.Connection) -> None:
    """Returns once no client's transaction in this database begun before now is still
    running (those pg_stat_activity shows this role: at least its own sessions', where
    the service connects as the migrations do), or after OLDER_WAIT."""
    now = connection.execute(sa.text("SELECT now()")).scalar_one()
    deadline = time.monotonic() + OLDER_WAIT
    while time.monotonic() < deadline:
        older = connection.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
                " AND xact_start < :now"
            ),
            {"now": now},
        ).scalar_one()
        if not older:
            return
        time.sleep(0.05)


def _fill_after(after: str) -> Callable[[sa.Connection], object]:
    """One batch of the fill, from the todo after `after`; the last id it went over
    (None when there was none)."""
    return lambda connection: connection.execute(sa.text(_FILL), {"after": after}).scalar()


def _run(sql: str) -> Callable[[sa.Connection], object]:
    return lambda connection: connection.execute(sa.text(sql))


def _build_index(name: str, how: str, columns: str) -> Callable[[sa.Connection], object]:
    def build(connection: sa.Connection) -> None:
        valid = connection.execute(
            sa.text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"),
            {"name": name},
        ).scalar()
        if valid:
            return
        if valid is False:
            # A build that gave up (or was interrupted) leaves an invalid index behind,
            # which writes still keep: it goes, and the build starts again.
            connection.execute(sa.text(f"DROP INDEX CONCURRENTLY IF EXISTS {name}"))
        connection.execute(
            sa.text(f"CREATE INDEX CONCURRENTLY {name} ON todo_items USING {how} ({columns})")
        )

    return build


def upgrade() -> None:
    with op.get_context().autocommit_block():
        connection = op.get_bind()
        connection.execute(sa.text(f"SET lock_timeout = '{LOCK_TIMEOUT}'"))
        connection.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
        connection.execute(sa.text("CREATE EXTENSION IF NOT EXISTS btree_gin"))
        connection.execute(
            sa.text(
                """
                DO $$
                BEGIN
                    IF to_regtype('todo_priority') IS NULL THEN
                        CREATE TYPE todo_priority AS ENUM ('none', 'low', 'medium', 'high');
                    END IF;
                END
                $$
                """
            )
        )
        for name, fields in (("todo_v1", _V1), ("todo_v2", _V2)):
            connection.execute(
                sa.text(
                    f"""
                    DO $$
                    BEGIN
                        IF to_regtype('{name}') IS NULL THEN
                            CREATE TYPE {name} AS ({fields});
                        END IF;
                    END
                    $$
                    """
                )
            )
        connection.execute(sa.text(fold_function()))
        _retried(_run(_RENAMED_BEHIND_A_1_X_VIEW), connection)
        _older_transactions_ended(connection)
        _retried(
            _run(
                """
                ALTER TABLE todo_items
                    ADD COLUMN IF NOT EXISTS priority todo_priority NOT NULL DEFAULT 'none',
                    ADD COLUMN IF NOT EXISTS due_at timestamptz,
                    ADD COLUMN IF NOT EXISTS tags text[] NOT NULL DEFAULT '{}',
                    ADD COLUMN IF NOT EXISTS completed_at timestamptz,
                    ADD COLUMN IF NOT EXISTS title_folded text,
                    ADD COLUMN IF NOT EXISTS description_folded text
                """
            ),
            connection,
        )
        connection.execute(sa.text(KEEP_2_0_MEMBERS))
        _retried(
            _run(
                "CREATE OR REPLACE TRIGGER keep_2_0_members BEFORE INSERT OR UPDATE ON todo_items"
                " FOR EACH ROW EXECUTE FUNCTION todos_keep_2_0_members()"
            ),
            connection,
        )
        for statement in TODO_TAGS + KEEP_TAGS_TRIGGERS:
            _retried(_run(statement), connection)
        # Filled before the indexes are built: each row is written once, not once more
        # into every index.
        after: object = "00000000-0000-0000-0000-000000000000"
        while after is not None:
            after = _retried(_fill_after(str(after)), connection)
        for name, (how, columns) in INDEXES.items():
            _retried(_build_index(name, how, columns), connection)
        connection.execute(sa.text("RESET lock_timeout"))


def downgrade() -> None:
    with op.get_context().autocommit_block():
        connection = op.get_bind()
        for name in INDEXES:
            connection.execute(sa.text(f"DROP INDEX CONCURRENTLY IF EXISTS {name}"))
        for event in ("insert", "update"):
            connection.execute(
                sa.text(f"DROP TRIGGER IF EXISTS keep_tags_on_{event} ON todo_items")
            )
        connection.execute(sa.text("DROP TABLE IF EXISTS todo_tags"))
        connection.execute(sa.text("DROP FUNCTION IF EXISTS todos_keep_tags()"))
        connection.execute(sa.text("DROP TRIGGER IF EXISTS keep_2_0_members ON todo_items"))
        connection.execute(sa.text("DROP FUNCTION IF EXISTS todos_keep_2_0_members()"))
        connection.execute(
            sa.text(
                """
                DO $$
                BEGIN
                    IF to_regclass('todo_items') IS NOT NULL THEN
                        DROP VIEW IF EXISTS todos;
                        ALTER TABLE todo_items RENAME TO todos;
                    END IF;
                END
                $$
                """
            )
        )
        connection.execute(
            sa.text(
                "ALTER TABLE todos DROP COLUMN IF EXISTS priority, DROP COLUMN IF EXISTS due_at,"
                " DROP COLUMN IF EXISTS tags, DROP COLUMN IF EXISTS completed_at,"
                " DROP COLUMN IF EXISTS title_folded, DROP COLUMN IF EXISTS description_folded"
            )
        )
        connection.execute(sa.text("DROP FUNCTION IF EXISTS todo_fold(text)"))
        connection.execute(sa.text("DROP TYPE IF EXISTS todo_v1, todo_v2, todo_priority"))
