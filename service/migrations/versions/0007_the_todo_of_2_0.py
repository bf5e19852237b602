"""The todo of 2.0 (FR-191, FR-201 to FR-204), added online (FR-221).

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
- Todos of before 2.0 get their folds, and a completed one its `updated_at` as
  `completed_at`, in batches of their own transactions.

Every statement runs outside a long transaction (Alembic's autocommit block), waits
for no lock longer than LOCK_TIMEOUT and is retried (so no request queues behind it for
longer), and is safe to run again over what an interrupted run left behind: an index
left invalid by an interrupted build is built again. The migration lock (env.py) is
held for the session, across these transactions.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

import sys
import time
from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

LOCK_TIMEOUT = "1s"
ATTEMPTS = 60
BATCH = 2000
_LOCK_NOT_AVAILABLE = "55P03"

_V1 = """id uuid, user_id uuid, title text, description text, is_completed boolean,
    created_at timestamptz, updated_at timestamptz"""
_V2 = f"""{_V1}, priority todo_priority, due_at timestamptz, tags text[],
    completed_at timestamptz"""


def _fold_function() -> str:
    """`todo_fold(text)`: str.casefold in SQL. ASCII text is lower-cased as such; other
    text has each character that folds to several replaced, then each that folds to one
    translated. Every fold is a fixed point of the fold, so the order cannot matter."""
    single_from, single_to, several = [], [], []
    for point in range(1, sys.maxunicode + 1):
        if 0xD800 <= point <= 0xDFFF:
            continue
        character = chr(point)
        folded = character.casefold()
        if folded == character:
            continue
        if len(folded) == 1:
            single_from.append(character)
            single_to.append(folded)
        else:
            several.append((character, folded))
    replaced = "value"
    for character, folded in several:
        replaced = f"replace({replaced}, '{character}', '{folded}')"
    return f"""
        CREATE OR REPLACE FUNCTION todo_fold(value text) RETURNS text
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $fold$
        SELECT CASE
            WHEN octet_length(value) = char_length(value) THEN lower(value COLLATE "C")
            ELSE translate({replaced}, '{"".join(single_from)}', '{"".join(single_to)}')
        END
        $fold$
    """


_KEEP_2_0_MEMBERS = """
    CREATE OR REPLACE FUNCTION todos_keep_2_0_members() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF NOT NEW.is_completed THEN
            NEW.completed_at := NULL;
        ELSIF TG_OP = 'INSERT' OR NOT OLD.is_completed THEN
            NEW.completed_at := NEW.updated_at;
        ELSE
            -- Completed before and still: the first time stays. One completed before
            -- 2.0 and not yet filled in gets its updated_at of then.
            NEW.completed_at := coalesce(OLD.completed_at, NEW.completed_at, OLD.updated_at);
        END IF;
        -- A write that changed a text but not its fold came from a build that knows
        -- nothing of folds.
        IF TG_OP = 'INSERT' THEN
            NEW.title_folded := coalesce(NEW.title_folded, todo_fold(NEW.title));
            NEW.description_folded :=
                coalesce(NEW.description_folded, todo_fold(coalesce(NEW.description, '')));
        ELSE
            IF NEW.title IS DISTINCT FROM OLD.title
               AND NEW.title_folded IS NOT DISTINCT FROM OLD.title_folded THEN
                NEW.title_folded := todo_fold(NEW.title);
            END IF;
            IF NEW.description IS DISTINCT FROM OLD.description
               AND NEW.description_folded IS NOT DISTINCT FROM OLD.description_folded THEN
                NEW.description_folded := todo_fold(coalesce(NEW.description, ''));
            END IF;
        END IF;
        RETURN NEW;
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
    "todos_user_tags": ("gin", "user_id, tags"),
    "todos_user_search": (
        "gin",
        "user_id, (title_folded || ' ' || description_folded) gin_trgm_ops",
    ),
}

_FILL = f"""
    WITH batch AS (
        SELECT id FROM todos WHERE id > :after ORDER BY id LIMIT {BATCH}
    ),
    filled AS (
        UPDATE todos
        SET title_folded = coalesce(title_folded, todo_fold(title)),
            description_folded =
                coalesce(description_folded, todo_fold(coalesce(description, ''))),
            completed_at = CASE WHEN is_completed THEN coalesce(completed_at, updated_at) END
        FROM batch
        WHERE todos.id = batch.id
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
            sa.text(f"CREATE INDEX CONCURRENTLY {name} ON todos USING {how} ({columns})")
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
        connection.execute(sa.text(_fold_function()))
        _retried(
            _run(
                """
                ALTER TABLE todos
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
        connection.execute(sa.text(_KEEP_2_0_MEMBERS))
        _retried(
            _run(
                "CREATE OR REPLACE TRIGGER keep_2_0_members BEFORE INSERT OR UPDATE ON todos"
                " FOR EACH ROW EXECUTE FUNCTION todos_keep_2_0_members()"
            ),
            connection,
        )
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
        connection.execute(sa.text("DROP TRIGGER IF EXISTS keep_2_0_members ON todos"))
        connection.execute(sa.text("DROP FUNCTION IF EXISTS todos_keep_2_0_members()"))
        connection.execute(
            sa.text(
                "ALTER TABLE todos DROP COLUMN IF EXISTS priority, DROP COLUMN IF EXISTS due_at,"
                " DROP COLUMN IF EXISTS tags, DROP COLUMN IF EXISTS completed_at,"
                " DROP COLUMN IF EXISTS title_folded, DROP COLUMN IF EXISTS description_folded"
            )
        )
        connection.execute(sa.text("DROP FUNCTION IF EXISTS todo_fold(text)"))
        connection.execute(sa.text("DROP TYPE IF EXISTS todo_v1, todo_v2, todo_priority"))
