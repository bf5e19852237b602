"""`nox -s bench`: the service against a naive reference and the stack's own ceilings,
on the embedded PostgreSQL seeded with 1,000,000 todos, in one run on one machine.

    python bench/run.py [--workers 2] [--duration 10] [--smoke]

Writes bench/results/latest.{md,json}. A benchmark, not a test: it fails only when the
harness itself breaks (a server that will not start, a run with socket errors).
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import report
import seed
import sqlalchemy
from layout import HUGE, REST_FULL, REST_SMALL, TEN, THOUSAND, Range
from report import Result
from statements import write_scripts

from service import migrations
from service.db import sqlalchemy_url
from service.embedded import EmbeddedPostgres, free_port

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
        self.process = subprocess.Popen(
            command, env={**os.environ, **self.env}, stdout=log, stderr=log
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


def _wrk(server: Server, op: str, connections: int, seconds: float, **env: int) -> dict[str, Any]:
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
    ) -> None:
        result = Result(
            stage, target, op, connections, round(figures.get("rps") or
            figures["requests"] / (figures["duration_us"] / 1e6), 1),
            round(figures["p50_us"] / 1000, 2), round(figures["p99_us"] / 1000, 2),
            None if rss is None else round(rss, 1), figures["non_2xx"],
        )  # fmt: skip
        self.results.append(result)
        print(
            f"{stage:5} {target:8} {op:9} c={connections:<3} {result.rps:>9.1f} req/s"
            f"  p50 {result.p50_ms:>7.2f} ms  p99 {result.p99_ms:>8.2f} ms"
            f"  rss {result.peak_rss_mb or 0:>6.1f} MB  non-2xx {result.non_2xx}",
            flush=True,
        )

    def drive(self, stage: str, server: Server, op: str, connections: int, **env: int) -> None:
        if self.args.warmup:
            # Deletes warm up by reading the rows they are about to delete.
            _wrk(server, "get" if op == "delete" else op, connections, self.args.warmup, **env)
        with PeakRss(server) as rss:
            figures = _wrk(server, op, connections, self.args.duration, **env)
        if op == "list":
            op = f"list{ {TEN: 10, THOUSAND: 1000, HUGE: 100000}[env['BENCH_USER']] }"
        self.record(stage, server.name, op, connections, figures, rss.peak)


def _servers(url: str, workers: int) -> dict[str, Server]:
    uvicorn = [str(BIN / "uvicorn"), "--workers", str(workers), "--no-access-log",
               "--log-level", "warning", "--app-dir", str(BENCH)]  # fmt: skip
    return {
        "ours": Server(
            "ours",
            [str(BIN / "todo-service"), "serve", "--workers", str(workers)],
            {"NEON_DATABASE_URL": url},
        ),
        "no-rls": Server(
            "no-rls",
            [*uvicorn, "--factory", "without_row_security:build_app"],
            {"NEON_DATABASE_URL": url},
        ),
        "naive": Server("naive", [*uvicorn, "naive_app:app"], {"NAIVE_DATABASE_URL": url}),
        "ceiling": Server("ceiling", [*uvicorn, "ceiling_app:app"], {}),
    }


OPS_READ = [("get", {}), ("list", {"BENCH_USER": TEN}), ("list", {"BENCH_USER": THOUSAND})]


def _stage(bench: Bench, stage: str, table: Range, servers: dict[str, Server]) -> Range:
    """Every operation on ours and the naive reference, then the framework's ceiling;
    returns the rows left for pgbench's deletes."""
    connections = bench.connections
    # Reads and patches pick from the first half; deletes walk the second.
    half = (table.first + table.last) // 2
    pick = {"BENCH_FIRST": table.first, "BENCH_LAST": half}
    slices = _delete_slices(Range(half + 1, table.last), 2 * len(connections) + 1)
    for server in (servers["ours"], servers["naive"]):
        for op, env in [*OPS_READ, ("create", {}), ("patch", {})]:
            for c in connections:
                bench.drive(stage, server, op, c, **pick, **env)
        for c in connections:
            part = slices.pop()
            bench.drive(stage, server, "delete", c, BENCH_FIRST=part.first, BENCH_LAST=part.last)
    for c in connections:
        bench.drive(stage, servers["ceiling"], "constant", c)
    return slices.pop()


