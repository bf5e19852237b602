"""The connection is the one the URL asked for."""

import pytest
from sqlalchemy import text

from service.db import Database


@pytest.mark.req("FR-005")
def test_the_connection_is_encrypted_exactly_when_the_url_requires_it(
    postgres_url: str, database: Database
) -> None:
    # The service's own pool, outside a request scope: as the request role, PostgreSQL
    # hides a session's TLS details from it.
    with database.engine.connect() as conn:
        encrypted = conn.execute(
            text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        ).scalar_one()
    assert encrypted == ("sslmode=require" in postgres_url)
