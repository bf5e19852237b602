"""The conformance kit's runs, for its own tests, and the other long runs of a served
service (an operator's load on `serve`): each run is a job. A test names the jobs it
reads with `@pytest.mark.kit("job", ...)`; a module registers its jobs with `@job(...)`
(the kit's shared runs in tests/kit_runs.py, the rest beside their tests).

The jobs the selected tests name, and only those, run in a process of their own
(tests/job_runner.py), several at once: it is started by the first process of the run
that has collected the tests (a pytest-xdist worker, or pytest itself without one),
under a lock in the run's directory (tests/whole_run.py), and stopped by the pytest
process that began the run as it ends (or, were that process killed, when it sees it
gone). Each job's result is a file; a test, on whichever worker, waits for it with a
bounded wait that fails naming the job, at once when the jobs' process has died. The
implementations the jobs check are served by one fleet (tests/fleet.py), each on a
database of its own (tests/databases.py), and this service by `todo-service serve`,
as its users serve it.

A pytest plugin (conftest.py loads it)."""

import fcntl
import json
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

import environment
import psutil
import pytest
import whole_run
from better_auth import BetterAuth
from databases import Databases
from fleet import Fleet, Instance
from ports import free_port
from run_logs import RunLogs
from served import ServedService
from waits import until

HERE = Path(__file__).resolve().parent
# Runs at once, beside the other tests: the machine has two cores, and a run spends
# most of its time waiting.
AT_ONCE = 4
ORIGIN = "https://app.example.com"
# The pytest process that began the run (the pytest-xdist controller, or pytest alone):
# the jobs' process lives as long as it does.
OWNER = "TESTS_OWNER"
# How long a test waits for a job's result: longer than any job takes on a loaded
# machine, shorter than pytest-timeout's backstop (pyproject.toml), so that a stuck job
# fails its tests naming it.
WAIT = float(os.environ.get("KIT_JOB_WAIT", "540"))


@dataclass(frozen=True)
class Job:
    run: Callable[["Kits"], Any]
    # The fleet's instances it checks, by name: (implementation, environment).
    instances: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    # This service, served (SERVED's names).
    services: tuple[str, ...] = ()
    # Whether it signs users up with Better Auth.
    better_auth: bool = False
    # About how long it takes, in seconds: the longest start first.
    weight: float = 5


JOBS: dict[str, Job] = {}


def job(
    name: str,
    *,
    instances: dict[str, tuple[str, dict[str, str]]] | None = None,
    services: tuple[str, ...] = (),
    better_auth: bool = False,
    weight: float = 5,
) -> Callable[[Callable[["Kits"], Any]], Callable[["Kits"], Any]]:
    def register(run: Callable[[Kits], Any]) -> Callable[[Kits], Any]:
        assert name not in JOBS, f"two jobs named {name}"
        JOBS[name] = Job(run, instances or {}, services, better_auth, weight)
        return run

    return register


def _served_env(name: str, auth: BetterAuth | None) -> dict[str, str]:
    """This service as each job sees it: header mode with CORS and a metrics listener,
    or jwt mode trusting a real Better Auth."""
    if name == "header":
        return {"TODO_CORS_ORIGINS": ORIGIN, "TODO_METRICS_PORT": str(free_port())}
    assert auth is not None
    return {
        "TODO_AUTH_MODE": "jwt",
        "TODO_JWT_JWKS_URL": auth.jwks_url,
        "TODO_JWT_ISSUER": auth.base,
        "TODO_JWT_AUDIENCE": auth.base,
        "TODO_CORS_ORIGINS": ORIGIN,
    }


SERVED = ("header", "jwt")


class Stoppable(Protocol):
    def stop(self) -> Any: ...


Running = TypeVar("Running", bound=Stoppable)


