"""Alembic environment: the migrations serialised by an advisory lock held for the
session, so several `serve` processes may start at once: the others wait, then find
the schema migrated. (A migration may commit as it goes, as 0007 does to build its
indexes concurrently, so the lock outlives any one transaction; migrations run on the
direct host, never through a transaction pooler: service.db.direct_url.)"""

import time

from alembic import context
from sqlalchemy import create_engine, pool, text

from service.db import sqlalchemy_url

_MIGRATION_LOCK = text("SELECT pg_try_advisory_lock(hashtext('todo-service:migrations'))")


def run() -> None:
    url = sqlalchemy_url(context.config.attributes["url"])
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        # Asked for again and again rather than waited for: a session waiting for the
        # lock holds a snapshot, which an index built concurrently by the session
        # holding it would wait for in turn.
        while not connection.execute(_MIGRATION_LOCK).scalar():
            connection.rollback()
            time.sleep(0.1)
        connection.commit()
        context.configure(connection=connection, transaction_per_migration=False)
        with context.begin_transaction():
            context.run_migrations()
    # Closing the connection releases the lock.
    engine.dispose()


run()
