"""Realistic data, made by PostgreSQL itself (generate_series), in two growth stages."""

from layout import REST_FULL, REST_SMALL, SQL_OWNER, SQL_TODO_ID, SQL_USER_ID, USERS, Range
from sqlalchemy import text
from sqlalchemy.engine import Engine

_INSERT_TODOS = f"""
INSERT INTO todos (id, user_id, title, description, is_completed, created_at, updated_at)
SELECT {SQL_TODO_ID.format(n="n")},
       ({SQL_USER_ID.format(k=SQL_OWNER.format(n="n"))})::uuid,
       'Todo number ' || n,
       CASE WHEN n % 2 = 0 THEN 'Pick up the parcel before the shop closes at six, ref ' || n END,
       n % 3 = 0,
       created,
       created
FROM generate_series(CAST(:first AS int), CAST(:last AS int)) AS n,
     LATERAL (SELECT timestamptz '2026-01-01' + n * interval '1 second') AS t(created)
"""


# The todos' table: `todos` at 1.x's schema, `todo_items` (behind 1.x's view `todos`,
# which writes may go through) at 2.0's.
_TABLE = "SELECT coalesce(to_regclass('todo_items'), 'todos')::text"


def _insert(engine: Engine, first: int, last: int) -> None:
    if first > last:
        return
    with engine.begin() as conn:
        conn.execute(text(_INSERT_TODOS), {"first": first, "last": last})


def small_table(engine: Engine) -> None:
    """10,000 users; the 1,000- and 10-todo users; 10,000 todos in all."""
    with engine.begin() as conn:
        # CASCADE: at 2.0's schema, todo_tags too.
        conn.execute(text(f"TRUNCATE users, {conn.execute(text(_TABLE)).scalar_one()} CASCADE"))
        conn.execute(
            text(
                f"INSERT INTO users (id) SELECT ({SQL_USER_ID.format(k='k')})::uuid"
                " FROM generate_series(1, :users) AS k"
            ),
            {"users": USERS},
        )
    _insert(engine, 100_001, 101_010)
    _insert(engine, REST_SMALL.first, REST_SMALL.last)
    _analyze(engine)


def token_user(engine: Engine, user: str, issuer: str, subject: str, todos: Range) -> None:
    """The user a bearer token names, and their todos (ids from `todos`)."""
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO users (id, issuer, subject) VALUES (:u, :i, :s)"),
            {"u": user, "i": issuer, "s": subject},
        )
        conn.execute(
            text(
                "INSERT INTO todos (id, user_id, title, created_at, updated_at)"
                f" SELECT {SQL_TODO_ID.format(n='n')}, :u, 'Token todo ' || n, t, t"
                " FROM generate_series(CAST(:first AS int), CAST(:last AS int)) AS n,"
                " LATERAL (SELECT timestamptz '2026-02-01' + n * interval '1 second') AS s(t)"
            ),
            {"u": user, "first": todos.first, "last": todos.last},
        )
    _analyze(engine)


def full_table(engine: Engine) -> None:
    """Grows the small table to 1,000,000 todos, adding the 100,000-todo user."""
    _insert(engine, 1, 100_000)
    _insert(engine, REST_SMALL.last + 1, REST_FULL.last)
    _analyze(engine)


def v2_members(engine: Engine, user: str) -> None:
    """Gives `user`'s todos 2.0's members, spread as a real list has them: every
    priority, a due date on two in three, a tag on two in five (`work` on one, `home` and
    `errand` on another) and `rare` on one in a thousand (so that each sort and filter of
    `nox -s bench`'s 2.0 figures has work to do, a common tag and a rare one)."""
    with engine.begin() as conn:
        conn.execute(
            text(
                """
                UPDATE todo_items
                SET priority = (ARRAY['none', 'low', 'medium', 'high'])[1 + t.n % 4]::todo_priority,
                    due_at = CASE WHEN t.n % 3 <> 0
                                  THEN timestamptz '2026-01-01' + (t.n % 365) * interval '1 day'
                             END,
                    tags = CASE WHEN t.n % 1000 = 7 THEN ARRAY['rare']
                                ELSE CASE t.n % 5 WHEN 0 THEN ARRAY['work']
                                                  WHEN 1 THEN ARRAY['home', 'errand']
                                                  ELSE ARRAY[]::text[] END
                           END
                FROM (SELECT id, row_number() OVER (ORDER BY created_at, id) AS n
                      FROM todo_items WHERE user_id = CAST(:user AS uuid)) AS t
                WHERE todo_items.id = t.id
                """
            ),
            {"user": user},
        )
    _analyze(engine)


def _analyze(engine: Engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE users"))
        conn.execute(text(f"VACUUM ANALYZE {conn.execute(text(_TABLE)).scalar_one()}"))
        if conn.execute(text("SELECT to_regclass('todo_tags')")).scalar_one() is not None:
            conn.execute(text("VACUUM ANALYZE todo_tags"))


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM todos")).scalar_one())
