"""Which PostgreSQL the tests use, a clean database per test, the app under test, the
SQL audit's recorder, and the hook that feeds the conformance report."""

import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import environment
import pytest
import sqlalchemy
import whole_run
import yaml
from better_auth import BetterAuth
from databases import THROWAWAY, Databases
from fastapi.testclient import TestClient
from ports import free_port
from run_logs import RunLogs
from served import Serve, ServedService
from sql_audit import StatementLog
from sqlalchemy import text
from sqlalchemy.engine import Engine

from service import migrations, telemetry
from service.app import create_app
from service.db import Database, sqlalchemy_url
from service.embedded import EmbeddedPostgres
from service.settings import Settings
from service.store import bulk, keys, summary, todos
from service.store.named import statements

REPO = Path(__file__).resolve().parent.parent
SPEC_PATH = REPO / "openapi.yaml"


def read_yaml(path: Path) -> Any:
    """A YAML file, through libyaml's parser: the pure-Python one spent seconds of every
    process of the run on the contracts its modules read as they are imported."""
    return yaml.load(path.read_bytes(), Loader=yaml.CSafeLoader)


pytest_plugins = ["kit_jobs"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--req-results", default=None, help="write each test's outcome and req ids as JSON here"
    )


_made_here: list[Path] = []


@pytest.hookimpl(trylast=True)  # after kit_jobs names the run's owner
def pytest_configure(config: pytest.Config) -> None:
    made = whole_run.begin()
    if made is not None:
        _made_here.append(made)
    environment.capture()


def pytest_unconfigure(config: pytest.Config) -> None:
    for made in _made_here:
        shutil.rmtree(made, ignore_errors=True)


@pytest.fixture(scope="session")
def the_whole_run() -> whole_run.WholeRun:
    return whole_run.WholeRun()


@pytest.fixture(autouse=True)
def _an_audit_sees_the_whole_run(request: pytest.FixtureRequest) -> None:
    """An audit of the whole run (`audit_last`) reads what every test before it kept:
    alone, or after the others in one process (they sort last), or as the second step
    over the first's records (`nox -s tests`). Beside other tests on pytest-xdist
    workers it would read a part of the run and pass on it: it fails instead."""
    if request.node.get_closest_marker("audit_last") is None:
        return
    others = [i for i in request.session.items if i.get_closest_marker("audit_last") is None]
    if others and hasattr(request.config, "workerinput"):
        pytest.fail(
            "an audit of the whole run runs after it, not beside its tests on xdist workers:"
            " run `pytest -m 'not audit_last' -n 2` then `pytest -m audit_last` with the same"
            " TESTS_RUN (nox -s tests does; docs/testing.md)",
            pytrace=False,
        )


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """TEST_DATABASE_URL if set; else a container when a Docker engine answers; else the
    embedded PostgreSQL wheel. Never SQLite, never a mock."""
    if url := os.environ.get("TEST_DATABASE_URL"):
        yield url
    elif _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:17-alpine", driver=None) as container:
            yield container.get_connection_url()
    else:
        server = EmbeddedPostgres(
            tmp_path_factory.mktemp("postgres"), port=free_port(), settings=THROWAWAY
        )
        url = server.start()
        try:
            yield url
        finally:
            server.stop()


@pytest.fixture(scope="session")
def databases(postgres_url: str) -> Iterator[Databases]:
    """Migrated databases of their own, cloned from a template on the run's server."""
    made = Databases(postgres_url)
    yield made
    made.drop_all()


@pytest.fixture(scope="session")
def run_logs(postgres_url: str, the_whole_run: whole_run.WholeRun) -> Iterator[RunLogs]:
    """Every line the service logs in this run, in-process or served, for the scan that
    runs last."""
    logs = RunLogs(the_whole_run)
    logs.database_url(postgres_url)
    service_logger = logging.getLogger("service")
    level = service_logger.level
    service_logger.setLevel(logging.INFO)
    logging.getLogger().addHandler(logs)
    yield logs
    logging.getLogger().removeHandler(logs)
    service_logger.setLevel(level)


@pytest.fixture(autouse=True)
def _every_test_logs_into_the_run(run_logs: RunLogs) -> None:
    """Starts the collection with the first test, whichever it is."""


