"""`serve --workers N` under its supervisor, as an orchestrator runs it: workers that die
with a supervisor killed outright, leaving the port to its restart; and SIGTERM drained,
readiness turning 503 while the listener still takes every request a load balancer
sends until it has noticed."""

import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import psutil
import pytest
from api import TODOS, as_user, problem, todo_url
from fastapi.testclient import TestClient
from served import Serve
from sqlalchemy import text
from sqlalchemy.engine import Engine
from waits import until

from service import draining
from service.db import Database

# A short grace: what matters is its order of events, not its length. A load balancer
# that probes readiness every PROBE_SECONDS stops sending to a process this long after
# its first 503 (a real one: a few probes, seconds apart), well within the grace, as an
# operator sets it.
GRACE_SECONDS = 3.0
NOTICED_AFTER_SECONDS = 1.0
PROBE_SECONDS = 0.05


@pytest.mark.req("FR-166")
def test_workers_die_with_a_killed_supervisor_and_a_restart_takes_the_port(
    serve: Serve, postgres_url: str, database: Database
) -> None:
    first = serve(postgres_url, workers=2)
    first.wait_ready(in_a_row=4)
    workers = [
        child
        for child in psutil.Process(first.process.pid).children()
        if "spawn_main" in " ".join(child.cmdline())  # not multiprocessing's resource tracker
    ]
    assert len(workers) == 2, workers

    first.process.kill()
    killed = time.monotonic()
    until(lambda: not [w for w in workers if _running(w)], 2, "the workers to die")
    assert time.monotonic() - killed < 2
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{first.base}/health/live", timeout=2)

    again = serve(postgres_url, port=first.port)
    again.wait_ready()
    assert "address already in use" not in again.output.lower()


