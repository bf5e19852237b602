"""`nox -s bench`: the service against a naive reference, earlier builds (the released
1.0, and the build before 1.2), its options switched on against off, and the stack's
own ceilings, on the embedded PostgreSQL seeded with 1,000,000 todos, in one run on one
machine.

    python bench/run.py [--workers 2] [--duration 10] [--smoke] [--rounds 2]
                        [--baseline REV|none] [--previous REV|none]

Writes bench/results/latest.{md,json}. A benchmark, not a test: it fails only when the
harness itself breaks (a server that will not start, a run with socket errors, a
ceiling candidate that does not return the service's bytes).
"""

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import report
import seed
import sqlalchemy
from keys import AuthKeys
from layout import (
    HUGE,
    REST_FULL,
    REST_SMALL,
    TEN,
    THOUSAND,
    TOKEN_ISSUER,
    TOKEN_SUBJECT,
    TOKEN_TODOS,
    Range,
    owner,
    user_id,
)
from report import Result, twin
from sqlalchemy.engine import Engine
from statements import Renderer, verify, write_scripts

from service import migrations
from service.db import sqlalchemy_url
from service.embedded import EmbeddedPostgres, free_port
from service.identity import owner_id
from service.store.lists import SORTS

BENCH = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
RESULTS = BENCH / "results"


@dataclass
class Server:
    name: str
    command: list[str]
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log_dir: Path, probe: str) -> None:
        log = (log_dir / f"{self.name}.log").open("wb")
        command = [*self.command, "--port", str(self.port)]
        # Stopped at once: no load balancer waits on its readiness here.
        stopped_at_once = {"TODO_SHUTDOWN_GRACE_SECONDS": "0"}
        self.process = subprocess.Popen(
            command, env={**os.environ, **stopped_at_once, **self.env}, stdout=log, stderr=log
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.base + probe, timeout=2).status_code < 500:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"{self.name} did not start; see {log.name}")
            time.sleep(0.2)

    def rss_mb(self) -> float:
        assert self.process is not None
        root = psutil.Process(self.process.pid)
        total = 0
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += process.memory_info().rss
        return total / 2**20

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


class PeakRss:
    """Samples a server's whole process tree while a run lasts."""

    def __init__(self, server: Server | None) -> None:
        self.server, self.peak = server, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            assert self.server is not None
            self.peak = max(self.peak, self.server.rss_mb())

    def __enter__(self) -> "PeakRss":
        if self.server:
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self.server:
            self._thread.join()


Env = str | int


def _wrk(server: Server, op: str, connections: int, seconds: float, **env: Env) -> dict[str, Any]:
    threads = min(2, connections)
    done = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(BENCH / "wrk" / "load.lua"),
            server.base,
        ],
        env={
            **os.environ,
            "BENCH_OP": op,
            "BENCH_THREADS": str(threads),
            **{k: str(v) for k, v in env.items()},
        },
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    line = next(li for li in done.stdout.splitlines() if li.startswith("BENCH_RESULT "))
    figures: dict[str, Any] = json.loads(line.removeprefix("BENCH_RESULT "))
    if figures["socket_errors"]:
        sys.exit(f"wrk saw socket errors driving {server.name} {op}:\n{done.stdout}")
    return figures