def make_settings(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "NEON_DATABASE_URL": url,
        "TODO_DB_POOL_TIMEOUT": 2,
        "TODO_DB_CONNECT_TIMEOUT": 2,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture(scope="session")
def settings(postgres_url: str) -> Settings:
    return make_settings(postgres_url)


@pytest.fixture(scope="session")
def statement_log(the_whole_run: whole_run.WholeRun) -> StatementLog:
    """Every statement every service engine sent during the whole run."""
    return StatementLog(the_whole_run)


@pytest.fixture(scope="session")
def database(settings: Settings, statement_log: StatementLog) -> Iterator[Database]:
    assert settings.database_url
    migrations.upgrade(settings.database_url)
    db = Database(settings)
    statement_log.attach(db)
    yield db
    db.close()


@pytest.fixture(scope="session")
def admin_engine(postgres_url: str, database: Database) -> Iterator[Engine]:
    """For the tests' own plumbing and inspection; not audited, not the service's."""
    engine = sqlalchemy.create_engine(sqlalchemy_url(postgres_url))
    yield engine
    engine.dispose()


# Fixtures that reach the database through the service: a test using one starts empty.
_SERVICE_CLIENTS = {"admin_engine", "client", "jwt_client"}


@pytest.fixture(autouse=True)
def clean_database(request: pytest.FixtureRequest) -> None:
    if not _SERVICE_CLIENTS & set(request.fixturenames):
        return
    engine: Engine = request.getfixturevalue("admin_engine")
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE users, todo_items, todo_tags, idempotency_keys"))


@pytest.fixture
def client(settings: Settings, database: Database) -> TestClient:
    return TestClient(create_app(settings, database), raise_server_exceptions=False)


@pytest.fixture(scope="session")
def better_auth(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases
) -> Iterator[BetterAuth]:
    """One real Better Auth server for the run; each test signs up its own users."""
    server = BetterAuth(tmp_path_factory.mktemp("better-auth"), databases.clone("better-auth"))
    yield server
    server.stop()


def jwt_settings(url: str, auth: BetterAuth, **overrides: Any) -> Settings:
    """`jwt` mode trusting `auth`, configured as the README tells a deployment to."""
    return make_settings(
        url,
        TODO_AUTH_MODE="jwt",
        TODO_JWT_JWKS_URL=auth.jwks_url,
        TODO_JWT_ISSUER=auth.base,
        TODO_JWT_AUDIENCE=auth.base,
        **overrides,
    )


@pytest.fixture
def jwt_client(postgres_url: str, better_auth: BetterAuth, database: Database) -> TestClient:
    """The service in `jwt` mode, verifying Better Auth's tokens."""
    app = create_app(jwt_settings(postgres_url, better_auth), database)
    return TestClient(app, raise_server_exceptions=False)


# The application's user filter in the store's statements: `user_id = <the caller>` on
# todos, keys and tags (qualified or not), `id = <the caller>` on users.
_USER_FILTER = re.compile(r"\b(?:\w+\.)?(?:user_id|id) = %\(user_id\)s")


@contextmanager
def unfiltered_service(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Iterator[TestClient]:
    """The service with the first wall removed from every store statement, on a pool of
    its own: the SQL audit would rightly flag these statements."""
    removed = 0
    every = {**statements(todos), **statements(keys), **statements(bulk), **statements(summary)}
    for name, statement in every.items():
        module, constant = name.rsplit(".", 1)
        unfiltered, found = _USER_FILTER.subn("true", statement)
        monkeypatch.setattr(f"{module}.{constant}", unfiltered)
        removed += found
    assert removed >= 10, "the store's statements no longer filter as this fixture expects"
    db = Database(settings)
    try:
        yield TestClient(create_app(settings, db), raise_server_exceptions=False)
    finally:
        db.close()


@pytest.fixture
def alice() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def bob() -> str:
    return str(uuid.uuid4())


class _Unavailable(telemetry.Listener):
    def __init__(self) -> None:
        self.causes: list[str | None] = []

    def problem(self, code: str, cause: str | None) -> None:
        if code == "SERVICE_UNAVAILABLE":
            self.causes.append(cause)


@pytest.fixture
def unavailable(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The cause of every 503 this process answers while the test runs, as the metrics
    hear it (`todo_unavailable_responses{cause}`)."""
    heard = _Unavailable()
    monkeypatch.setattr(telemetry, "listener", heard)
    return heard.causes


@pytest.fixture
def serve(tmp_path: Path, run_logs: RunLogs) -> Iterator[Serve]:
    """Starts `todo-service serve` processes (arguments as ServedService's), each
    stopped with SIGTERM at the end of the test."""
    started: list[ServedService] = []

    def start(
        database_url: str | None = None, workdir: Path | None = None, **options: Any
    ) -> ServedService:
        workdir = workdir or tmp_path / f"serve{len(started)}"
        service = ServedService(workdir, run_logs, database_url, **options)
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


@pytest.fixture
def spare_postgres(tmp_path: Path, run_logs: RunLogs) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of the test's own, which it may stop and start."""
    server = EmbeddedPostgres(tmp_path / "spare", port=free_port())
    server.start()
    run_logs.database_url(server.url)
    migrations.upgrade(server.url)
    try:
        yield server
    finally:
        server.stop()


# -- outcomes per requirement id, for contracts/conformance.py -----------------------

_outcomes: dict[str, dict[str, Any]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    entry = _outcomes.setdefault(report.nodeid, {"outcome": "not run", "req": []})
    if report.failed:
        entry["outcome"] = "failed"
    elif entry["outcome"] == "failed":
        return
    elif report.skipped:
        entry["outcome"] = "skipped"
    elif report.when == "call" and report.passed:
        entry["outcome"] = "passed"


def pytest_collection_finish(session: pytest.Session) -> None:
    for item in session.items:
        ids = [i for marker in item.iter_markers("req") for i in marker.args]
        _outcomes[item.nodeid] = {"outcome": "not run", "req": sorted(set(ids))}


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = session.config.getoption("--req-results")
    if path:
        Path(path).write_text(json.dumps(_outcomes, indent=2, sort_keys=True))
