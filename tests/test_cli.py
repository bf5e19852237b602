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

from service.cli import loopback
from service.db import direct_url, sqlalchemy_url
from service.embedded import EmbeddedPostgres
from service.settings import Settings, unknown_variables


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


def _refused(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`todo-service ARGS` that must refuse to start, bounded in case it starts: on a
    database that is not there, with no TODO_* of the caller's but `env`."""
    inherited = {k: v for k, v in os.environ.items() if not k.upper().startswith("TODO_")}
    return subprocess.run(
        [str(EXECUTABLE), *args],
        env={**inherited, "NEON_DATABASE_URL": "postgresql://u@127.0.0.1:9/db", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and not done.stdout
    [line] = done.stderr.splitlines()
    return line


@pytest.mark.req("FR-101", "FR-166")
def test_a_mistyped_setting_stops_serve_naming_the_setting_it_meant() -> None:
    """Ignored, `TODO_AUTH_MOD=jwt` would leave the service in header mode, trusting
    whatever user a caller names."""
    line = _one_line(_refused("serve", "--port", "9", TODO_AUTH_MOD="jwt"))
    assert line == (
        "todo-service: TODO_AUTH_MOD: the service has no such setting; did you mean TODO_AUTH_MODE?"
    )


@pytest.mark.req("FR-166")
def test_an_unknown_setting_like_no_other_stops_every_command_that_reads_settings() -> None:
    line = _one_line(_refused("migrate", TODO_COLOUR="blue"))
    assert line.startswith("todo-service: TODO_COLOUR: the service has no such setting;")
    assert "did you mean" not in line


@pytest.mark.req("FR-166")
def test_every_todo_variable_the_project_reads_elsewhere_is_known() -> None:
    """`serve` sets TODO_RUN_DIR for its workers, `todo-service mcp` and the kit read
    their own; a shell that sets them for those still starts the service."""
    elsewhere = {
        "TODO_RUN_DIR": "/tmp",
        "TODO_MCP_TOKEN": "t",
        "TODO_MCP_USER_ID": "u",
        "TODO_CONFORMANCE_BASE_URL": "http://127.0.0.1:9",
        "todo_auth_mode": "header",  # read in any case
    }
    assert unknown_variables(elsewhere) == []
    assert unknown_variables({"TODO_METRICS_PORTS": "9464"}) == [
        "TODO_METRICS_PORTS: the service has no such setting; did you mean TODO_METRICS_PORT?"
    ]


@pytest.mark.req("FR-166")
def test_a_log_level_logging_does_not_know_stops_serve_with_one_line() -> None:
    line = _one_line(_refused("serve", "--port", "9", TODO_LOG_LEVEL="loud"))
    assert line == (
        "todo-service: TODO_LOG_LEVEL: must be one of debug, info, warning, error, critical"
    )


@pytest.mark.req("FR-166")
@pytest.mark.parametrize(("given", "taken"), [("debug", "DEBUG"), ("Warning", "WARNING")])
def test_log_levels_are_taken_in_any_case(
    given: str, taken: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TODO_LOG_LEVEL", given)
    assert Settings().log_level == taken


@pytest.mark.req("FR-101")
def test_header_mode_on_every_address_needs_to_be_asked_for_by_name() -> None:
    line = _one_line(_refused("serve", "--host", "0.0.0.0", "--port", "9"))
    assert line.startswith("todo-service: --host 0.0.0.0 serves beyond this machine in header")
    assert "TODO_AUTH_MODE=header" in line


@pytest.mark.req("FR-101")
@pytest.mark.parametrize(
    ("host", "alone"),
    [
        ("0.0.0.0", False),
        ("::", False),
        ("192.0.2.10", False),
        ("", False),
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
    ],
)
def test_only_loopback_is_this_machines_alone(host: str, alone: bool) -> None:
    assert loopback(host) is alone


@pytest.mark.req("FR-101")
def test_header_mode_asked_for_on_every_address_says_so_first(
    serve: Serve, postgres_url: str
) -> None:
    said = serve(postgres_url, host="0.0.0.0", extra_env={"TODO_AUTH_MODE": "header"})
    said.wait_ready()
    first = said.stop().splitlines()[0]
    assert first.startswith("todo-service: header mode on 0.0.0.0: callers are not verified")
    assert said.process.returncode == 0