def _pgbench(url: str, script: Path, connections: int, seconds: float) -> dict[str, Any]:
    parts = sqlalchemy.engine.make_url(sqlalchemy_url(url))
    done = subprocess.run(
        [
            "pgbench",
            "-n",
            "-M",
            "simple",
            "-c",
            str(connections),
            "-j",
            str(min(2, connections)),
            "-T",
            str(max(1, round(seconds))),
            "-D",
            "k=0",
            "-D",
            f"clients={connections}",
            "-f",
            str(script),
            "--log",
            f"--log-prefix={script.parent / script.stem}-{connections}",
            "-h",
            str(parts.host),
            "-p",
            str(parts.port),
            "-U",
            str(parts.username),
            str(parts.database),
        ],
        env={**os.environ, "PGPASSWORD": parts.password or ""},
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        cwd=script.parent,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"pgbench failed on {script.name}:\n{done.stdout}\n{done.stderr}")
    latencies = sorted(
        int(line.split()[2])
        for log in script.parent.glob(f"{script.stem}-{connections}.*")
        for line in log.read_text().splitlines()
    )
    for log in script.parent.glob(f"{script.stem}-{connections}.*"):
        log.unlink()
    tps = float(next(li for li in done.stdout.splitlines() if li.startswith("tps")).split()[2])
    return {
        "rps": tps,
        "p50_us": latencies[len(latencies) // 2],
        "p99_us": latencies[int(len(latencies) * 0.99)],
        "non_2xx": 0,
    }


@dataclass
class Bench:
    args: argparse.Namespace
    url: str
    workdir: Path
    keys: AuthKeys
    results: list[Result] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def connections(self) -> list[int]:
        return [1, 4] if self.args.smoke else [1, 32]

    def record(
        self,
        stage: str,
        target: str,
        op: str,
        connections: int,
        figures: dict[str, Any],
        rss: float | None,
        statement: str | None = None,
    ) -> None:
        result = Result(
            stage,
            target,
            op,
            connections,
            round(figures.get("rps") or figures["requests"] / (figures["duration_us"] / 1e6), 1),
            round(figures["p50_us"] / 1000, 2),
            round(figures["p99_us"] / 1000, 2),
            None if rss is None else round(rss, 1),
            figures["non_2xx"],
            statement,
        )
        self.results.append(result)
        print(
            f"{stage:9} {target:8} {op:12} c={connections:<3} {result.rps:>9.1f} req/s"
            f"  p50 {result.p50_ms:>7.2f} ms  p99 {result.p99_ms:>8.2f} ms"
            f"  rss {result.peak_rss_mb or 0:>6.1f} MB  non-2xx {result.non_2xx}"
            + (f"  [{statement}]" if statement else ""),
            flush=True,
        )

    def drive(
        self,
        stage: str,
        server: Server,
        op: str,
        connections: int,
        label: str | None = None,
        env: dict[str, Env] | None = None,
    ) -> None:
        env = env or {}
        if self.args.warmup:
            # Deletes warm up by reading the rows they are about to delete.
            _wrk(server, "get" if op == "delete" else op, connections, self.args.warmup, **env)
        with PeakRss(server) as rss:
            figures = _wrk(server, op, connections, self.args.duration, **env)
        self.record(stage, server.name, label or _label(op, env), connections, figures, rss.peak)


def _servers(
    url: str, workers: int, keys: AuthKeys, builds: dict[str, tuple[Path, str]]
) -> dict[str, Server]:
    uvicorn = [
        str(BIN / "uvicorn"),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
        "--app-dir",
        str(BENCH),
    ]
    serve = ["serve", "--workers", str(workers)]
    jwt_mode = {
        "TODO_AUTH_MODE": "jwt",
        "TODO_JWT_JWKS_URL": keys.jwks_url,
        "TODO_JWT_ISSUER": keys.issuer,
        "TODO_JWT_AUDIENCE": keys.issuer,
    }
    servers = {
        "ours": Server("ours", [str(BIN / "todo-service"), *serve], {"NEON_DATABASE_URL": url}),
        "ours-jwt": Server(
            "ours-jwt",
            [str(BIN / "todo-service"), *serve],
            {"NEON_DATABASE_URL": url, **jwt_mode},
        ),
        "no-rls": Server(
            "no-rls",
            [*uvicorn, "--factory", "without_row_security:build_app"],
            {"NEON_DATABASE_URL": url},
        ),
        "naive": Server("naive", [*uvicorn, "naive_app:app"], {"NAIVE_DATABASE_URL": url}),
        "ceiling": Server("ceiling", [*uvicorn, "ceiling_app:app"], {}),
    }
    for name, (program, build_url) in builds.items():
        servers[name] = Server(name, [str(program), *serve], {"NEON_DATABASE_URL": build_url})
    return servers


def _switches(sink: str) -> dict[str, tuple[dict[str, str], str]]:
    """Each option against the service without it: (environment, the operation it weighs
    on). The limits are set far above the load, so every request is checked and none
    refused; traces go to `sink`."""
    traced = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink}
    return {
        "rate-limited": ({"TODO_RATE_LIMIT": "100000000/60"}, "get"),
        "quota": ({"TODO_MAX_TODOS_PER_USER": "1000000"}, "create"),
        "metrics": ({"TODO_METRICS_PORT": str(free_port())}, "get"),
        "tracing-10%": (
            {
                **traced,
                "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": "0.1",
            },
            "get",
        ),
        "tracing-100%": ({**traced, "OTEL_TRACES_SAMPLER": "parentbased_always_on"}, "get"),
    }


