"""The conformance report: every requirement id of the catalogue with the tests that
name it (`@pytest.mark.req`) and their outcomes. Exits non-zero when an id has no
test, when any of its tests did not pass, or when a test names an unknown id.

Usage: python contracts/conformance.py RESULTS.json OUT_DIR
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent


def load_catalogue() -> list[dict[str, str]]:
    requirements: list[dict[str, str]] = yaml.safe_load((HERE / "requirements.yaml").read_text())[
        "requirements"
    ]
    return requirements


def build(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    catalogue = load_catalogue()
    known = {r["id"] for r in catalogue}
    rows = []
    for requirement in catalogue:
        tests = [
            {"test": nodeid, "outcome": result["outcome"]}
            for nodeid, result in sorted(results.items())
            if requirement["id"] in result["req"]
        ]
        status = (
            "covered"
            if tests and all(t["outcome"] == "passed" for t in tests)
            else ("untested" if not tests else "failing")
        )
        rows.append({**requirement, "status": status, "tests": tests})
    unknown = sorted({i for r in results.values() for i in r["req"]} - known)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=HERE,
        check=False,
    ).stdout.strip()
    return {
        "commit": commit or "unknown",
        "requirements": rows,
        "unknown_ids": unknown,
        "summary": {
            "requirements": len(rows),
            "covered": sum(r["status"] == "covered" for r in rows),
            "tests": len(results),
            "tests_passed": sum(r["outcome"] == "passed" for r in results.values()),
        },
        "ok": all(r["status"] == "covered" for r in rows) and not unknown,
    }


def markdown(report: dict[str, Any]) -> str:
    summary = report["summary"]
    lines = [
        "# Conformance report",
        "",
        f"Commit `{report['commit']}`: {summary['covered']} of {summary['requirements']} "
        f"requirements covered by passing tests; {summary['tests_passed']} of "
        f"{summary['tests']} tests passed.",
        "",
        "| id | status | requirement | tests |",
        "| --- | --- | --- | --- |",
    ]
    for row in report["requirements"]:
        tests = "<br>".join(f"`{t['test']}` {t['outcome']}" for t in row["tests"]) or "none"
        lines.append(f"| {row['id']} | {row['status']} | {row['text']} | {tests} |")
    if report["unknown_ids"]:
        lines += [
            "",
            f"Tests name ids missing from the catalogue: {', '.join(report['unknown_ids'])}",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    results = json.loads(Path(argv[1]).read_text())
    out = Path(argv[2])
    out.mkdir(parents=True, exist_ok=True)
    report = build(results)
    (out / "conformance.json").write_text(json.dumps(report, indent=2))
    (out / "conformance.md").write_text(markdown(report))
    for row in report["requirements"]:
        print(f"{row['id']:7} {row['status']:9} {len(row['tests']):3} tests")
    print(f"report: {out / 'conformance.md'} and {out / 'conformance.json'}")
    if not report["ok"]:
        print("NOT CONFORMANT: every id needs at least one test, and every test must pass")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
