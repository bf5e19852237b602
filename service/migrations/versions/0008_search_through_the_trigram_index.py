"""`q` finds its page through the trigram index (FR-201, FR-203).

Under row-level security PostgreSQL makes a condition an index condition only if its
operator is leakproof, and `LIKE` is not: a list with `q` read the caller's whole set
by `user_id` and filtered it (docs/design/v2-storage.md measured 65 to 80 times the
default page for a user with 100,000 todos).

`todo_search_page` returns the ids of the caller's first `most` todos that meet a
list's filters, `q` among them, in created_at's order from a cursor's position. It runs
as its owner, the migrating role, which bypasses row security where it may (the
embedded server's superuser, Neon's owner role), so the planner chooses by its own
costs between the trigram index and a walk of the newest-first index. Who the caller
is comes from the request's setting (`app.user_id`), the one the policy reads, never
from an argument, so no caller can name another user. The page joins the ids to
`todo_items` under the policy and applies every filter again: what a caller reads is
bound by the policy whatever the function returns. Where the owner is bound by row
security, the function's read is bound by the same policy, and `q` is as right and as
slow as before.

The statement is built per call (`EXECUTE ... USING`), so it is planned with the
call's values: an absent filter's condition folds away, and the plan fits the word.

Replacing or adding a function is safe on a live database.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_SIGNATURE = (
    "todo_search_page(text, text[], boolean, todo_priority[], text[], timestamptz,"
    " timestamptz, timestamptz, uuid, boolean, integer)"
)


def upgrade() -> None:
    op.execute(
        """
        CREATE OR REPLACE FUNCTION todo_search_page(
            pattern text, words text[], completed boolean, priorities todo_priority[],
            tags text[], due_after timestamptz, due_before timestamptz,
            after_created_at timestamptz, after_id uuid, newest_first boolean,
            most integer
        ) RETURNS SETOF uuid
        LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
        ROWS 50 AS $fn$
        BEGIN
            RETURN QUERY EXECUTE format(
                $q$
                SELECT id FROM public.todo_items
                WHERE user_id = NULLIF(current_setting('app.user_id', true), '')::uuid
                  AND title_folded || ' ' || description_folded LIKE $1
                  AND ($2 IS NULL OR title_folded || ' ' || description_folded LIKE ALL ($2))
                  AND ($3 IS NULL OR is_completed = $3)
                  AND ($4 IS NULL OR priority = ANY ($4))
                  AND ($5 IS NULL OR tags @> $5)
                  AND ($6 IS NULL OR due_at > $6)
                  AND ($7 IS NULL OR due_at < $7)
                  AND ($9 IS NULL OR (created_at, id) %1$s ($8, $9))
                ORDER BY created_at %2$s, id %2$s
                LIMIT $10
                $q$,
                CASE WHEN newest_first THEN '<' ELSE '>' END,
                CASE WHEN newest_first THEN 'DESC' ELSE 'ASC' END
            ) USING pattern, words, completed, priorities, tags, due_after, due_before,
                    after_created_at, after_id, most;
        END
        $fn$
        """
    )
    op.execute(f"REVOKE ALL ON FUNCTION {_SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {_SIGNATURE} TO todo_app")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION IF EXISTS {_SIGNATURE}")
