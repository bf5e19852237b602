"""Row-level security: the database's own wall between users.

The service's requests run as `todo_app`, a role that owns nothing and cannot bypass
row security; the caller's id reaches the policies through the transaction-local
setting `app.user_id`. FORCE binds even the tables' owner (unless it holds BYPASSRLS,
as Neon's owner roles do), so only a deliberate bypass sees across users.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# An unset or reset setting reads as '' or NULL; both match no row.
_CALLER = "NULLIF(current_setting('app.user_id', true), '')::uuid"

_POLICIES = {"todos": "user_id", "users": "id"}


def upgrade() -> None:
    # Roles belong to the cluster, not the database: another database's migration may
    # have made it already.
    op.execute(
        """
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'todo_app') THEN
                CREATE ROLE todo_app NOLOGIN NOBYPASSRLS;
            END IF;
            IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
                EXECUTE format('GRANT todo_app TO %I', current_user);
            END IF;
        END
        $$
        """
    )
    op.execute("GRANT USAGE ON SCHEMA public TO todo_app")
    for table, owner_column in _POLICIES.items():
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO todo_app")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {table}_of_the_caller ON {table} "
            f"USING ({owner_column} = {_CALLER}) WITH CHECK ({owner_column} = {_CALLER})"
        )


def downgrade() -> None:
    for table in _POLICIES:
        op.execute(f"DROP POLICY {table}_of_the_caller ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
        op.execute(f"REVOKE ALL ON {table} FROM todo_app")
    op.execute("REVOKE USAGE ON SCHEMA public FROM todo_app")