OPS_READ: list[tuple[str, dict[str, Env]]] = [
    ("get", {}),
    ("list", {"BENCH_USER": TEN}),
    ("list", {"BENCH_USER": THOUSAND}),
]
OPS_WRITE: list[tuple[str, dict[str, Env]]] = [("create", {}), ("patch", {})]


def _stage(bench: Bench, stage: str, table: Range, servers: dict[str, Server]) -> list[Range]:
    """Every operation on ours and the naive reference, then the framework's ceiling;
    returns the rows left for later deletes."""
    connections = bench.connections
    reads, deletes = table.halves()
    pick = _span(reads)
    # Deletes: ours and naive at each connection count, one range per round against
    # each earlier build, one for the ceilings, and one to spare.
    slices = _delete_slices(deletes, 2 * len(connections) + 2 * bench.args.rounds + 2)
    for server in (servers["ours"], servers["naive"]):
        for op, env in [*OPS_READ, *OPS_WRITE]:
            for c in connections:
                bench.drive(stage, server, op, c, env={**pick, **env})
        for c in connections:
            part = slices.pop()
            bench.drive(stage, server, "delete", c, env=_span(part))
    for c in connections:
        bench.drive(stage, servers["ceiling"], "constant", c)
    return slices


def _features(bench: Bench, stage: str, table: Range, servers: dict[str, Server]) -> None:
    """What 1.1 adds, each beside what it is compared with, back to back: verified
    identity against the header, a 304 against the list it stands for, the 500th page
    against the first, an idempotent create against a plain one."""
    ours = servers["ours"]
    them = str(owner_id(TOKEN_ISSUER, TOKEN_SUBJECT))
    token = bench.keys.token(TOKEN_SUBJECT, seconds=4 * 3600)
    mine: dict[str, Env] = {"BENCH_FIRST": TOKEN_TODOS.first, "BENCH_LAST": TOKEN_TODOS.last}
    for round_ in (1, 2):
        for c in bench.connections:
            for server, auth in (
                (ours, f"X-User-ID: {them}"),
                (servers["ours-jwt"], f"Authorization: Bearer {token}"),
            ):
                label = f"get r{round_}"
                bench.drive(f"{stage} id", server, "get", c, label, {"BENCH_AUTH": auth, **mine})

    thousand = {"X-User-ID": user_id(THOUSAND)}
    etag = httpx.get(f"{ours.base}/api/v1/todos", headers=thousand, timeout=30).headers["etag"]
    for c in bench.connections:
        bench.drive(f"{stage} http", ours, "list", c, "list1000", {"BENCH_USER": THOUSAND})
        unchanged: dict[str, Env] = {"BENCH_USER": THOUSAND, "BENCH_IF_NONE_MATCH": etag}
        bench.drive(f"{stage} http", ours, "list", c, "list1000 304", unchanged)

    # The 500th page of 100 of the 100,000-todo user (after 49,900 todos), walked to
    # through the service; the smoke's small table has only the 1,000-todo user.
    deep_user, size, depth = (THOUSAND, 10, 50) if bench.args.smoke else (HUGE, 100, 500)
    cursor = None
    for _ in range(depth - 1):
        page = httpx.get(
            f"{ours.base}/api/v1/todos",
            params={"limit": size, **({"cursor": cursor} if cursor else {})},
            headers={"X-User-ID": user_id(deep_user)},
            timeout=30,
        ).json()
        cursor = page["next_cursor"]
    assert cursor, f"user {deep_user} has a page {depth} of {size}"
    for c in bench.connections:
        paged: dict[str, Env] = {"BENCH_USER": deep_user, "BENCH_LIMIT": size}
        bench.drive(f"{stage} http", ours, "page", c, "page1", paged)
        bench.drive(f"{stage} http", ours, "page", c, "page500", {"BENCH_CURSOR": cursor, **paged})

    for c in bench.connections:
        bench.drive(f"{stage} http", ours, "create", c, "create")
        bench.drive(f"{stage} http", ours, "create_once", c, "create_once", {"BENCH_RUN": str(c)})


