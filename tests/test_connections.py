"""The connections are the ones the URL asked for, and no more than the pool allows."""

import asyncio
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest
from api import TODOS, as_user
from served import Serve
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url

from service.db import Database, sqlalchemy_url
from service.store.todos import WHOLE_LIST_LIMIT


@pytest.mark.req("FR-005")
def test_the_connection_is_encrypted_exactly_when_the_url_requires_it(
    postgres_url: str, database: Database, admin_engine: Engine
) -> None:
    asyncio.run(database.ping())  # so the service's pool holds a connection
    # Seen from outside: as the request role, PostgreSQL hides a session's TLS details.
    with admin_engine.connect() as conn:
        encrypted = set(
            conn.execute(
                text(
                    "SELECT ssl FROM pg_stat_ssl JOIN pg_stat_activity USING (pid)"
                    " WHERE application_name = 'todo-service'"
                )
            ).scalars()
        )
    assert encrypted == {"sslmode=require" in postgres_url}


def _db_sockets(process: psutil.Process, db_port: int) -> set[int]:
    """The local ports of a process's open connections to the database's port."""
    try:
        connections = process.net_connections(kind="tcp")
    except psutil.NoSuchProcess:
        return set()
    return {c.laddr.port for c in connections if c.raddr and c.raddr.port == db_port}


@pytest.mark.req("FR-007")
def test_one_pool_per_worker_bounds_its_connections_under_mixed_load(
    postgres_url: str, database: Database, admin_engine: Engine, serve: Serve
) -> None:
    """Streamed lists (each holding a connection for its life), pages and gets at 32
    connections: no worker ever has more than TODO_DB_POOL_SIZE + TODO_DB_MAX_OVERFLOW,
    seen from the worker's sockets and from pg_stat_activity alike."""
    size, overflow = 3, 2
    streamer, pager = str(uuid.uuid4()), str(uuid.uuid4())
    with admin_engine.begin() as conn:
        for user, count in ((streamer, 2 * WHOLE_LIST_LIMIT + 50), (pager, 40)):
            conn.execute(text("INSERT INTO users (id) VALUES (:u)"), {"u": user})
            conn.execute(
                text(
                    "INSERT INTO todos (user_id, title) SELECT :u, 'n' || n"
                    " FROM generate_series(1, :count) AS n"
                ),
                {"u": user, "count": count},
            )
        some = str(
            conn.execute(
                text("SELECT id FROM todos WHERE user_id = :u LIMIT 1"), {"u": pager}
            ).scalar_one()
        )
    settings = {"TODO_DB_POOL_SIZE": str(size), "TODO_DB_MAX_OVERFLOW": str(overflow)}
    service = serve(postgres_url, workers=2, extra_env=settings)
    service.wait_ready(in_a_row=40)
    db_port = make_url(sqlalchemy_url(postgres_url)).port or 5432
    requests = [
        (f"{TODOS}", streamer),
        (f"{TODOS}?limit=7", pager),
        (f"{TODOS}/{some}", pager),
    ]
    stop = threading.Event()
    statuses: Counter[int] = Counter()
    most = {"sockets": 0, "pg_stat_activity": 0}

    def load(n: int) -> None:
        with httpx.Client(base_url=service.base, timeout=30) as http:
            while not stop.is_set():
                path, user = requests[n % len(requests)]
                statuses[http.get(path, headers=as_user(user)).status_code] += 1

    def sample() -> None:
        workers = [w for w in psutil.Process(service.process.pid).children(recursive=True)]
        while not stop.is_set():
            held = [_db_sockets(worker, db_port) for worker in workers]
            with admin_engine.connect() as conn:
                ports = set(
                    conn.execute(
                        text(
                            "SELECT client_port FROM pg_stat_activity"
                            " WHERE application_name = 'todo-service'"
                        )
                    ).scalars()
                )
            most["sockets"] = max(most["sockets"], *map(len, held))
            most["pg_stat_activity"] = max(
                most["pg_stat_activity"], *(len(ports & mine) for mine in held)
            )
            time.sleep(0.02)

    with ThreadPoolExecutor(33) as pool:
        sampler = pool.submit(sample)
        loaders = [pool.submit(load, n) for n in range(32)]
        time.sleep(6)
        stop.set()
        for done in (sampler, *loaders):
            done.result(timeout=60)
    assert set(statuses) == {200}, statuses
    assert sum(statuses.values()) > 100
    assert size <= most["sockets"] <= size + overflow, most
    assert most["pg_stat_activity"] <= size + overflow, most
