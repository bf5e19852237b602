"""The results tables, every ratio beside its figures, and the issues' targets checked."""

import argparse
import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from statistics import mean
from typing import Any


@dataclass
class Result:
    """One run: a target (ours, ours-jwt, 1.0, no-rls, naive, ceiling, postgres) doing
    one operation; for postgres, `statement` names the candidate statement."""

    stage: str
    target: str
    op: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    peak_rss_mb: float | None
    non_2xx: int
    statement: str | None = None


class Results:
    def __init__(self, results: list[Result]) -> None:
        self.all = results
        # The main stage: the table at its largest (the last stage the ceilings ran in).
        self.stage = results[-1].stage
        self.high = max(r.connections for r in results)

    def find(self, stage: str, target: str, op: str, c: int) -> Result | None:
        for r in self.all:
            if (r.stage, r.target, r.op, r.connections) == (stage, target, op, c):
                return r
        return None

    def best_statement(self, op: str, c: int) -> Result | None:
        """The fastest candidate statement for `op` at `c` clients: the ceiling."""
        found = [r for r in self.all if (r.target, r.op, r.connections) == ("postgres", op, c)]
        return max(found, key=lambda r: r.rps, default=None)


def _ratio(a: Result | None, b: Result | None) -> float | None:
    return round(a.rps / b.rps, 2) if a and b and b.rps else None


def _fmt(x: float | None, suffix: str = "") -> str:
    return "-" if x is None else f"{x:g}{suffix}"


def _ours_rows(res: Results) -> list[dict[str, Any]]:
    rows = []
    for r in res.all:
        if r.target != "ours" or r.stage not in {"10k", res.stage}:
            continue
        naive = res.find(r.stage, "naive", r.op, r.connections)
        framework = res.find(res.stage, "ceiling", "constant", r.connections)
        database = res.best_statement(r.op, r.connections) if r.stage == res.stage else None
        rows.append(
            {
                **asdict(r),
                "naive_rps": naive.rps if naive else None,
                "ours_over_naive": _ratio(r, naive),
                "ours_over_framework_ceiling": _ratio(r, framework),
                "ours_over_database_ceiling": _ratio(r, database),
            }
        )
    return rows


def _pairs(res: Results) -> list[dict[str, Any]]:
    """Each 1.1 feature against what it is compared with, same run, back to back."""
    stage, pairs = res.stage, []

    def pair(name: str, a: Result | None, b: Result | None) -> None:
        if a and b:
            pairs.append(
                {
                    "compare": name,
                    "connections": a.connections,
                    "a_rps": a.rps,
                    "b_rps": b.rps,
                    "b_over_a": _ratio(b, a),
                }
            )

    for c in sorted({r.connections for r in res.all}):
        for round_ in (1, 2):
            header = res.find(f"{stage} id", "ours", f"get r{round_}", c)
            token = res.find(f"{stage} id", "ours-jwt", f"get r{round_}", c)
            pair(f"get-by-id: jwt mode / header mode (round {round_})", header, token)
        http = f"{stage} http"
        pair(
            "list of 1,000: 304 / 200",
            res.find(http, "ours", "list1000", c),
            res.find(http, "ours", "list1000 304", c),
        )
        pair(
            "page 500 / page 1 of 100,000 todos",
            res.find(http, "ours", "page1", c),
            res.find(http, "ours", "page500", c),
        )
        pair(
            "create with Idempotency-Key / plain create",
            res.find(http, "ours", "create", c),
            res.find(http, "ours", "create_once", c),
        )
    return pairs


def twin(build: str) -> str:
    """The service's server beside an earlier build: on a database of its own, seeded
    like the build's and written only by their comparison, so the two serve tables of
    the same history (the main database has taken every earlier stage's writes)."""
    return f"ours@{build}"


def _rounds(res: Results, stage: str, ours: str, other: str, op: str) -> dict[str, Any] | None:
    """`ours`/`other` on `op` in each alternated round of `stage`: the mean, and the
    rounds' spread, which is the noise."""
    ratios, refused = [], 0
    for n in range(1, 100):
        a = res.find(stage, ours, f"{op} r{n}", res.high)
        b = res.find(stage, other, f"{op} r{n}", res.high)
        if not (a and b):
            break
        ratios.append(round(a.rps / b.rps, 2))
        refused += a.non_2xx + b.non_2xx
    if not ratios:
        return None
    return {
        "op": op,
        "rounds": ratios,
        "mean": round(mean(ratios), 2),
        "spread": round(max(ratios) - min(ratios), 2),
        "non_2xx": refused,
    }