V2_SORTS = list(SORTS)
V2_FILTERS = {
    "completed": "completed=true",
    "priority": "priority=high",
    # Tags are read from todo_tags: a common one, a rare one and one nobody has cost
    # differently (docs/design/v2-storage.md), so each is measured by name.
    "tag work (20%)": "tag=work",
    "tag rare (0.1%)": "tag=rare",
    "tag nobody has": "tag=absent",
    "due_after": "due_after=2026-07-01T00:00:00Z",
    "due_before": "due_before=2026-03-01T00:00:00Z",
}
V2_SEARCHES = {"q common": "q=parcel", "q rare": "q=12345", "q absent": "q=zqxjv"}


def _v2_lists(bench: Bench, admin: Engine, stage: str, servers: dict[str, Server]) -> None:
    """2.0's lists (issue 32) for the 100,000-todo user among 1,000,000 (the smoke: the
    1,000-todo user): a page of 50 under each sort, each single filter and `q` against
    the default page; the 500th page of each sort against its first. Each one's p50
    against the default's (or its first page's) goes in the notes as `v2_ratios`."""
    ours = servers["ours"]
    user, size, depth = (THOUSAND, 10, 50) if bench.args.smoke else (HUGE, 50, 500)
    seed.v2_members(admin, user_id(user))
    asked: dict[str, str] = {"default": f"limit={size}"}
    asked |= {f"sort {s}": f"limit={size}&sort={s}" for s in V2_SORTS}
    asked |= {f"filter {name}": f"limit={size}&{q}" for name, q in V2_FILTERS.items()}
    asked |= {name: f"limit={size}&{q}" for name, q in V2_SEARCHES.items()}
    deep: dict[str, str] = {}
    for sort in V2_SORTS:
        cursor = None
        for _ in range(depth - 1):
            page = httpx.get(
                f"{ours.base}/api/v2/todos",
                params={"limit": size, "sort": sort, **({"cursor": cursor} if cursor else {})},
                headers={"X-User-ID": user_id(user)},
                timeout=30,
            ).json()
            cursor = page["next_cursor"]
        assert cursor, f"user {user} has a page {depth} of {size} under {sort}"
        deep[f"page{depth} {sort}"] = f"limit={size}&sort={sort}&cursor={cursor}"
    ratios: dict[str, dict[int, float]] = {}
    for c in bench.connections:
        p50: dict[str, float] = {}
        for label, query in {**asked, **deep}.items():
            env: dict[str, Env] = {"BENCH_USER": user, "BENCH_QUERY": query}
            bench.drive(f"{stage} v2", ours, "v2page", c, label, env)
            p50[label] = bench.results[-1].p50_ms
        for label in asked:
            ratios.setdefault(label, {})[c] = round(p50[label] / p50["default"], 2)
        for label in deep:
            first = p50["sort " + label.split(" ", 1)[1]]
            ratios.setdefault(label, {})[c] = round(p50[label] / first, 2)
    bench.notes["v2_ratios"] = ratios