class Scratch:
    """Directories of the jobs' own, kept until the run's directory goes (the audits of
    the whole run read the logs written there)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def mktemp(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{quote(name, safe='')}-", dir=self.root))


class Kits:
    """What a job can reach: the fleet's instances, this service served, Better Auth,
    and directories of its own. Started once, before the jobs (tests/job_runner.py)."""

    def __init__(
        self,
        jobs: dict[str, Job],
        scratch: Scratch,
        databases: Databases,
        logs: RunLogs,
        better_auth: BetterAuth | None,
    ) -> None:
        self._jobs = jobs
        self._scratch = scratch
        self._databases = databases
        self._logs = logs
        self.better_auth = better_auth
        self._fleet: Fleet | None = None
        self._services: dict[str, ServedService] = {}
        self._kept: list[Stoppable] = []

    def start(self) -> None:
        instances = {
            instance: Instance(implementation, self._databases.clone(instance), env)
            for j in self._jobs.values()
            for instance, (implementation, env) in j.instances.items()
        }
        wanted = {s for j in self._jobs.values() for s in j.services}
        for name in SERVED:
            if name in wanted:
                self._services[name] = ServedService(
                    self._scratch.mktemp(f"kit-{name}"),
                    self._logs,
                    self._databases.clone(f"kit-{name}"),
                    extra_env=_served_env(name, self.better_auth),
                )
        if instances:
            log = self._scratch.mktemp("fleet") / "fleet.log"
            self._logs.follow("fleet", log)
            self._fleet = Fleet(log, instances)
        for service in self._services.values():
            service.wait_ready()

    def described(self) -> dict[str, Any]:
        """What a test may reach of what was started, for kits.json."""
        return {
            "services": {
                name: {
                    "base": s.base,
                    "metrics_url": s.metrics_url,
                    "database_url": s.database_url,
                }
                for name, s in self._services.items()
            },
            "instances": {
                name: {"base": i.base, "database_url": i.database_url}
                for name, i in (self._fleet.instances.items() if self._fleet else ())
            },
        }

    def __getitem__(self, instance: str) -> Instance:
        assert self._fleet is not None
        return self._fleet[instance]

    def service(self, name: str) -> ServedService:
        return self._services[name]

    @property
    def server_url(self) -> str:
        """The jobs' PostgreSQL server, as the session's own database."""
        return self._databases.url

    def database(self, name: str) -> str:
        """A migrated database of the job's own, empty."""
        return self._databases.clone(name)

    def serve(self, name: str, database_url: str, **options: Any) -> ServedService:
        """This service served for the job alone (options as ServedService's)."""
        return self.keep(
            ServedService(self._scratch.mktemp(name), self._logs, database_url, **options)
        )

    def keep(self, running: Running) -> Running:
        """Stopped with the jobs' process (a job's result may still need it), unless
        stopped before."""
        self._kept.append(running)
        return running

    def scratch(self, name: str) -> Path:
        """A temporary directory of the job's own."""
        return self._scratch.mktemp(name)

    def directory(self, name: str) -> Path:
        """Where a run's reports go: KIT_REPORT_DIR/name when set (`nox -s report` keeps
        them beside the requirements report), otherwise a temporary directory."""
        kept = os.environ.get("KIT_REPORT_DIR")
        if not kept:
            return self._scratch.mktemp(f"kit-{name}".replace(":", "-").replace(" ", "-"))
        directory = Path(kept) / name
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def stop(self) -> None:
        for service in [*self._services.values(), *self._kept]:
            service.stop()
        if self._fleet is not None:
            self._fleet.stop()


# -- the files the jobs' process and the tests share ---------------------------------------


def jobs_directory() -> Path:
    """This run's jobs: their request, their process's log and pid, and their results."""
    run = whole_run.directory()
    assert run is not None and OWNER in os.environ, "pytest_configure begins the run"
    return run / f"jobs-{os.environ[OWNER]}"


def result_file(directory: Path, name: str) -> Path:
    return directory / "results" / f"{quote(name, safe='')}.pickle"


def running(directory: Path) -> bool:
    """Whether the jobs' process is still there (or still being started)."""
    pid_file = directory / "pid"
    if not pid_file.exists():
        return True
    return alive(int(pid_file.read_text()))


def alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


@dataclass(frozen=True)
class Reached:
    """A service or instance the jobs' process started, as a test reaches it."""

    base: str
    database_url: str
    metrics_url: str | None = None


