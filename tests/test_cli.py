"""`todo-service serve` on a fresh machine: embedded PostgreSQL, data that survives a
restart, and the database stopped when the service is sent SIGTERM."""

import os
import subprocess
import uuid
from pathlib import Path

import httpx
import psutil
import pytest
from served import EXECUTABLE, Serve

from service.db import direct_url, sqlalchemy_url
from service.embedded import EmbeddedPostgres
from service.settings import Settings


def _postgres_running(pgdata: Path) -> bool:
    for process in psutil.process_iter(["name", "cmdline"]):
        if process.info["name"] == "postgres" and str(pgdata) in " ".join(
            process.info["cmdline"] or []
        ):
            return True
    return False


@pytest.mark.req("FR-005")
def test_serve_without_a_url_runs_embedded_postgres_and_stops_it_on_sigterm(
    tmp_path: Path, serve: Serve
) -> None:
    user = {"X-User-ID": str(uuid.uuid4())}
    pgdata = tmp_path / ".todo-service" / "pgdata"

    first = serve(workdir=tmp_path)
    first.wait_ready()
    created = httpx.post(f"{first.base}/api/v1/todos", json={"title": "persist me"}, headers=user)
    assert created.status_code == 201
    output = first.stop()
    assert first.process.returncode == 0
    assert f"data in {pgdata}" in output
    assert not _postgres_running(pgdata), "SIGTERM must stop the embedded PostgreSQL"

    second = serve(workdir=tmp_path)
    second.wait_ready()
    listed = httpx.get(f"{second.base}/api/v1/todos", headers=user).json()
    second.stop()
    assert [t["title"] for t in listed["items"]] == ["persist me"]
    assert not _postgres_running(pgdata)


@pytest.mark.req("FR-005")
@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            "postgres://u:p@ep-x-pooler.eu.aws.neon.tech/db?sslmode=require&channel_binding=require",
            "postgresql+psycopg2://u:p@ep-x-pooler.eu.aws.neon.tech/db?sslmode=require&channel_binding=require",
        ),
        ("postgresql://u@localhost:5433/db", "postgresql+psycopg2://u@localhost:5433/db"),
    ],
)
def test_neon_style_urls_are_accepted_with_their_options(given: str, expected: str) -> None:
    assert sqlalchemy_url(given) == expected


@pytest.mark.req("FR-005", "FR-007")
def test_migrations_use_the_direct_host_of_a_pooler_url() -> None:
    pooled = "postgresql://u:p@ep-cool-1-pooler.eu-central-1.aws.neon.tech/db?sslmode=require"
    assert (
        direct_url(pooled)
        == "postgresql://u:p@ep-cool-1.eu-central-1.aws.neon.tech/db?sslmode=require"
    )
    assert direct_url("postgresql://u@localhost/db") == "postgresql://u@localhost/db"


@pytest.mark.req("FR-007")
def test_pool_sizes_and_timeouts_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TODO_DB_POOL_SIZE", "7")
    monkeypatch.setenv("TODO_DB_MAX_OVERFLOW", "3")
    monkeypatch.setenv("TODO_DB_POOL_TIMEOUT", "1.5")
    monkeypatch.setenv("TODO_DB_STATEMENT_TIMEOUT_MS", "1234")
    settings = Settings()
    assert (settings.pool_size, settings.max_overflow, settings.pool_timeout) == (7, 3, 1.5)
    assert settings.statement_timeout_ms == 1234


@pytest.mark.req("FR-166", "FR-005")
def test_db_url_gives_a_second_serve_the_embedded_database_and_its_port_stays(
    tmp_path: Path, serve: Serve
) -> None:
    """`todo-service db-url` prints the embedded database's URL, running or not; a second
    `serve` given it shares the todos; the port is the same at the next start."""
    unmade = subprocess.run(
        [str(EXECUTABLE), "db-url"], cwd=tmp_path, env=_embedded(), capture_output=True,
        text=True, check=False,
    )  # fmt: skip
    assert unmade.returncode == 1 and "todo-service serve" in unmade.stderr
    assert unmade.stderr.count("\n") == 1 and "Traceback" not in unmade.stderr

    owner = serve(workdir=tmp_path)
    owner.wait_ready()
    url = _db_url(tmp_path)
    second = serve(database_url=url, workdir=tmp_path / "second")
    second.wait_ready()
    user = {"X-User-ID": str(uuid.uuid4())}
    made = httpx.post(f"{second.base}/api/v1/todos", json={"title": "shared"}, headers=user)
    assert made.status_code == 201
    read = httpx.get(f"{owner.base}/api/v1/todos/{made.json()['id']}", headers=user)
    assert read.json() == made.json()
    second.stop()
    owner.stop()
    assert _db_url(tmp_path) == url, "the URL changed when the database stopped"
    again = EmbeddedPostgres(tmp_path / ".todo-service")
    assert again.start() == url, "the port moved at the next start"
    again.stop()


def _embedded() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "NEON_DATABASE_URL"}


def _db_url(workdir: Path) -> str:
    done = subprocess.run(
        [str(EXECUTABLE), "db-url"], cwd=workdir, env=_embedded(), capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    url = done.stdout.strip()
    assert url.startswith("postgresql://postgres:") and url.endswith("/postgres"), url
    return url
