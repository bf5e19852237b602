"""A due-date sort's later pages start where their cursor points (FR-203).

0007's indexes for `sort=due_at` and `sort=-due_at` are on `coalesce(due_at, ...)`.
Under row-level security PostgreSQL makes a condition an index condition only if
nothing in it could leak a row's values, and it counts `coalesce` as leaky (of the
expressions that call no function, it trusts `CASE` and `IS NULL`, not `coalesce`). So
a later page's cursor was a filter over every todo before it: the 500th page of 50 took
ten times the first for a user with 100,000 todos (`nox -s bench`), where
`sort=created_at`'s took as long as its first.

The same key written as `CASE WHEN due_at IS NULL THEN ... ELSE due_at END`, with
timestamptz's and uuid's leakproof comparisons, is an index condition: each direction
gets an index on it, built concurrently, and 0007's two go once these are built. A
build from before this one, until it is replaced, still answers those sorts rightly,
by another plan. Each statement waits for no lock longer than LOCK_TIMEOUT and is
retried, so requests never queue behind it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

import time
from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

LOCK_TIMEOUT = "1s"
ATTEMPTS = 60
_LOCK_NOT_AVAILABLE = "55P03"

# A todo without due_at goes last in both directions; service/store/lists.py names
# each key exactly so, for the planner to match it with its index.
SOONEST = "CASE WHEN due_at IS NULL THEN 'infinity'::timestamptz ELSE due_at END"
LATEST = "CASE WHEN due_at IS NULL THEN '-infinity'::timestamptz ELSE due_at END"

NEW = {
    "todos_user_due_soonest_first": f"user_id, ({SOONEST}), created_at, id",
    "todos_user_due_latest_first": f"user_id, ({LATEST}), created_at, id",
}
OLD = {
    "todos_user_due_soonest": (
        "user_id, (coalesce(due_at, 'infinity'::timestamptz)), created_at, id"
    ),
    "todos_user_due_latest": (
        "user_id, (coalesce(due_at, '-infinity'::timestamptz)), created_at, id"
    ),
}


def _retried(connection: sa.Connection, step: Callable[[sa.Connection], None]) -> None:
    """`step`, once it finds its locks within LOCK_TIMEOUT: a statement that would queue
    behind a long transaction gives up and the whole step tries again later, so
    requests never queue behind it."""
    for attempt in range(ATTEMPTS):
        try:
            step(connection)
            return
        except sa.exc.OperationalError as error:
            if getattr(error.orig, "pgcode", None) != _LOCK_NOT_AVAILABLE:
                raise
            time.sleep(min(0.1 * 2**attempt, 2.0))
    raise RuntimeError(f"no lock within {LOCK_TIMEOUT} in {ATTEMPTS} attempts")


def _build(name: str, columns: str) -> Callable[[sa.Connection], None]:
    def build(connection: sa.Connection) -> None:
        valid = connection.execute(
            sa.text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"),
            {"name": name},
        ).scalar()
        if valid:
            return
        if valid is False:
            # A build that gave up on a lock (its entry in the catalogue made before it
            # waits) or was interrupted leaves an invalid index, which writes still
            # keep: it goes, and the build starts again.
            connection.execute(sa.text(f"DROP INDEX CONCURRENTLY IF EXISTS {name}"))
        connection.execute(sa.text(f"CREATE INDEX CONCURRENTLY {name} ON todo_items ({columns})"))

    return build


def _dropped(name: str) -> Callable[[sa.Connection], None]:
    def drop(connection: sa.Connection) -> None:
        connection.execute(sa.text(f"DROP INDEX CONCURRENTLY IF EXISTS {name}"))

    return drop


def _swap(built: dict[str, str], dropped: dict[str, str]) -> None:
    with op.get_context().autocommit_block():
        connection = op.get_bind()
        connection.execute(sa.text(f"SET lock_timeout = '{LOCK_TIMEOUT}'"))
        for name, columns in built.items():
            _retried(connection, _build(name, columns))
        for name in dropped:
            _retried(connection, _dropped(name))
        connection.execute(sa.text("RESET lock_timeout"))


def upgrade() -> None:
    _swap(NEW, OLD)


def downgrade() -> None:
    _swap(OLD, NEW)