def _v2_summary(bench: Bench, admin: Engine, stage: str, servers: dict[str, Server]) -> None:
    """The summary (FR-214) of the 1,000-todo user and, but in the smoke, of the
    100,000-todo one, each against its own default page of 50 (the summary costs about
    what a page does at 1,000, issue 33); each ratio of p50s goes in the notes as
    `v2_summary_ratios`."""
    ours = servers["ours"]
    ratios: dict[str, dict[int, float]] = {}
    for user, size in [(THOUSAND, "1,000")] + ([] if bench.args.smoke else [(HUGE, "100,000")]):
        seed.v2_members(admin, user_id(user))
        for c in bench.connections:
            env: dict[str, Env] = {"BENCH_USER": user, "BENCH_QUERY": "limit=50"}
            bench.drive(f"{stage} v2", ours, "v2page", c, f"page of 50 of {size}", env)
            page = bench.results[-1].p50_ms
            bench.drive(f"{stage} v2", ours, "v2summary", c, f"summary of {size}", env)
            ratios.setdefault(f"summary of {size}", {})[c] = round(
                bench.results[-1].p50_ms / page, 2
            )
    bench.notes["v2_summary_ratios"] = ratios


def _timed(call: Any) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _bulk_round(base: str, user: str) -> dict[str, float]:
    """One round for a new user of 1,000 open todos (half of them high priority): toggle
    all in one request against 1,000 single PATCHes, and clear completed over 500 in one
    against 500 DELETEs; each the wall seconds of its requests, one after another on one
    connection."""
    with httpx.Client(base_url=base, headers={"X-User-ID": user}, timeout=60) as http:

        def sent(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
            answer = http.request(method, path, json=body)
            assert answer.status_code in (200, 201, 204), answer.text
            return answer.json() if answer.content else None

        def each(method: str, ids: list[str], body: dict[str, Any] | None = None) -> None:
            for todo in ids:
                sent(method, f"/api/v2/todos/{todo}", body)

        made = [
            sent(
                "POST", "/api/v2/todos", {"title": f"bulk {n}", "priority": ("low", "high")[n % 2]}
            )["id"]
            for n in range(1000)
        ]
        done = {"is_completed": True}
        seconds = {
            "toggle all (1 request)": _timed(
                lambda: sent("PATCH", "/api/v2/todos?completed=false", done)
            )
        }
        sent("PATCH", "/api/v2/todos?all=true", {"is_completed": False})
        seconds["1,000 single PATCHes"] = _timed(lambda: each("PATCH", made, done))
        sent("PATCH", "/api/v2/todos?all=true", {"is_completed": False})
        sent("PATCH", "/api/v2/todos?priority=high", done)
        seconds["clear completed (1 request, 500)"] = _timed(
            lambda: sent("DELETE", "/api/v2/todos?completed=true")
        )
        rest = [t["id"] for t in sent("GET", "/api/v2/todos?limit=1000")["items"]]
        assert len(rest) == 500, len(rest)
        seconds["500 single DELETEs"] = _timed(lambda: each("DELETE", rest))
    return seconds


def _v2_bulk(bench: Bench, servers: dict[str, Server]) -> None:
    """Issue 33's bulk figures: each form's seconds in every round (a new user each), and
    how many times fewer seconds the one request takes, as `v2_bulk` in the notes. A
    round first, unrecorded, warms the statements' plans and the pool, as `_warm` does
    for the rest: a single request would otherwise carry the whole of that cost, where
    a thousand spread it."""
    _bulk_round(servers["ours"].base, str(uuid.uuid4()))
    rounds = [
        _bulk_round(servers["ours"].base, str(uuid.uuid4())) for _ in range(bench.args.rounds)
    ]
    figures: dict[str, Any] = {k: [round(r[k], 4) for r in rounds] for k in rounds[0]}
    figures["toggle all: times fewer seconds"] = [
        round(r["1,000 single PATCHes"] / r["toggle all (1 request)"], 1) for r in rounds
    ]
    figures["clear completed: times fewer seconds"] = [
        round(r["500 single DELETEs"] / r["clear completed (1 request, 500)"], 1) for r in rounds
    ]
    for name, values in figures.items():
        print(f"bulk  {name}: {values}", flush=True)
    bench.notes["v2_bulk"] = figures


def _against_build(
    bench: Bench,
    stage: str,
    table: Range,
    servers: dict[str, Server],
    name: str,
    slices: list[Range],
) -> None:
    """The service (its twin) against an earlier build, each operation back to back, in
    alternated rounds at the higher connection count: the rounds' spread is the noise.
    Each runs on a database of its own, seeded the same way, so a delete range serves
    both."""
    pick = _span(table.halves()[0])
    c = bench.connections[-1]
    for round_ in range(1, bench.args.rounds + 1):
        order = (twin(name), name) if round_ % 2 else (name, twin(name))
        for op, env in [*OPS_READ, *OPS_WRITE]:
            for who in order:
                label = _label(op, env) + f" r{round_}"
                bench.drive(f"{stage} vs {name}", servers[who], op, c, label, {**pick, **env})
        part = slices.pop()
        for who in order:
            bench.drive(
                f"{stage} vs {name}", servers[who], "delete", c, f"delete r{round_}", _span(part)
            )


def _tool_calls(bench: Bench, stage: str, table: Range, servers: dict[str, Server]) -> None:
    """A create and a list of ten as MCP tool calls over streamable HTTP (/mcp, the service
    with TODO_MCP=on) against the REST calls they wrap, in alternated rounds at the
    higher connection count; the MCP server runs only meanwhile."""
    ours = servers["ours"]
    agents = Server("mcp", ours.command, {**ours.env, "TODO_MCP": "on"})
    agents.start(bench.workdir, "/health/ready")
    pick = _span(table.halves()[0])
    ten: dict[str, Env] = {**pick, "BENCH_USER": TEN}
    try:
        bench.notes.setdefault("idle_rss_mb", {})["mcp"] = round(agents.rss_mb(), 1)
        _wrk(agents, "mcp_list", 32, 1 if bench.args.smoke else 5, **ten)
        for round_ in range(1, bench.args.rounds + 1):
            for name, rest, tool, env in (
                ("create", "create", "mcp_create", pick),
                ("list10", "list", "mcp_list", ten),
            ):
                pair = ((ours, rest), (agents, tool))
                for server, op in pair if round_ % 2 else pair[::-1]:
                    label = f"{name} r{round_}"
                    bench.drive(f"{stage} mcp", server, op, bench.connections[-1], label, env)
    finally:
        agents.stop()


def _switched(bench: Bench, stage: str, table: Range, servers: dict[str, Server]) -> None:
    """Each option on against off, on the operation it weighs on, in alternated rounds
    at the higher connection count; the server with the option runs only meanwhile."""
    sink_port = free_port()
    sink = subprocess.Popen([sys.executable, str(BENCH / "otlp_sink.py"), str(sink_port)])
    try:
        for name, (env, op) in _switches(f"http://127.0.0.1:{sink_port}").items():
            _on_against_off(bench, stage, table, servers["ours"], name, env, op)
    finally:
        sink.terminate()
        sink.wait(timeout=30)


def _on_against_off(
    bench: Bench, stage: str, table: Range, ours: Server, name: str, env: dict[str, str], op: str
) -> None:
    pick = _span(table.halves()[0])
    switched = Server(name, ours.command, {**ours.env, **env})
    switched.start(bench.workdir, "/health/ready")
    try:
        bench.notes.setdefault("idle_rss_mb", {})[name] = round(switched.rss_mb(), 1)
        _wrk(switched, "get", 32, 1 if bench.args.smoke else 5, **pick)
        for round_ in range(1, bench.args.rounds + 1):
            order = (ours, switched) if round_ % 2 else (switched, ours)
            for server in order:
                label = f"{op} r{round_}"
                bench.drive(f"{stage} {name}", server, op, bench.connections[-1], label, pick)
    finally:
        switched.stop()


def _span(part: Range) -> dict[str, Env]:
    return {"BENCH_FIRST": part.first, "BENCH_LAST": part.last}


def _label(op: str, env: dict[str, Env]) -> str:
    if op != "list":
        return op
    return f"list{ {TEN: 10, THOUSAND: 1000, HUGE: 100000}[int(env['BENCH_USER'])] }"


def _second_wall(bench: Bench, stage: str, table: Range, servers: dict[str, Server]) -> None:
    """What row-level security costs: the same requests with and without it, back to
    back, at the higher connection count."""
    pick = _span(table.halves()[0])
    c = bench.connections[-1]
    for op, env in [*OPS_READ, *OPS_WRITE]:
        for name in ("ours", "no-rls"):
            bench.drive(f"{stage} wall", servers[name], op, c, env={**pick, **env})


def _ceiling_scripts(
    bench: Bench, table: Range, deletable: Range, servers: dict[str, Server]
) -> dict[str, list[tuple[str, Path]]]:
    """Every candidate statement as a pgbench script, each checked first against the
    service's own answer."""
    renderer = Renderer(bench.url)
    try:
        wrong = verify(renderer, servers["ours"].base, table.first, owner(table.first))
        if wrong:
            sys.exit(f"ceiling candidates that do not return the service's bytes: {wrong}")
        return write_scripts(renderer, bench.workdir, table.halves()[0], deletable)
    finally:
        renderer.close()


def _database_ceiling(bench: Bench, stage: str, scripts: dict[str, list[tuple[str, Path]]]) -> None:
    """pgbench over every candidate, with the HTTP servers stopped: PostgreSQL alone."""
    for op, candidates in scripts.items():
        for name, script in candidates:
            for c in bench.connections:
                figures = _pgbench(bench.url, script, c, bench.args.duration)
                bench.record(stage, "postgres", op, c, figures, None, name)


def _build(rev: str, workdir: Path) -> Path:
    """An earlier build installed from this repository's history into a virtual
    environment of its own, to be measured beside the service in one run."""
    source, venv = workdir / f"build-{rev}-src", workdir / f"build-{rev}-venv"
    source.mkdir()
    archive = subprocess.run(
        ["git", "archive", rev], cwd=BENCH.parent, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(source)], check=True)
    return venv / "bin" / "todo-service"


