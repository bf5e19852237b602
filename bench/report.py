"""The results table, every ratio beside its figure, and the issue's targets checked."""

import argparse
import json
import platform
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass
class Result:
    """One run: a target (ours, no-rls, naive, ceiling, postgres) doing one operation."""

    stage: str
    target: str
    op: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    peak_rss_mb: float | None
    non_2xx: int


def _find(results: list[Result], stage: str, target: str, op: str, c: int) -> Result | None:
    for r in results:
        if (r.stage, r.target, r.op, r.connections) == (stage, target, op, c):
            return r
    return None


def _ratio(a: Any | None, b: Any | None) -> float | None:
    return round(a.rps / b.rps, 2) if a and b and b.rps else None


def _fmt(x: float | None, suffix: str = "") -> str:
    return "-" if x is None else f"{x:g}{suffix}"


def write(results: list[Any], notes: dict[str, Any], args: argparse.Namespace, out: Path) -> None:
    stage = results[-1].stage
    rows, checks = [], []
    for r in results:
        if r.target != "ours" or r.stage.endswith(" wall"):
            continue
        naive = _find(results, r.stage, "naive", r.op, r.connections)
        ceiling = _find(results, stage, "ceiling", "constant", r.connections)
        database = _find(results, r.stage, "postgres", r.op, r.connections)
        rows.append(
            {
                **asdict(r),
                "naive_rps": naive.rps if naive else None,
                "ours_over_naive": _ratio(r, naive),
                "ours_over_framework_ceiling": _ratio(r, ceiling),
                "ours_over_database_ceiling": _ratio(r, database),
            }
        )

    def check(name: str, value: float | None, target: float, above: bool = True) -> None:
        met = value is not None and (value >= target if above else value < target)
        checks.append({"target": name, "measured": value, "goal": target, "met": met})

    def ratio(op: str, key: str) -> float | None:
        for row in rows:
            if (row["stage"], row["op"], row["connections"]) == (stage, op, 32):
                return row[key]  # type: ignore[no-any-return]
        return None

    check("get-by-id x naive", ratio("get", "ours_over_naive"), 3)
    check("get-by-id / framework ceiling", ratio("get", "ours_over_framework_ceiling"), 0.25)
    check("list of 1,000 x naive", ratio("list1000", "ours_over_naive"), 6)
    check("list of 1,000 / database ceiling", ratio("list1000", "ours_over_database_ceiling"), 0.75)
    one = _find(results, stage, "ours", "list1000", 1)
    check("list of 1,000 p50 at 1 connection (ms)", one.p50_ms if one else None, 6, above=False)
    for op in ("create", "patch", "delete"):
        check(f"{op} x naive", ratio(op, "ours_over_naive"), 2.5)
    huge = _find(results, stage, "ours", "list100000", 1)
    idle = notes.get("idle_rss_mb_before_100k")
    if huge and idle:
        check("RSS listing 100,000 / idle RSS", round(huge.peak_rss_mb / idle, 2), 2, above=False)

    walls = _wall_rows(results)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    meta = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "machine": f"{platform.machine()}, {_cores()} cores, Python {platform.python_version()}",
        "workers": args.workers,
        "duration_s": args.duration,
        "smoke": args.smoke,
        **notes,
    }
    out.mkdir(parents=True, exist_ok=True)
    name = "smoke" if args.smoke else "latest"
    document = {
        "meta": meta,
        "ours": rows,
        "second_wall": walls,
        "all": [asdict(r) for r in results],
        "targets": checks,
    }
    (out / f"{name}.json").write_text(json.dumps(document, indent=2))
    markdown = _markdown(meta, rows, results, checks, walls)
    (out / f"{name}.md").write_text(markdown)
    print("\n" + markdown)


def _wall_rows(results: list[Any]) -> list[dict[str, Any]]:
    walls = []
    for r in results:
        if r.stage.endswith(" wall") and r.target == "ours":
            bare = _find(results, r.stage, "no-rls", r.op, r.connections)
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


def _cores() -> int:
    import os

    return os.cpu_count() or 0


def _markdown(
    meta: dict[str, Any],
    rows: list[dict[str, Any]],
    results: list[Any],
    checks: list[dict[str, Any]],
    walls: list[dict[str, Any]],
) -> str:
    lines = [
        "# Benchmark",
        "",
        " · ".join(f"{k}: {v}" for k, v in meta.items()),
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
            f" | {_fmt(row['ours_over_framework_ceiling'])} | {_fmt(row['ours_over_database_ceiling'])} |"  # noqa: E501
        )
    lines += ["", "## Every run", "", "| stage | target | op | conns | req/s | p50 ms | p99 ms | peak RSS MB | non-2xx |",  # noqa: E501
              "|---|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in results:
        lines.append(
            f"| {r.stage} | {r.target} | {r.op} | {r.connections} | {r.rps:g} | {r.p50_ms:g}"
            f" | {r.p99_ms:g} | {_fmt(r.peak_rss_mb)} | {r.non_2xx} |"
        )
    lines += [
        "",
        "## Targets (32 connections unless stated)",
        "",
        "| target | measured | goal | met |",
        "|---|---:|---:|---|",
    ]
    for c in checks:
        met = "yes" if c["met"] else "NO"
        lines.append(f"| {c['target']} | {_fmt(c['measured'])} | {c['goal']:g} | {met} |")
    lines += [
        "",
        "## The second wall (row-level security): same requests, back to back",
        "",
        "| op | conns | with RLS req/s | without RLS req/s | cost |",
        "|---|---:|---:|---:|---:|",
    ]
    for w in walls:
        lines.append(
            f"| {w['op']} | {w['connections']} | {w['with_rls_rps']:g}"
            f" | {w['without_rls_rps']:g} | {w['cost'] * 100:.1f}% |"
        )
    return "\n".join(lines) + "\n"