def _against_builds(res: Results, builds: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Ours over each earlier build, every operation."""
    found = {}
    for build in builds:
        stage = f"{res.stage} vs {build}"
        ops = ("get", "list10", "list1000", "create", "patch", "delete")
        rows = [row for op in ops if (row := _rounds(res, stage, twin(build), build, op))]
        if rows:
            found[build] = rows
    return found


def _switched(res: Results) -> list[dict[str, Any]]:
    """Each option on over off, on the operation it weighs on."""
    rows = []
    for name, op in SWITCHED.items():
        row = _rounds(res, f"{res.stage} {name}", name, "ours", op)
        if row:
            rows.append({"option": name, **row})
    return rows


# The tool calls the benchmark sends over /mcp (bench/run.py's _tool_calls), with the REST
# operation each wraps; a tool call may take at most this many times its time.
TOOL_CALLS = {"create_todo": "create", "list_todos": "list10"}
TOOL_CALL_AT_MOST = 2.0


def _tool_calls(res: Results) -> list[dict[str, Any]]:
    """Each tool call's throughput over the REST call it wraps."""
    rows = []
    for tool, op in TOOL_CALLS.items():
        row = _rounds(res, f"{res.stage} mcp", "mcp", "ours", op)
        if row:
            rows.append({"option": f"mcp {tool}", **row})
    return rows


# The options the benchmark switches on (bench/run.py's _switches), with the operation
# each weighs on and the share of throughput it must keep (tracing every request has no
# target: it is reported).
SWITCHED = {
    "rate-limited": "get",
    "quota": "create",
    "metrics": "get",
    "tracing-10%": "get",
    "tracing-100%": "get",
}
KEEPS = {"rate-limited": 0.9, "quota": 0.95, "metrics": 0.95, "tracing-10%": 0.9}


def _targets(
    res: Results,
    rows: list[dict[str, Any]],
    pairs: list[dict[str, Any]],
    versus: dict[str, list[dict[str, Any]]],
    switched: list[dict[str, Any]],
    notes: dict[str, Any],
) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []

    def check(
        name: str, value: float | None, goal: float, above: bool = True, refused: int = 0
    ) -> None:
        # A comparison in which either side answered anything but 2xx measured something
        # else than the operation: never met.
        met = not refused and value is not None and (value >= goal if above else value <= goal)
        if refused:
            name += f" ({refused} answers not 2xx)"
        checks.append({"target": name, "measured": value, "goal": goal, "met": met})

    def ours(op: str, key: str) -> float | None:
        for row in rows:
            if (row["stage"], row["op"], row["connections"]) == (res.stage, op, res.high):
                return row[key]  # type: ignore[no-any-return]
        return None

    def compared(name: str, c: int) -> list[float]:
        return [
            p["b_over_a"] for p in pairs if p["compare"].startswith(name) and p["connections"] == c
        ]

    check("get-by-id x naive", ours("get", "ours_over_naive"), 3)
    check("get-by-id / framework ceiling", ours("get", "ours_over_framework_ceiling"), 0.25)
    check("list of 1,000 x naive", ours("list1000", "ours_over_naive"), 8)
    check("list of 1,000 / fastest statement", ours("list1000", "ours_over_database_ceiling"), 0.75)
    one = res.find(res.stage, "ours", "list1000", 1)
    fastest = res.best_statement("list1000", 1)
    latency = round(one.p50_ms / fastest.p50_ms, 2) if one and fastest else None
    check("list of 1,000 p50 at 1 connection / the statement's", latency, 1.5, above=False)
    for op in ("create", "patch", "delete"):
        check(f"{op} x naive", ours(op, "ours_over_naive"), 2.5)
    jwt = compared("get-by-id: jwt mode", res.high)
    check(
        "get-by-id, jwt mode / header mode (mean of 2 rounds)",
        round(mean(jwt), 2) if jwt else None,
        0.9,
    )
    not_modified = compared("list of 1,000: 304", res.high)
    check("list of 1,000: 304 x 200", not_modified[0] if not_modified else None, 5)
    for c in (1, res.high):
        deep = compared("page 500", c)
        spread = round(max(deep[0], 1 / deep[0]), 2) if deep else None
        check(f"page 500 vs page 1, slower by at most (x, {c} conn)", spread, 1.5, above=False)
    keyed = compared("create with Idempotency-Key", res.high)
    check("idempotent create / plain create", keyed[0] if keyed else None, 0.8)
    idle = notes.get("idle_rss_mb", {}).get("ours")
    check("idle RSS of serve --workers 2 (MB)", idle, 200, above=False)
    huge = res.find(res.stage, "ours", "list100000", 1)
    before = notes.get("idle_rss_mb_before_100k")
    if huge and huge.peak_rss_mb and before:
        check("RSS listing 100,000 / idle RSS", round(huge.peak_rss_mb / before, 2), 2, False)
    for build, build_rows in versus.items():
        for row in build_rows:
            # As fast as the build within noise: the mean ratio, given the rounds' spread.
            check(
                f"{row['op']} vs {build} (mean of {len(row['rounds'])} rounds + their spread)",
                round(row["mean"] + row["spread"], 2),
                1.0,
                refused=row["non_2xx"],
            )
        built = notes.get("idle_rss_mb", {}).get(build)
        if idle and built:
            check(f"idle RSS, ours / {build}'s", round(idle / built, 3), 1.0, above=False)
    for row in switched:
        if row["option"].startswith("mcp "):
            check(
                f"{row['option']} tool call, time / its REST call's"
                f" (mean of {len(row['rounds'])} rounds)",
                round(1 / row["mean"], 2),
                TOOL_CALL_AT_MOST,
                above=False,
                refused=row["non_2xx"],
            )
            continue
        if row["option"] not in KEEPS:
            continue
        check(
            f"{row['op']} with {row['option']} on / off (mean of {len(row['rounds'])} rounds)",
            row["mean"],
            KEEPS[row["option"]],
            refused=row["non_2xx"],
        )
    return checks


def write(
    results: list[Result], notes: dict[str, Any], args: argparse.Namespace, out: Path
) -> None:
    res = Results(results)
    builds = list(notes.get("builds", {}))
    rows, pairs, versus = _ours_rows(res), _pairs(res), _against_builds(res, builds)
    switched = _switched(res) + _tool_calls(res)
    checks = _targets(res, rows, pairs, versus, switched, notes)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    meta = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores,"
        f" Python {platform.python_version()}",
        "workers": args.workers,
        "duration_s": args.duration,
        "smoke": args.smoke,
        "rounds": args.rounds,
        **notes,
    }
    out.mkdir(parents=True, exist_ok=True)
    name = "smoke" if args.smoke else "latest"
    document = {
        "meta": meta,
        "ours": rows,
        "features": pairs,
        "against_builds": versus,
        "switched": switched,
        "second_wall": _wall_rows(res),
        "all": [asdict(r) for r in results],
        "targets": checks,
    }
    (out / f"{name}.json").write_text(json.dumps(document, indent=2))
    markdown = _markdown(meta, res, rows, pairs, versus, switched, checks)
    (out / f"{name}.md").write_text(markdown)
    print("\n" + markdown)


