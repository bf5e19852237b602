"""What bulk writes need (FR-211 to FR-213).

- `idempotency_keys.todo_id` may be null: a bulk write's answer (`{"updated": n}`)
  names no todo. A key's fingerprint is compared before its todo id is read, by this
  build and by 1.3's, so a key a bulk write used is refused to a create, never replayed
  as one. Dropping NOT NULL only changes the catalogue: no scan, no rewrite.
- The triggers that bump the caller's list version after an update or a delete also
  check a bulk write's `If-Match`: given the versions it names (`app.if_list_version`,
  set by the bulk statement local to its transaction, which holds that statement
  alone), the version the statement found, read
  under the users row's lock it takes anyway, must be one of them, or the statement
  fails with SQLSTATE TD412 and writes nothing. The check happens where the version
  moves, so it takes no lock of its own: the users row stays the last lock every write
  takes, after its todos (a bulk write locking the users row first would deadlock with
  a single write, which locks its todo and then, in this trigger, the users row). A
  write without the setting (every other statement, and every 1.3 build's) bumps
  exactly as before.

Each statement waits for no lock longer than LOCK_TIMEOUT and is retried, so requests
never queue behind it; replacing a function is safe on a live database.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

import time

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

LOCK_TIMEOUT = "1s"
ATTEMPTS = 60
_LOCK_NOT_AVAILABLE = "55P03"

# By event, each touched user's change in todos, from the statement's transition
# tables (as 0004 names them and 0005 counts them).
_COUNT = {
    "update": "SELECT user_id, sum(n) AS n FROM ("
    " SELECT user_id, -1 AS n FROM before UNION ALL SELECT user_id, 1 FROM touched"
    ") AS moved GROUP BY user_id",
    "delete": "SELECT user_id, -count(*) AS n FROM touched GROUP BY user_id",
}


def _bump(changes: str) -> str:
    return f"""UPDATE users SET version = version + 1, todo_count = todo_count + changed.n
                FROM ({changes}) AS changed
                WHERE users.id = changed.user_id"""


def _checked(changes: str) -> str:
    """0005's function, and the If-Match of a bulk write. A statement that wrote no todo
    bumps nothing: the version it is checked against is the one committed now."""
    return f"""
        DECLARE
            expected bigint[] := NULLIF(current_setting('app.if_list_version', true), '')::bigint[];
            found bigint;
        BEGIN
            IF expected IS NULL THEN
                {_bump(changes)};
                RETURN NULL;
            END IF;
            WITH bumped AS ({_bump(changes)} RETURNING version)
            SELECT max(version) - 1 INTO found FROM bumped;
            IF found IS NULL THEN
                SELECT coalesce(max(version), 0) INTO found FROM users
                WHERE id = NULLIF(current_setting('app.user_id', true), '')::uuid;
            END IF;
            IF NOT found = ANY (expected) THEN
                RAISE EXCEPTION 'the list changed since its ETag' USING ERRCODE = 'TD412';
            END IF;
            RETURN NULL;
        END
    """


def _replace(event: str, body: str) -> None:
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION todos_bump_list_versions_on_{event}() RETURNS trigger
        LANGUAGE plpgsql AS $$
        {body}
        $$
        """
    )


def _retried(sql: str) -> None:
    """`sql`, once it finds its lock within LOCK_TIMEOUT."""
    connection = op.get_bind()
    for attempt in range(ATTEMPTS):
        try:
            connection.execute(sa.text(sql))
            return
        except sa.exc.OperationalError as error:
            if getattr(error.orig, "pgcode", None) != _LOCK_NOT_AVAILABLE:
                raise
            time.sleep(min(0.1 * 2**attempt, 2.0))
    raise RuntimeError(f"no lock within {LOCK_TIMEOUT} in {ATTEMPTS} attempts")


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
        _retried("ALTER TABLE idempotency_keys ALTER COLUMN todo_id DROP NOT NULL")
        for event, changes in _COUNT.items():
            _replace(event, _checked(changes))
        op.execute("RESET lock_timeout")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for event, changes in _COUNT.items():
            _replace(event, f"BEGIN {_bump(changes)}; RETURN NULL; END")
        op.execute("DELETE FROM idempotency_keys WHERE todo_id IS NULL")
        op.execute("ALTER TABLE idempotency_keys ALTER COLUMN todo_id SET NOT NULL")
