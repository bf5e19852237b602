"""The quota is checked where the count is kept.

0005's insert trigger already updates the creating user's row, under that row's lock,
to add what the statement inserted to `todo_count`. It now also compares the new count
with the request's quota (`app.todo_quota`, set in the request's round trip only when
TODO_MAX_TODOS_PER_USER is) and, over it, fails the statement with SQLSTATE TD409: the
todo, and a keyed create's key, go with it. Of N concurrent creates at one below the
quota, the first to take the row's lock counts up to it and the rest find the count
already there. A create then sends the same statement with or without a quota, and
takes no lock of its own (0005's creates within a quota upserted the user's row first:
one more row version per create).

Replacing a function is safe on a live database: a statement running the old one
finishes with it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_BUMP = """
    UPDATE users SET version = version + 1, todo_count = todo_count + changed.n
    FROM (SELECT user_id, count(*) AS n FROM touched GROUP BY user_id) AS changed
    WHERE users.id = changed.user_id
"""


def _insert_trigger_function(body: str) -> None:
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION todos_bump_list_versions_on_insert() RETURNS trigger
        LANGUAGE plpgsql AS $$
        {body}
        $$
        """
    )


def upgrade() -> None:
    _insert_trigger_function(
        f"""
        DECLARE
            quota integer := NULLIF(current_setting('app.todo_quota', true), '')::integer;
            most integer;
        BEGIN
            IF quota IS NULL THEN
                {_BUMP};
                RETURN NULL;
            END IF;
            WITH bumped AS ({_BUMP} RETURNING todo_count)
            SELECT max(todo_count) INTO most FROM bumped;
            IF most > quota THEN
                RAISE EXCEPTION 'quota exceeded' USING ERRCODE = 'TD409';
            END IF;
            RETURN NULL;
        END
        """
    )


def downgrade() -> None:
    _insert_trigger_function(f"BEGIN {_BUMP}; RETURN NULL; END")
