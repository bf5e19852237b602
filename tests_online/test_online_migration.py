"""FR-221: the 2.0 migration runs online. A 1.3 build serves a steady load of reads and
writes on 1,000,000 todos while `todo-service migrate` of this checkout takes the
schema to 2.0: no request fails, none takes a second, and afterwards the 1.3 build
still answers as 1.3 did, and what it wrote meanwhile reads right under 2.0.

`nox -s migration` runs it (never `nox -s tests`: it takes minutes), with the 1.3 build
installed in a virtual environment of its own (TODO_V13_SERVICE, its `todo-service`).
The figures (requests, latencies, the migration's duration) are printed.
"""

import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy

from service.db import sqlalchemy_url
from service.embedded import EmbeddedPostgres, free_port
from service.migrations import newest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import seed  # noqa: E402
from layout import USERS, user_id  # noqa: E402

V1_MEMBERS = {"id", "user_id", "title", "description", "is_completed", "created_at", "updated_at"}
# The embedded server keeps nothing past the run: it need not wait for the disk.
THROWAWAY = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
CLIENTS = 4
SLOW = 1.0


def _environment(url: str, data: Path) -> dict[str, str]:
    """The builds' environment: this one's, without TODO_V13_SERVICE (a TODO_ variable
    the service does not know stops it at start), with the database and a data folder."""
    kept = {k: v for k, v in os.environ.items() if k != "TODO_V13_SERVICE"}
    return kept | {"NEON_DATABASE_URL": url, "TODO_DATA_DIR": str(data)}


def _program(name: str) -> Path:
    return Path(sys.executable).parent / name


@dataclass
class Served:
    base: str
    process: subprocess.Popen[bytes]
    log: Path


def _serve(program: Path, url: str, workdir: Path, name: str) -> Served:
    port = free_port()
    log = workdir / f"{name}.log"
    env = _environment(url, workdir / name)
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(program), "serve", "--port", str(port)],
            cwd=workdir, env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                return Served(base, process, log)
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{name} did not become ready:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def _stop(served: Served) -> None:
    served.process.terminate()
    try:
        served.process.wait(30)
    except subprocess.TimeoutExpired:
        served.process.kill()


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    made = Path(tempfile.mkdtemp(prefix="todo-online-migration-"))
    yield made
    shutil.rmtree(made, ignore_errors=True)


@pytest.fixture(scope="module")
def database_url(workdir: Path) -> Iterator[str]:
    server = EmbeddedPostgres(workdir / "postgres", port=free_port(), settings=THROWAWAY)
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def v13() -> Path:
    program = os.environ.get("TODO_V13_SERVICE")
    if not program:
        pytest.fail("TODO_V13_SERVICE names the 1.3 build's todo-service (nox -s migration)")
    return Path(program)


