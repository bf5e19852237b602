"""Bounded consumption: how many todos each user holds, and each caller's rate.

- `users.todo_count`: kept by the same statement-level triggers that bump the list
  version, so the quota is checked against one row, under that row's lock: of N
  concurrent creates at one below the quota, exactly one gets through. Counted once
  for existing users, while writes to todos wait (a SHARE lock, taken within the
  lock timeout or not at all), so no create slips between the count and the triggers.
- `rate_limits`: one theoretical arrival time per caller (GCRA), stepped by
  `rate_limit_step` in the request's own round trip. UNLOGGED (no WAL for a figure
  that may start afresh when the database restarts) and with room on each page for
  its updates to stay HOT. Under the same row-level policy as the other tables.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_CALLER = "NULLIF(current_setting('app.user_id', true), '')::uuid"

# The functions of 0004's triggers, now keeping the count too: by event, each touched
# user's change in todos (from the statement's transition tables, as 0004 names them).
_COUNT = {
    "insert": "SELECT user_id, count(*) AS n FROM touched GROUP BY user_id",
    "update": "SELECT user_id, sum(n) AS n FROM ("
    " SELECT user_id, -1 AS n FROM before UNION ALL SELECT user_id, 1 FROM touched"
    ") AS moved GROUP BY user_id",
    "delete": "SELECT user_id, -count(*) AS n FROM touched GROUP BY user_id",
}


def _counts() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("ALTER TABLE users ADD COLUMN IF NOT EXISTS todo_count integer NOT NULL DEFAULT 0")
    for event, changes in _COUNT.items():
        # Runs as the writing role, under its row-level policies: a request changes only
        # its caller's row.
        op.execute(
            f"""
            CREATE OR REPLACE FUNCTION todos_bump_list_versions_on_{event}() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                UPDATE users SET version = version + 1, todo_count = todo_count + changed.n
                FROM ({changes}) AS changed
                WHERE users.id = changed.user_id;
                RETURN NULL;
            END
            $$
            """
        )
    op.execute("LOCK TABLE todos IN SHARE MODE")
    op.execute(
        "UPDATE users SET todo_count = counted.n FROM"
        " (SELECT user_id, count(*) AS n FROM todos GROUP BY user_id) AS counted"
        " WHERE users.id = counted.user_id AND users.todo_count <> counted.n"
    )


def _rate_limits() -> None:
    op.execute(
        """
        CREATE UNLOGGED TABLE IF NOT EXISTS rate_limits (
            user_id uuid PRIMARY KEY,
            -- When the caller's next request is due, in seconds since the epoch (exact:
            -- numeric, so that q requests fill a window of w seconds to the microsecond).
            tat numeric NOT NULL
        ) WITH (fillfactor = 50)
        """
    )
    op.execute("GRANT SELECT, INSERT, UPDATE ON rate_limits TO todo_app")
    op.execute("ALTER TABLE rate_limits ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE rate_limits FORCE ROW LEVEL SECURITY")
    op.execute("DROP POLICY IF EXISTS rate_limits_of_the_caller ON rate_limits")
    op.execute(
        "CREATE POLICY rate_limits_of_the_caller ON rate_limits "
        f"USING (user_id = {_CALLER}) WITH CHECK (user_id = {_CALLER})"
    )
    # GCRA with a burst of the whole quota: a request is due every window/quota seconds,
    # and a caller may run up to a window ahead of that. Allowed: the arrival time moves
    # on and the caller hears what is left (INFO: `rate-limit <r> <t>`, r requests now,
    # t seconds until one more). Refused: nothing moves, and the statement fails with
    # SQLSTATE TD429 and the seconds to wait, so nothing after it in the round trip runs.
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION rate_limit_step(quota integer, window_seconds integer)
        RETURNS void LANGUAGE plpgsql AS $$
        DECLARE
            caller uuid := {_CALLER};
            arrived numeric := extract(epoch FROM now());
            every numeric := window_seconds::numeric / quota;
            due numeric;
            ahead numeric;
        BEGIN
            INSERT INTO rate_limits AS r (user_id, tat) VALUES (caller, arrived + every)
            ON CONFLICT (user_id) DO UPDATE SET tat = greatest(r.tat, arrived) + every
            WHERE greatest(r.tat, arrived) + every - arrived <= window_seconds
            RETURNING tat INTO due;
            IF due IS NULL THEN
                SELECT greatest(tat, arrived) + every INTO due
                FROM rate_limits WHERE user_id = caller;
                RAISE EXCEPTION 'rate limited' USING ERRCODE = 'TD429',
                    DETAIL = greatest(1, ceil(due - arrived - window_seconds))::text;
            END IF;
            ahead := window_seconds - (due - arrived);
            RAISE INFO 'rate-limit % %', floor(ahead / every),
                greatest(1, ceil(every - mod(ahead, every)));
        END
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION rate_limit_step(integer, integer) FROM PUBLIC")
    op.execute("GRANT EXECUTE ON FUNCTION rate_limit_step(integer, integer) TO todo_app")


def upgrade() -> None:
    _counts()
    _rate_limits()


def downgrade() -> None:
    op.execute("DROP FUNCTION rate_limit_step(integer, integer)")
    op.execute("DROP TABLE rate_limits")
    for event, changes in _COUNT.items():
        op.execute(
            f"""
            CREATE OR REPLACE FUNCTION todos_bump_list_versions_on_{event}() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                UPDATE users SET version = version + 1 WHERE id IN (
                    SELECT user_id FROM ({changes}) AS changed
                );
                RETURN NULL;
            END
            $$
            """
        )
    op.execute("ALTER TABLE users DROP COLUMN todo_count")