def _running(process: psutil.Process) -> bool:
    """Dead, a process may stay a zombie until whoever inherited it reaps it."""
    try:
        return bool(process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


@dataclass
class _Load:
    """What the clients saw, each answer with the time it was asked at."""

    sigterm_at: float = 0.0
    created: list[str] = field(default_factory=list)
    answers: list[tuple[float, int, str | None]] = field(default_factory=list)
    failures: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answered(self, asked: float, answer: httpx.Response) -> None:
        with self.lock:
            self.answers.append((asked, answer.status_code, answer.headers.get("connection")))
            if answer.status_code == 201:
                self.created.append(answer.json()["id"])

    def failed(self, asked: float, error: Exception) -> None:
        with self.lock:
            self.failures.append((asked, repr(error)))


@pytest.mark.req("FR-006", "EC-5")
def test_sigterm_drains_readiness_first_and_no_request_is_reset_or_lost(
    serve: Serve, postgres_url: str, database: Database, admin_engine: Engine
) -> None:
    service = serve(
        postgres_url,
        workers=2,
        extra_env={"TODO_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS)},
    )
    service.wait_ready(in_a_row=4)
    user = str(uuid.uuid4())
    load = _Load()
    balanced_out = threading.Event()  # the load balancer has noticed: no more requests
    # Each probe's answer (None: nothing answers) and when it came.
    probes: list[tuple[float, int | None]] = []

    def client(keep_alive: bool) -> None:
        kept = httpx.Client(base_url=service.base, headers=as_user(user), timeout=15)
        n = 0
        while not balanced_out.is_set():
            n += 1
            asked = time.monotonic()
            try:
                if keep_alive:
                    made = kept.post(TODOS, json={"title": f"kept {n}"})
                    load.answered(asked, made)
                    if made.status_code == 201:
                        asked = time.monotonic()
                        load.answered(asked, kept.get(todo_url(made.json()["id"])))
                else:
                    fresh = httpx.post(
                        f"{service.base}{TODOS}",
                        json={"title": f"fresh {n}"},
                        headers=as_user(user),
                        timeout=15,
                    )
                    load.answered(asked, fresh)
            except httpx.TransportError as error:
                load.failed(asked, error)
            time.sleep(0.01)
        kept.close()

    def balancer() -> None:
        """Probes readiness on fresh connections until nothing answers; stops the
        clients NOTICED_AFTER_SECONDS after its first 503."""
        noticing = threading.Timer(NOTICED_AFTER_SECONDS, balanced_out.set)
        while True:
            try:
                answer = httpx.get(f"{service.base}/health/ready", timeout=5)
                status: int | None = answer.status_code
            except httpx.TransportError:
                status = None
            at = time.monotonic()
            probes.append((at, status))
            if status is None:
                return
            if status == 503 and noticing.ident is None:
                noticing.start()
            time.sleep(PROBE_SECONDS)

    clients = [threading.Thread(target=client, args=(kind,)) for kind in (True, True, False, False)]
    for thread in clients:
        thread.start()
    probing = threading.Thread(target=balancer)
    probing.start()
    time.sleep(0.5)
    load.sigterm_at = time.monotonic()
    service.process.terminate()
    probing.join(timeout=GRACE_SECONDS + 20)
    balanced_out.set()
    for thread in clients:
        thread.join(timeout=20)
    assert service.process.wait(timeout=20) == 0

    sigterm = load.sigterm_at
    first_503 = min(at for at, status in probes if status == 503)
    closed = min(at for at, status in probes if status is None)
    during_grace = [a for a in load.answers if sigterm <= a[0] < closed]
    figures = (
        f"requests during the grace: {len(during_grace)}, readiness 503s:"
        f" {sum(1 for _, s in probes if s == 503)}, first 503 after"
        f" {first_503 - sigterm:.2f} s, listener closed after {closed - sigterm:.2f} s,"
        f" resets or failures: {len(load.failures)}, created: {len(load.created)}"
    )
    print(figures)
    assert first_503 - sigterm < 1.5, figures  # the supervisor passes SIGTERM on within 0.5 s
    assert closed - sigterm >= GRACE_SECONDS, figures
    assert not load.failures, f"{figures}: {load.failures[:5]}"
    assert during_grace and {status for _, status, _ in during_grace} <= {200, 201}, figures
    assert {status for _, status, _ in load.answers} <= {200, 201}, figures
    drained = [said for asked, _, said in during_grace if asked > first_503 + 0.1]
    assert drained and all(said == "close" for said in drained), "keep-alive while draining"
    with admin_engine.connect() as conn:
        stored = set(
            conn.execute(
                text("SELECT id::text FROM todos WHERE user_id = :u"), {"u": user}
            ).scalars()
        )
    assert stored == set(load.created), "a write was lost, or one nobody was told of was made"


@pytest.fixture
def draining_started() -> Iterator[None]:
    """This process drains, as a worker does after SIGTERM, until the test ends."""
    draining.started.set()
    yield
    draining.started.clear()


@pytest.mark.req("FR-006")
def test_readiness_while_draining_is_a_503_that_says_so_and_the_api_still_answers(
    client: TestClient, alice: str, draining_started: None
) -> None:
    ready = client.get("/health/ready")
    body = problem(ready, 503, "SERVICE_UNAVAILABLE")
    assert "shutting down" in body["detail"] and int(ready.headers["retry-after"]) >= 1
    listed = client.get(TODOS, headers=as_user(alice))
    assert listed.status_code == 200 and listed.headers["connection"] == "close"


@pytest.mark.req("FR-006")
def test_a_second_sigterm_ends_the_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """What uvicorn's handler would do (close the listener) happens after the grace, or
    at once on a second SIGTERM."""
    stopped: list[int] = []
    monkeypatch.setattr(draining, "started", threading.Event())
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stopped.append(signum))
    try:
        draining.drain_on_sigterm(30)
        signal.raise_signal(signal.SIGTERM)
        assert draining.started.is_set() and stopped == []
        signal.raise_signal(signal.SIGTERM)
        assert stopped == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)
