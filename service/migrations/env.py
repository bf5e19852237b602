"""Alembic environment: one transaction for the whole upgrade, serialised by a
transaction-scoped advisory lock so several `serve` processes may start at once, even
where only a transaction pooler is reachable."""

from alembic import context
from sqlalchemy import create_engine, pool, text

from service.db import sqlalchemy_url

_MIGRATION_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('todo-service:migrations'))")


def run() -> None:
    url = sqlalchemy_url(context.config.attributes["url"])
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, transaction_per_migration=False)
        with context.begin_transaction():
            connection.execute(_MIGRATION_LOCK)
            context.run_migrations()
    engine.dispose()


run()