def _wall_rows(res: Results) -> list[dict[str, Any]]:
    walls = []
    for r in res.all:
        if r.stage.endswith(" wall") and r.target == "ours":
            bare = res.find(r.stage, "no-rls", r.op, r.connections)
            if bare:
                walls.append(
                    {
                        "op": r.op,
                        "connections": r.connections,
                        "with_rls_rps": r.rps,
                        "without_rls_rps": bare.rps,
                        "cost": round(1 - r.rps / bare.rps, 3),
                    }
                )
    return walls


def _markdown(
    meta: dict[str, Any],
    res: Results,
    rows: list[dict[str, Any]],
    pairs: list[dict[str, Any]],
    versus: dict[str, list[dict[str, Any]]],
    switched: list[dict[str, Any]],
    checks: list[dict[str, Any]],
) -> str:
    lines = [
        "# Benchmark",
        "",
        " · ".join(f"{k}: {v}" for k, v in meta.items()),
        "",
        "## The service, against the naive reference and the ceilings",
        "",
        "`ours/database` is against the fastest statement found that returns the same body"
        " (the candidates are below).",
        "",
        "| stage | op | conns | ours req/s | p50 ms | p99 ms | peak RSS MB | naive req/s"
        " | ours/naive | ours/framework | ours/database |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['stage']} | {row['op']} | {row['connections']} | {row['rps']:g}"
            f" | {row['p50_ms']:g} | {row['p99_ms']:g} | {_fmt(row['peak_rss_mb'])}"
            f" | {_fmt(row['naive_rps'])} | {_fmt(row['ours_over_naive'], 'x')}"
            f" | {_fmt(row['ours_over_framework_ceiling'])}"
            f" | {_fmt(row['ours_over_database_ceiling'])} |"
        )
    lines += ["", "## Targets", "", "| target | measured | goal | met |", "|---|---:|---:|---|"]
    for c in checks:
        met = "yes" if c["met"] else "NO"
        lines.append(f"| {c['target']} | {_fmt(c['measured'])} | {c['goal']:g} | {met} |")
    lines += [
        "",
        "## What 1.1 adds, against what it is compared with (same run, back to back)",
        "",
        "| comparison | conns | first req/s | second req/s | second/first |",
        "|---|---:|---:|---:|---:|",
    ]
    for p in pairs:
        lines.append(
            f"| {p['compare']} | {p['connections']} | {p['a_rps']:g} | {p['b_rps']:g}"
            f" | {_fmt(p['b_over_a'])} |"
        )
    for build, build_rows in versus.items():
        revision = meta["builds"][build]
        lines += [
            "",
            f"## Against the build {revision} ({build}), {res.high} connections, alternated rounds",
            "",
            f"Ours is `{twin(build)}`: the service on a database seeded like the build's and"
            " written only by this comparison.",
            "",
            f"| op | ours/{build} by round | mean | spread |",
            "|---|---|---:|---:|",
        ]
        for v in build_rows:
            rounds = ", ".join(f"{r:g}" for r in v["rounds"])
            lines.append(f"| {v['op']} | {rounds} | {v['mean']:g} | {v['spread']:g} |")
    lines += [
        "",
        f"## Options on against off, {res.high} connections, alternated rounds",
        "",
        "| option | op | on/off by round | mean | spread | must keep |",
        "|---|---|---|---:|---:|---:|",
    ]
    for w in switched:
        rounds = ", ".join(f"{r:g}" for r in w["rounds"])
        lines.append(
            f"| {w['option']} | {w['op']} | {rounds} | {w['mean']:g} | {w['spread']:g}"
            f" | {_fmt(KEEPS.get(w['option']))} |"
        )
    lines += [
        "",
        "## The database's ceilings: every candidate statement, byte-for-byte the body sent",
        "",
        "| op | statement | conns | tps | p50 ms | fastest |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in res.all:
        if r.target == "postgres":
            best = res.best_statement(r.op, r.connections)
            mark = "yes" if best is r else ""
            lines.append(
                f"| {r.op} | {r.statement} | {r.connections} | {r.rps:g} | {r.p50_ms:g} | {mark} |"
            )
    lines += [
        "",
        "## The second wall (row-level security): same requests, back to back",
        "",
        "| op | conns | with RLS req/s | without RLS req/s | cost |",
        "|---|---:|---:|---:|---:|",
    ]
    for w in _wall_rows(res):
        lines.append(
            f"| {w['op']} | {w['connections']} | {w['with_rls_rps']:g}"
            f" | {w['without_rls_rps']:g} | {w['cost'] * 100:.1f}% |"
        )
    lines += [
        "",
        "## Every run",
        "",
        "| stage | target | op | conns | req/s | p50 ms | p99 ms | peak RSS MB | non-2xx |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res.all:
        if r.target != "postgres":
            lines.append(
                f"| {r.stage} | {r.target} | {r.op} | {r.connections} | {r.rps:g}"
                f" | {r.p50_ms:g} | {r.p99_ms:g} | {_fmt(r.peak_rss_mb)} | {r.non_2xx} |"
            )
    return "\n".join(lines) + "\n"