def _builds(bench: Bench, admin: Engine) -> dict[str, tuple[Path, str, Engine]]:
    """The earlier builds asked for (1.0, and the build before 1.2) and each one's
    twin, each with a database of its own on the same server, which its own `serve`
    migrates to its schema."""
    builds = {}
    for name, rev in (("1.0", bench.args.baseline), (bench.args.previous, bench.args.previous)):
        if rev == "none":
            continue
        programs = {name: _build(rev, bench.workdir), twin(name): BIN / "todo-service"}
        for server, program in programs.items():
            database = "build_" + server.replace(".", "_").replace("@", "_vs_")
            with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sqlalchemy.text(f'CREATE DATABASE "{database}"'))
            url = bench.url.rsplit("/", 1)[0] + "/" + database
            builds[server] = (program, url, sqlalchemy.create_engine(sqlalchemy_url(url)))
        bench.notes.setdefault("builds", {})[name] = rev
    return builds


def _warm(bench: Bench, servers: dict[str, Server]) -> None:
    # A fresh server's first seconds (connections opening, first calls) are slow; no
    # figure should include them.
    small: dict[str, Env] = {"BENCH_FIRST": REST_SMALL.first, "BENCH_LAST": REST_SMALL.last}
    for name, server in servers.items():
        if name not in {"ours-jwt", "ceiling"}:
            _wrk(server, "get", 32, 1 if bench.args.smoke else 5, **small)


