"""What HTTP semantics need from the database.

- `users.version`: the caller's list version, the list's ETag. Triggers on `todos` bump
  it at the end of every statement that creates, changes or deletes a user's todos
  (once per statement and user, through the statement's transition tables), so the
  list's tag is answered from one row without building the list, and no write can
  forget it.
- `idempotency_keys`: a POST's Idempotency-Key, the fingerprint of its request and the
  response it got, written in the same statement as the todo. Per user, under the same
  row-level policy as the todos. Keys expire after 24 hours; keyed creates sweep
  expired keys of any user as they go through `sweep_expired_idempotency_keys`, a
  function that runs as the tables' owner and may delete nothing but expired keys, so
  the table stays bounded without a scheduled job and the request role never sees
  another user's keys.
- `signing_keys`: the server-side secret that makes page cursors tamper-evident, in the
  database so every process behind one pooler signs and checks with the same key.

Every step is safe on a live database (a column with a constant default rewrites
nothing on PostgreSQL 11+; the new tables start empty) and safe to run again over
objects an earlier run left behind.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_CALLER = "NULLIF(current_setting('app.user_id', true), '')::uuid"
# How long a key is remembered; the data layer's KEY_LIFETIME says the same.
_EXPIRED = "created_at <= now() - interval '24 hours'"

_BUMP = {
    # event: (transition tables, the users whose todos the statement touched)
    "insert": ("NEW TABLE AS touched", "SELECT user_id FROM touched"),
    "update": (
        "OLD TABLE AS before NEW TABLE AS touched",
        "SELECT user_id FROM before UNION SELECT user_id FROM touched",
    ),
    "delete": ("OLD TABLE AS touched", "SELECT user_id FROM touched"),
}


def _list_versions() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("ALTER TABLE users ADD COLUMN IF NOT EXISTS version bigint NOT NULL DEFAULT 0")
    for event, (tables, touched) in _BUMP.items():
        # Runs as the writing role, under its row-level policies: a request bumps only
        # its caller's version.
        op.execute(
            f"""
            CREATE OR REPLACE FUNCTION todos_bump_list_versions_on_{event}() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                UPDATE users SET version = version + 1 WHERE id IN ({touched});
                RETURN NULL;
            END
            $$
            """
        )
        op.execute(f"DROP TRIGGER IF EXISTS bump_list_versions_on_{event} ON todos")
        op.execute(
            f"CREATE TRIGGER bump_list_versions_on_{event} AFTER {event.upper()} ON todos"
            f" REFERENCING {tables} FOR EACH STATEMENT"
            f" EXECUTE FUNCTION todos_bump_list_versions_on_{event}()"
        )


def _idempotency_keys() -> None:
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS idempotency_keys (
            -- No foreign key to users: a key lives a day at most, and users and todos
            -- stay free to be truncated together.
            user_id uuid NOT NULL,
            key varchar(255) NOT NULL,
            fingerprint bytea NOT NULL,
            -- No foreign key either: a replay answers the first response even after
            -- the todo is gone.
            todo_id uuid NOT NULL,
            body text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (user_id, key)
        )
        """
    )
    # The sweep finds expired keys by age, and must find "none" at once: a BRIN index
    # cannot (pages not yet summarized are always candidates, so each sweep read the
    # whole recent table), a btree can, for little more per insert
    # (bench/results/findings.md).
    op.execute(
        "CREATE INDEX IF NOT EXISTS idempotency_keys_by_age ON idempotency_keys (created_at)"
    )
    op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO todo_app")
    op.execute("ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE idempotency_keys FORCE ROW LEVEL SECURITY")
    op.execute("DROP POLICY IF EXISTS idempotency_keys_of_the_caller ON idempotency_keys")
    op.execute(
        "CREATE POLICY idempotency_keys_of_the_caller ON idempotency_keys "
        f"USING (user_id = {_CALLER}) WITH CHECK (user_id = {_CALLER})"
    )
    # The sweep runs as the migrating role (the owner). FORCE binds the owner too, so
    # this policy lets the owner, and nobody else, reach the expired keys of every user.
    op.execute("DROP POLICY IF EXISTS idempotency_keys_expired_for_the_sweep ON idempotency_keys")
    op.execute(
        f"""
        DO $$
        BEGIN
            EXECUTE format(
                'CREATE POLICY idempotency_keys_expired_for_the_sweep ON idempotency_keys'
                ' TO %I USING ({_EXPIRED.replace("'", "''")})',
                current_user
            );
        END
        $$
        """
    )
    # The oldest first, read in the age index's order, so a sweep stops after `most`
    # keys; keys that other sweeps hold are skipped, never waited for. (Plain SQL: the same
    # DELETE in PL/pgSQL is replanned at every call under the function's own search_path;
    # bench/results/findings.md.)
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION sweep_expired_idempotency_keys(most integer)
        RETURNS integer
        LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
            WITH gone AS (
                DELETE FROM public.idempotency_keys
                WHERE (user_id, key) IN (
                    SELECT user_id, key FROM public.idempotency_keys
                    WHERE {_EXPIRED}
                    ORDER BY created_at
                    LIMIT most
                    FOR UPDATE SKIP LOCKED
                )
                RETURNING 1
            )
            SELECT count(*)::integer FROM gone
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION sweep_expired_idempotency_keys(integer) FROM PUBLIC")
    op.execute("GRANT EXECUTE ON FUNCTION sweep_expired_idempotency_keys(integer) TO todo_app")


def _signing_keys() -> None:
    op.execute(
        "CREATE TABLE IF NOT EXISTS signing_keys (purpose text PRIMARY KEY, secret bytea NOT NULL)"
    )
    # The request role reads the key to sign and check cursors; nothing else.
    op.execute("GRANT SELECT ON signing_keys TO todo_app")
    op.execute(
        sa.text(
            "INSERT INTO signing_keys (purpose, secret) VALUES ('cursor', :secret)"
            " ON CONFLICT (purpose) DO NOTHING"
        ).bindparams(secret=secrets.token_bytes(32))
    )


def upgrade() -> None:
    _list_versions()
    _idempotency_keys()
    _signing_keys()


def downgrade() -> None:
    op.execute("DROP TABLE signing_keys")
    op.execute("DROP FUNCTION sweep_expired_idempotency_keys(integer)")
    op.execute("DROP TABLE idempotency_keys")
    for event in _BUMP:
        op.execute(f"DROP TRIGGER bump_list_versions_on_{event} ON todos")
        op.execute(f"DROP FUNCTION todos_bump_list_versions_on_{event}()")
    op.execute("ALTER TABLE users DROP COLUMN version")
