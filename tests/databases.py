"""Databases of their own for the tests that need one (a served instance whose rows a
test counts, a kit run that must not meet another's todos): each cloned from one
migrated template with `CREATE DATABASE ... TEMPLATE`, which takes milliseconds where
migrating takes a second. On the test run's PostgreSQL, whichever it is: the embedded
one, or TEST_DATABASE_URL (whose role needs CREATEDB, as Neon's owner role has)."""

import re
import secrets
import threading
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy
from sqlalchemy.engine import Engine

from service import migrations
from service.db import sqlalchemy_url

# The embedded PostgreSQL of a test run keeps nothing past the run: it need not wait for
# the disk at every commit (a third of a kit run's time, measured), nor have room for
# fewer than the dozens of instances the kit's tests serve at once.
THROWAWAY = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "400",
}


def named(url: str, database: str) -> str:
    """`url`, naming another database on the same server."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


class Databases:
    def __init__(self, url: str) -> None:
        self.url = url
        # Names of this run's own: a server given by TEST_DATABASE_URL may outlive it.
        self._prefix = f"t{secrets.token_hex(3)}"
        self._admin: Engine = sqlalchemy.create_engine(
            sqlalchemy_url(url), isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.NullPool
        )
        self._made: list[str] = []
        self._lock = threading.Lock()
        self._template = f"{self._prefix}_template"
        self._execute(f"CREATE DATABASE {self._template}")
        migrations.upgrade(named(url, self._template))
        # PostgreSQL copies no database another session is in, and a pooler (PgBouncer)
        # keeps the migration's server connection open after the migration has ended.
        self._execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            f" WHERE datname = '{self._template}' AND pid <> pg_backend_pid()"
        )

    def _execute(self, statement: str) -> None:
        with self._admin.connect() as conn:
            conn.exec_driver_sql(statement)

    def clone(self, name: str) -> str:
        """A migrated database of its own, empty; its URL."""
        word = re.sub(r"\W", "_", name.lower())
        with self._lock:
            database = f"{self._prefix}_{len(self._made)}_{word}"[:63]
            self._made.append(database)
        self._execute(f"CREATE DATABASE {database} TEMPLATE {self._template}")
        return named(self.url, database)

    def drop_all(self) -> None:
        for database in [*self._made, self._template]:
            self._execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        self._admin.dispose()
