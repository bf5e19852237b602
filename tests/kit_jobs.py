"""The conformance kit's runs, for its own tests, and the other long runs of a served
service (an operator's load on `serve`): each run is a job, started when the test
session starts and several at once, in the background of the other tests (most of a run
is waiting on sockets), so that a test reading a run waits only for what is not done
yet. A test names the jobs it reads with `@pytest.mark.kit("job", ...)`; a
test module registers its jobs with `@job(...)`; the `kit_jobs` fixture starts the
jobs the selected tests name, no others. The implementations they check are served by
one fleet (tests/fleet.py), each on a database of its own (tests/databases.py), and
this service by `todo-service serve`, as its users serve it.

A pytest plugin (conftest.py loads it): the jobs outlive any one test module."""

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
from better_auth import BetterAuth
from databases import Databases
from fleet import Fleet, Instance
from ports import free_port
from run_logs import RunLogs
from scheduling import is_jobs_worker
from served import ServedService

# Runs at once, beside the other tests: the machine has two cores, and a run spends
# most of its time waiting.
AT_ONCE = 4
ORIGIN = "https://app.example.com"


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


class Kits:
    """What a job can reach: the fleet's instances, this service served, Better Auth,
    and directories of its own. Started by the first job, whichever thread runs it."""

    def __init__(
        self,
        jobs: dict[str, Job],
        factory: pytest.TempPathFactory,
        databases: Databases,
        logs: RunLogs,
        better_auth: BetterAuth | None,
    ) -> None:
        self._jobs = jobs
        self._factory = factory
        self._databases = databases
        self._logs = logs
        self.better_auth = better_auth
        self._started = threading.Lock()
        self._fleet: Fleet | None = None
        self._services: dict[str, ServedService] = {}
        self._kept: list[Stoppable] = []
        self._up = False

    def start(self) -> None:
        with self._started:
            if self._up:
                return
            instances = {
                instance: Instance(implementation, self._databases.clone(instance), env)
                for j in self._jobs.values()
                for instance, (implementation, env) in j.instances.items()
            }
            wanted = {s for j in self._jobs.values() for s in j.services}
            for name in SERVED:
                if name in wanted:
                    self._services[name] = ServedService(
                        self._factory.mktemp(f"kit-{name}"),
                        self._logs,
                        self._databases.clone(f"kit-{name}"),
                        extra_env=_served_env(name, self.better_auth),
                    )
            if instances:
                log = self._factory.mktemp("fleet") / "fleet.log"
                self._logs.follow("fleet", log)
                self._fleet = Fleet(log, instances)
            for service in self._services.values():
                service.wait_ready()
            self._up = True

    def __getitem__(self, instance: str) -> Instance:
        assert self._fleet is not None
        return self._fleet[instance]

    def service(self, name: str) -> ServedService:
        return self._services[name]

    @property
    def server_url(self) -> str:
        """The run's PostgreSQL server, as the session's own database."""
        return self._databases.url

    def database(self, name: str) -> str:
        """A migrated database of the job's own, empty."""
        return self._databases.clone(name)

    def serve(self, name: str, database_url: str, **options: Any) -> ServedService:
        """This service served for the job alone (options as ServedService's)."""
        return self.keep(
            ServedService(self._factory.mktemp(name), self._logs, database_url, **options)
        )

    def keep(self, running: Running) -> Running:
        """Stopped with the session (a job's result may still need it), unless stopped before."""
        self._kept.append(running)
        return running

    def scratch(self, name: str) -> Path:
        """A temporary directory of the job's own."""
        return self._factory.mktemp(name)

    def directory(self, name: str) -> Path:
        """Where a run's reports go: KIT_REPORT_DIR/name when set (`nox -s report` keeps
        them beside the requirements report), otherwise a temporary directory."""
        kept = os.environ.get("KIT_REPORT_DIR")
        if not kept:
            return self._factory.mktemp(f"kit-{name}".replace(":", "-").replace(" ", "-"))
        directory = Path(kept) / name
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def stop(self) -> None:
        for service in [*self._services.values(), *self._kept]:
            service.stop()
        if self._fleet is not None:
            self._fleet.stop()


class Scheduled:
    """The jobs the selected tests name, started once, by `start`."""

    def __init__(self, kits: Kits, jobs: dict[str, Job]) -> None:
        self._kits = kits
        self._jobs = jobs
        self._pool = ThreadPoolExecutor(AT_ONCE, thread_name_prefix="kit-job")
        self._futures: dict[str, Future[Any]] = {}

    def start(self, better_auth: Callable[[], BetterAuth]) -> None:
        if self._futures or not self._jobs:
            return
        if any(j.better_auth or "jwt" in j.services for j in self._jobs.values()):
            self._kits.better_auth = better_auth()
        for name, j in self._jobs.items():
            self._futures[name] = self._pool.submit(_started(self._kits, j.run))

    def __getitem__(self, name: str) -> Any:
        assert name in self._futures, f"job {name!r}: name it in the test's kit marker"
        return self._futures[name].result()

    def service(self, name: str) -> ServedService:
        self._kits.start()
        return self._kits.service(name)

    def instance(self, name: str) -> Instance:
        self._kits.start()
        return self._kits[name]

    def stop(self) -> None:
        self._pool.shutdown(cancel_futures=True)
        self._kits.stop()


def _wanted(items: list[pytest.Item]) -> list[str]:
    names = {n for item in items for marker in item.iter_markers("kit") for n in marker.args}
    unknown = names - set(JOBS)
    assert not unknown, f"no such kit jobs: {sorted(unknown)}"
    return sorted(names, key=lambda n: -JOBS[n].weight)


def _started(kits: Kits, run: Callable[[Kits], Any]) -> Callable[[], Any]:
    def started() -> Any:
        kits.start()
        return run(kits)

    return started


@pytest.fixture(scope="session")
def kit_jobs(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    databases: Databases,
    run_logs: RunLogs,
) -> Iterator[Scheduled]:
    """Every job a selected test names (started by `_kit_jobs_begin`)."""
    jobs = {name: JOBS[name] for name in _wanted(request.session.items)}
    scheduled = Scheduled(Kits(jobs, tmp_path_factory, databases, run_logs, None), jobs)
    try:
        yield scheduled
    finally:
        scheduled.stop()


@pytest.fixture(autouse=True)
def _kit_jobs_begin(request: pytest.FixtureRequest) -> None:
    """The jobs start with the session's first test, in the background of the others;
    when worker processes share the tests (pytest-xdist), with the first test of the
    one that runs the tests reading them (tests/scheduling.py)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is not None and not is_jobs_worker(worker):
        return
    kit_jobs: Scheduled = request.getfixturevalue("kit_jobs")
    kit_jobs.start(lambda: request.getfixturevalue("better_auth"))