def run(bench: Bench) -> None:
    admin = sqlalchemy.create_engine(sqlalchemy_url(bench.url))
    started = time.monotonic()
    seed.small_table(admin)
    them = str(owner_id(TOKEN_ISSUER, TOKEN_SUBJECT))
    seed.token_user(admin, them, TOKEN_ISSUER, TOKEN_SUBJECT, TOKEN_TODOS)
    bench.notes["seed_10k_s"] = round(time.monotonic() - started, 1)
    builds = _builds(bench, admin)
    engines = [admin, *(engine for _, _, engine in builds.values())]
    servers = _servers(
        bench.url,
        bench.args.workers,
        bench.keys,
        {name: (program, url) for name, (program, url, _) in builds.items()},
    )
    try:
        for server in servers.values():
            probe = "/constant" if server.name == "ceiling" else "/health/ready"
            server.start(bench.workdir, probe)
        for engine in engines[1:]:
            seed.small_table(engine)
        ours = servers["ours"]
        bench.notes["idle_rss_mb"] = {n: round(s.rss_mb(), 1) for n, s in servers.items()}
        _warm(bench, servers)
        # Growth, first half: the reads while the table holds 10,000 rows.
        small: dict[str, Env] = {"BENCH_FIRST": REST_SMALL.first, "BENCH_LAST": REST_SMALL.last}
        for op, env in OPS_READ:
            for c in bench.connections:
                bench.drive("10k", ours, op, c, env={**small, **env})
        table, stage = REST_SMALL, "10k"
        if not bench.args.smoke:
            started = time.monotonic()
            for engine in engines:
                seed.full_table(engine)
            bench.notes["seed_1M_s"] = round(time.monotonic() - started, 1)
            table, stage = REST_FULL, "1M"
        bench.notes["rows"] = seed.count(admin)
        slices = _stage(bench, stage, table, servers)
        _features(bench, stage, table, servers)
        _v2_lists(bench, admin, stage, servers)
        _v2_summary(bench, admin, stage, servers)
        _v2_bulk(bench, servers)
        for name in bench.notes.get("builds", {}):
            _against_build(bench, stage, table, servers, name, slices)
        _switched(bench, stage, table, servers)
        _tool_calls(bench, stage, table, servers)
        _second_wall(bench, stage, table, servers)
        if not bench.args.smoke:
            bench.notes["idle_rss_mb_before_100k"] = round(ours.rss_mb(), 1)
            bench.drive(stage, ours, "list", 1, env={"BENCH_USER": HUGE})
        scripts = _ceiling_scripts(bench, table, slices.pop(), servers)
    finally:
        for server in servers.values():
            server.stop()
    try:
        _database_ceiling(bench, stage, scripts)
    finally:
        for engine in engines:
            engine.dispose()