def _second_wall(bench: Bench, stage: str, table: Range, servers: dict[str, Server]) -> None:
    """What row-level security costs: the same requests with and without it, back to
    back, at the higher connection count."""
    half = (table.first + table.last) // 2
    pick = {"BENCH_FIRST": table.first, "BENCH_LAST": half}
    c = bench.connections[-1]
    for op, env in [*OPS_READ, ("create", {}), ("patch", {})]:
        for name in ("ours", "no-rls"):
            bench.drive(f"{stage} wall", servers[name], op, c, **pick, **env)


def _database_ceiling(bench: Bench, stage: str, table: Range, deletable: Range) -> None:
    half = (table.first + table.last) // 2
    scripts = write_scripts(bench.url, bench.workdir, Range(table.first, half), deletable)
    for op, script in scripts.items():
        for c in bench.connections:
            figures = _pgbench(bench.url, script, c, bench.args.duration)
            bench.record(stage, "postgres", op, c, figures, None)


def run(bench: Bench) -> None:
    admin = sqlalchemy.create_engine(sqlalchemy_url(bench.url))
    started = time.monotonic()
    seed.small_table(admin)
    bench.notes["seed_10k_s"] = round(time.monotonic() - started, 1)
    servers = _servers(bench.url, bench.args.workers)
    try:
        for server in servers.values():
            probe = "/constant" if server.name == "ceiling" else "/api/v1/todos"
            server.start(bench.workdir, probe)
        ours = servers["ours"]
        bench.notes["idle_rss_mb"] = {n: round(s.rss_mb(), 1) for n, s in servers.items()}
        small = {"BENCH_FIRST": REST_SMALL.first, "BENCH_LAST": REST_SMALL.last}
        # A fresh server's first seconds (connections opening, first calls) are slow;
        # no figure should include them.
        for name in ("ours", "no-rls", "naive"):
            _wrk(servers[name], "get", 32, 1 if bench.args.smoke else 5, **small)
        # Growth, first half: the reads while the table holds 10,000 rows.
        for op, env in OPS_READ:
            for c in bench.connections:
                bench.drive("10k", ours, op, c, **small, **env)
        table, stage = REST_SMALL, "10k"
        if not bench.args.smoke:
            started = time.monotonic()
            seed.full_table(admin)
            bench.notes["seed_1M_s"] = round(time.monotonic() - started, 1)
            table, stage = REST_FULL, "1M"
        bench.notes["rows"] = seed.count(admin)
        deletable = _stage(bench, stage, table, servers)
        _second_wall(bench, stage, table, servers)
        if not bench.args.smoke:
            bench.notes["idle_rss_mb_before_100k"] = round(ours.rss_mb(), 1)
            bench.drive(stage, ours, "list", 1, BENCH_USER=HUGE)
        _database_ceiling(bench, stage, table, deletable)
    finally:
        for server in servers.values():
            server.stop()
        admin.dispose()


def _delete_slices(span: Range, parts: int) -> list[Range]:
    size = span.size // parts
    return [Range(span.first + i * size, span.first + (i + 1) * size - 1) for i in range(parts)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--smoke", action="store_true", help="seconds-long, small table")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if shutil.which("wrk") is None or shutil.which("pgbench") is None:
        sys.exit("wrk and pgbench are needed: apt-get install wrk postgresql-client")
    workdir = Path(tempfile.mkdtemp(prefix="todo-bench-"))
    pg = EmbeddedPostgres(workdir / "postgres")
    url = pg.start()
    try:
        migrations.upgrade(url)
        bench = Bench(args, url, workdir)
        run(bench)
    finally:
        pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    report.write(bench.results, bench.notes, args, args.out)


if __name__ == "__main__":
    main()
