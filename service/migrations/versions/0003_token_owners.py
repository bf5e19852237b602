"""Users named by a token: the (issuer, subject) pair a verified JWT names.

In `jwt` mode a user's id is derived from that pair (see `service.identity.owner_id`);
the row records the pair itself, so an operator can tell whose todos these are. In
`header` mode both stay NULL. Adding nullable columns rewrites nothing, and the check
is added NOT VALID then validated, which never blocks reads or writes. Every step may
run again over what an earlier run left.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Wait briefly for the table lock, never queue every request behind a long one.
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("ALTER TABLE users ADD COLUMN IF NOT EXISTS issuer text")
    op.execute("ALTER TABLE users ADD COLUMN IF NOT EXISTS subject text")
    op.execute("ALTER TABLE users DROP CONSTRAINT IF EXISTS users_token_owner_whole")
    op.execute(
        "ALTER TABLE users ADD CONSTRAINT users_token_owner_whole"
        " CHECK ((issuer IS NULL) = (subject IS NULL)) NOT VALID"
    )
    op.execute("ALTER TABLE users VALIDATE CONSTRAINT users_token_owner_whole")


def downgrade() -> None:
    op.drop_constraint("users_token_owner_whole", "users")
    op.drop_column("users", "subject")
    op.drop_column("users", "issuer")