def _delete_slices(span: Range, parts: int) -> list[Range]:
    size = span.size // parts
    return [Range(span.first + i * size, span.first + (i + 1) * size - 1) for i in range(parts)]


def _roomy(pg: EmbeddedPostgres) -> str:
    """Started with room for every server's pool at once: seven services stay up side by
    side, and at PostgreSQL's default of 100 connections the last one started was refused
    (503s counted as its throughput)."""
    admin = sqlalchemy.create_engine(sqlalchemy_url(pg.start()), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text("ALTER SYSTEM SET max_connections = 400"))
    admin.dispose()
    pg.stop()
    return pg.start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--smoke", action="store_true", help="seconds-long, small table")
    parser.add_argument(
        "--baseline",
        default="c4d5653",
        help="the released build to measure beside the service (a git revision, or none)",
    )
    parser.add_argument(
        "--previous",
        default="2ed00a6",
        help="the build before 1.2's restructuring, measured the same way (or none)",
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternated rounds of each back-to-back comparison"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if shutil.which("wrk") is None or shutil.which("pgbench") is None:
        sys.exit("wrk and pgbench are needed: apt-get install wrk postgresql-client")
    workdir = Path(tempfile.mkdtemp(prefix="todo-bench-"))
    pg = EmbeddedPostgres(workdir / "postgres")
    url = _roomy(pg)
    keys = AuthKeys(TOKEN_ISSUER)
    try:
        migrations.upgrade(url)
        bench = Bench(args, url, workdir, keys)
        run(bench)
    finally:
        keys.stop()
        pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    report.write(bench.results, bench.notes, args, args.out)


if __name__ == "__main__":
    main()