@dataclass
class Load:
    """A few clients of the 1.3 build, each creating, reading, completing, listing and
    deleting its user's todos in a loop, every request timed."""

    base: str
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    # Todos written and kept: (user, id, title word, completed).
    kept: list[tuple[str, str, str, bool]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _timed(
        self, client: httpx.Client, method: str, path: str, expected: int, **kw: Any
    ) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            answer = client.request(method, path, **kw)
        except httpx.HTTPError as error:
            with self.lock:
                self.latencies.append(time.perf_counter() - started)
                self.failures.append(f"{method} {path}: {error!r}")
            return None
        elapsed = time.perf_counter() - started
        with self.lock:
            self.latencies.append(elapsed)
            if answer.status_code != expected:
                self.failures.append(f"{method} {path}: {answer.status_code} {answer.text[:200]}")
                return None
        return answer

    def client(self, number: int) -> None:
        chance = random.Random(number)
        with httpx.Client(base_url=self.base, timeout=30) as client:
            turn = 0
            while not self.stop.is_set():
                turn += 1
                user = user_id(chance.randrange(4, USERS + 1))
                headers = {"X-User-ID": user}
                word = f"mig{number}x{turn}z"
                body = {"title": f"Written while migrating {word}", "description": f"d {word}"}
                # Every other create is keyed: 1.3 spells its answer with a cast `::todos`.
                keyed = {"Idempotency-Key": word} if turn % 2 else {}
                created = self._timed(
                    client, "POST", "/api/v1/todos", 201, json=body, headers=headers | keyed
                )
                if created is None:
                    continue
                if set(created.json()) != V1_MEMBERS:
                    with self.lock:
                        self.failures.append(f"POST answered other than 1.x: {created.text}")
                todo = created.json()["id"]
                self._timed(client, "GET", f"/api/v1/todos/{todo}", 200, headers=headers)
                completed = turn % 2 == 0
                if completed:
                    self._timed(
                        client, "PATCH", f"/api/v1/todos/{todo}", 200,
                        json={"is_completed": True}, headers=headers,
                    )  # fmt: skip
                self._timed(client, "GET", "/api/v1/todos?limit=20", 200, headers=headers)
                if turn % 3 == 0:
                    self._timed(client, "DELETE", f"/api/v1/todos/{todo}", 204, headers=headers)
                else:
                    with self.lock:
                        self.kept.append((user, todo, word, completed))

    def __enter__(self) -> "Load":
        self.threads = [
            threading.Thread(target=self.client, args=(n,), daemon=True) for n in range(CLIENTS)
        ]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def _smoke_v1(base: str) -> None:
    """1.3's own answers, each todo exactly 1.x's, through every statement 1.3 has: a
    create, a keyed create and its replay (1.3 casts a record `::todos`), get, PATCH and
    DELETE plain and with If-Match (and a stale one refused), the whole list, and pages."""
    headers = {"X-User-ID": str(uuid.uuid4())}
    with httpx.Client(base_url=base, timeout=30, headers=headers) as client:
        created = client.post("/api/v1/todos", json={"title": "After 2.0", "description": None})
        assert created.status_code == 201, created.text
        todo = created.json()
        assert set(todo) == V1_MEMBERS
        assert todo["is_completed"] is False and todo["created_at"] == todo["updated_at"]
        keyed = {"Idempotency-Key": str(uuid.uuid4())}
        once = client.post("/api/v1/todos", json={"title": "Keyed"}, headers=keyed)
        assert once.status_code == 201, once.text
        assert set(once.json()) == V1_MEMBERS
        again = client.post("/api/v1/todos", json={"title": "Keyed"}, headers=keyed)
        assert again.json() == once.json(), again.text
        read = client.get(f"/api/v1/todos/{todo['id']}")
        assert read.status_code == 200 and read.json() == todo
        etag = {"If-Match": read.headers["etag"]}
        patched = client.patch(f"/api/v1/todos/{todo['id']}", json={"is_completed": True})
        assert patched.status_code == 200, patched.text
        assert set(patched.json()) == V1_MEMBERS and patched.json()["is_completed"] is True
        stale = client.patch(f"/api/v1/todos/{todo['id']}", json={"title": "x"}, headers=etag)
        assert stale.status_code == 412, stale.text
        etag = {"If-Match": patched.headers["etag"]}
        described = client.patch(
            f"/api/v1/todos/{todo['id']}", json={"description": "d"}, headers=etag
        )
        assert described.status_code == 200 and set(described.json()) == V1_MEMBERS
        listed = client.get("/api/v1/todos")
        assert listed.status_code == 200
        items = listed.json()["items"]
        assert [t["id"] for t in items] == [once.json()["id"], todo["id"]]
        assert all(set(t) == V1_MEMBERS for t in items)
        first = client.get("/api/v1/todos", params={"limit": 1})
        second = client.get(
            "/api/v1/todos", params={"limit": 1, "cursor": first.json()["next_cursor"]}
        )
        paged = first.json()["items"] + second.json()["items"]
        assert [t["id"] for t in paged] == [t["id"] for t in items], second.text
        assert all(set(t) == V1_MEMBERS for t in paged)
        etag = {"If-Match": described.headers["etag"]}
        assert client.delete(f"/api/v1/todos/{todo['id']}", headers=etag).status_code == 204
        assert client.delete(f"/api/v1/todos/{once.json()['id']}").status_code == 204
        assert client.get(f"/api/v1/todos/{todo['id']}").status_code == 404


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@pytest.mark.req("FR-221")
@pytest.mark.timeout(1800)  # minutes on a loaded machine: past the suite's backstop of 600 s
def test_the_2_0_migration_runs_under_a_1_3_build_serving_1m_todos(
    workdir: Path, database_url: str, v13: Path
) -> None:
    env = _environment(database_url, workdir / "m")
    started = time.monotonic()
    subprocess.run([str(v13), "migrate"], check=True, env=env, cwd=workdir)
    engine = sqlalchemy.create_engine(sqlalchemy_url(database_url))
    seed.small_table(engine)
    seed.full_table(engine)
    rows = seed.count(engine)
    assert rows >= 1_000_000
    seeded = time.monotonic() - started

    old = _serve(v13, database_url, workdir, "v13")
    try:
        _smoke_v1(old.base)
        with Load(old.base) as load:
            time.sleep(3)
            before = len(load.latencies)
            began = time.monotonic()
            migrated = subprocess.run(
                [str(_program("todo-service")), "migrate"],
                env=env, cwd=workdir, capture_output=True, text=True, check=False,
            )  # fmt: skip
            duration = time.monotonic() - began
            during = len(load.latencies) - before
            time.sleep(3)
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        latencies = load.latencies
        print(
            f"\nFR-221 figures: {rows:,} todos seeded in {seeded:.1f} s;"
            f" migration to 2.0 took {duration:.1f} s under load;"
            f" {len(latencies):,} requests by {CLIENTS} clients ({during:,} while migrating),"
            f" {len(load.failures)} failed; latency max {max(latencies) * 1000:.0f} ms,"
            f" p99 {_percentile(latencies, 0.99) * 1000:.0f} ms,"
            f" p50 {_percentile(latencies, 0.5) * 1000:.0f} ms"
        )
        assert not load.failures, load.failures[:10]
        assert during > 0
        assert max(latencies) < SLOW, f"slowest request {max(latencies):.3f} s"
        with engine.connect() as conn:
            version = conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version"))
            assert version.scalar_one() == newest()
        _written_by_1_3_read_right_under_2_0(database_url, workdir, load)
        # The rolling deploy: the 1.3 build, still on the connections it held before the
        # migration, answers exactly as 1.3 through 1.x's view of the table.
        _smoke_v1(old.base)
    finally:
        _stop(old)


def _written_by_1_3_read_right_under_2_0(database_url: str, workdir: Path, load: Load) -> None:
    """The todos the 1.3 build wrote before and during the migration have their search
    text and completed_at under 2.0: q finds each, case-folded, and completed_at is set
    exactly when the todo was completed."""
    new = _serve(_program("todo-service"), database_url, workdir, "v2")
    try:
        kept = load.kept
        assert kept, "the load kept none of its todos"
        picked = kept[:: max(1, len(kept) // 40)]
        with httpx.Client(base_url=new.base, timeout=30) as client:
            for user, todo, word, completed in picked:
                headers = {"X-User-ID": user}
                read = client.get(f"/api/v2/todos/{todo}", headers=headers)
                assert read.status_code == 200, read.text
                assert (read.json()["completed_at"] is not None) is completed, read.json()
                found = client.get("/api/v2/todos", params={"q": word.upper()}, headers=headers)
                assert found.status_code == 200, found.text
                assert [t["id"] for t in found.json()["items"]] == [todo]
            # And 1.3's todos read under 1.x through the 2.0 build, exactly as 1.3 spelled them.
            user, todo, _, _ = picked[0]
            v1 = client.get(f"/api/v1/todos/{todo}", headers={"X-User-ID": user})
            assert v1.status_code == 200 and set(v1.json()) == V1_MEMBERS
    finally:
        _stop(new)