class Scheduled:
    """The jobs the selected tests name, as a test reads them: each result waited for."""

    def __init__(self, directory: Path, names: set[str]) -> None:
        self._directory = directory
        self._names = names
        self._loaded: dict[str, Any] = {}

    def _wait(self, path: Path, what: str) -> None:
        log = self._directory / "runner.log"
        until(
            lambda: path.exists() or not running(self._directory),
            WAIT,
            f"{what} (the jobs' process logs to {log})",
            every=0.2,
        )
        if not path.exists():
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            pytest.fail(f"the jobs' process ended without {what}:\n{tail}", pytrace=False)

    def __getitem__(self, name: str) -> Any:
        assert name in self._names, f"job {name!r}: name it in the test's kit marker"
        if name not in self._loaded:
            path = result_file(self._directory, name)
            self._wait(path, f"job {name!r}'s result")
            self._loaded[name] = pickle.loads(path.read_bytes())
        outcome, value = self._loaded[name]
        if outcome == "error":
            pytest.fail(f"job {name!r} failed:\n{value}", pytrace=False)
        return value

    def _started(self, kind: str, name: str) -> Reached:
        path = self._directory / "kits.json"
        self._wait(path, "the services the jobs check")
        started = json.loads(path.read_text())
        if "error" in started:
            pytest.fail(f"the jobs' services did not start:\n{started['error']}", pytrace=False)
        return Reached(**started[kind][name])

    def service(self, name: str) -> Reached:
        return self._started("services", name)

    def instance(self, name: str) -> Reached:
        return self._started("instances", name)


# -- the plugin --------------------------------------------------------------------------


def _wanted(items: list[pytest.Item]) -> list[str]:
    names = {n for item in items for marker in item.iter_markers("kit") for n in marker.args}
    unknown = names - set(JOBS)
    if unknown:
        raise pytest.UsageError(f"no such kit jobs: {sorted(unknown)}")
    return sorted(names, key=lambda n: -JOBS[n].weight)


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the process that begins the run
        os.environ[OWNER] = str(os.getpid())


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests that read the kit's jobs last but for the audits, so that the jobs have
    had the longest to run in the background; the audits of the whole run after all."""
    items.sort(
        key=lambda item: (
            item.get_closest_marker("audit_last") is not None,
            item.get_closest_marker("kit") is not None,
        )
    )


_started: list[subprocess.Popen[bytes]] = []


def pytest_collection_finish(session: pytest.Session) -> None:
    """The first process to have collected starts the jobs the selected tests name (each
    pytest-xdist worker collects the same tests; one that replaces a crashed worker
    finds them started)."""
    names = _wanted(session.items)
    if not names or session.config.option.collectonly:
        return
    directory = jobs_directory()
    directory.mkdir(exist_ok=True)
    with (directory / "lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (directory / "request.json").exists():
            return
        # The jobs' process imports the modules of the tests that read them, as pytest
        # did: that registers the same jobs there.
        modules = sorted(
            {
                i.module.__name__
                for i in session.items
                if isinstance(i, pytest.Function) and i.get_closest_marker("kit")
            }
        )
        (directory / "request.json").write_text(json.dumps({"jobs": names, "modules": modules}))
        env = environment.child(
            PYTEST_XDIST_WORKER=None,
            PYTEST_XDIST_WORKER_COUNT=None,
            PYTEST_XDIST_TESTRUNUID=None,
            TESTS_PROCESS="jobs",
        )
        with (directory / "runner.log").open("w") as log:
            process = subprocess.Popen(
                [sys.executable, str(HERE / "job_runner.py"), str(directory)],
                cwd=HERE,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a worker killed midway leaves the jobs running
            )
        (directory / "pid").write_text(str(process.pid))
        _started.append(process)


@pytest.fixture(scope="session")
def kit_jobs(request: pytest.FixtureRequest) -> Scheduled:
    """Every job a selected test names, started as the tests were collected."""
    return Scheduled(jobs_directory(), set(_wanted(request.session.items)))


_STOPPED_WITHIN = 120


@pytest.hookimpl(tryfirst=True)  # before conftest.py removes the run's directory
def pytest_unconfigure(config: pytest.Config) -> None:
    """The process that began the run stops the jobs' process, and waits for it."""
    if hasattr(config, "workerinput") or OWNER not in os.environ:
        return
    directory = jobs_directory()
    if not (directory / "request.json").exists():
        return
    (directory / "stop").touch()
    try:
        until(
            lambda: (directory / "stopped").exists() or not running(directory),
            _STOPPED_WITHIN,
            "the kit's jobs' process to stop",
        )
    except AssertionError as stuck:
        print(f"{stuck}: see {directory / 'runner.log'}", file=sys.stderr)
    for process in _started:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
