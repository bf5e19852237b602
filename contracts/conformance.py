"""The conformance report (Markdown, JSON and one HTML page): every requirement id of
the catalogue with the tests that name it (`@pytest.mark.req`) and their outcomes, a
summary of each conformance-kit run the suite made against this service (OUT_DIR/kit/,
their own reports beside it), the spec version and the commit. Exits non-zero when an id
has no test, when any of its tests did not pass, or when a test names an unknown id.

Usage: python contracts/conformance.py RESULTS.json OUT_DIR
"""

import html
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


def build(
    results: dict[str, dict[str, Any]], kit_runs: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
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
    spec = yaml.safe_load((HERE.parent / "openapi.yaml").read_text())
    return {
        "commit": commit or "unknown",
        "spec_version": spec["info"]["version"],
        "kit_runs": kit_runs or [],
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


def kit_run(path: Path) -> dict[str, Any]:
    """What a kit run's report.json says, in brief; the whole of it is beside it."""
    run = json.loads(path.read_text())
    fuzz = run.get("fuzz") or {}
    return {
        "name": path.parent.name,
        "mode": run["mode"],
        "contract": run["contract"]["version"],
        "outcomes": ", ".join(f"{n} {outcome}" for outcome, n in run["summary"].items()),
        "cleanup completed": run["cleanup"]["completed"],
        "requests": run["requests"],
        "schemathesis exit status": fuzz.get("exit_status"),
        "report": str(path.with_name("report.html")),
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
    for run in report["kit_runs"]:
        lines += ["", f"Kit run `{run['name']}`: " + "; ".join(f"{k} {v}" for k, v in run.items())]
    if report["unknown_ids"]:
        lines += [
            "",
            f"Tests name ids missing from the catalogue: {', '.join(report['unknown_ids'])}",
        ]
    return "\n".join(lines) + "\n"


_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #1b1f24; }
h1 { margin-bottom: .2rem; } .meta { color: #57606a; margin-bottom: 1.5rem; }
.verdict { display: inline-block; padding: .3rem .8rem; border-radius: 1rem; font-weight: 600; }
.ok { background: #dafbe1; color: #116329; } .bad { background: #ffebe9; color: #a40e26; }
table { border-collapse: collapse; width: 100%; margin: 1rem 0 2rem; }
th, td { border-bottom: 1px solid #d0d7de; padding: .45rem .6rem; text-align: left; }
td { vertical-align: top; }
th { background: #f6f8fa; } td.id { font-weight: 600; white-space: nowrap; }
ul { margin: 0; padding-left: 1rem; } code { font-size: 12.5px; }
li code { word-break: break-all; }
.passed { color: #116329; } .failed, .skipped, .not { color: #a40e26; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; }
dt { font-weight: 600; }
"""


def page(report: dict[str, Any]) -> str:
    e = html.escape
    summary = report["summary"]
    verdict = "ok" if report["ok"] else "bad"
    rows = []
    for row in report["requirements"]:
        tests = (
            "".join(
                f'<li><code>{e(t["test"])}</code> <span class="{t["outcome"].split()[0]}">'
                f"{e(t['outcome'])}</span></li>"
                for t in row["tests"]
            )
            or "<li>none</li>"
        )
        css = "ok" if row["status"] == "covered" else "bad"
        rows.append(
            f'<tr><td class="id">{e(row["id"])}</td><td><span class="verdict {css}">'
            f"{e(row['status'])}</span></td><td>{e(row['text'])}</td><td><ul>{tests}</ul></td></tr>"
        )
    kit_items = (
        "".join(
            f"<h3>{e(run['name'])}</h3><dl>"
            + "".join(f"<dt>{e(k)}</dt><dd>{e(str(v))}</dd>" for k, v in run.items())
            + "</dl>"
            for run in report["kit_runs"]
        )
        or "<dl><dt>run</dt><dd>no kit run kept in this run</dd></dl>"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Conformance report</title>
<style>{_STYLE}</style></head><body>
<h1>Conformance report</h1>
<div class="meta">openapi.yaml version {e(str(report["spec_version"]))} at commit
<code>{e(report["commit"])}</code></div>
<p><span class="verdict {verdict}">{summary["covered"]} of {summary["requirements"]}
requirements covered</span> &nbsp; {summary["tests_passed"]} of {summary["tests"]} tests
passed</p>
<h2>The conformance kit against the served service</h2>{kit_items}
<h2>Requirements</h2>
<table><thead><tr><th>id</th><th>status</th><th>requirement</th><th>tests</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
</body></html>
"""


def main(argv: list[str]) -> int:
    results = json.loads(Path(argv[1]).read_text())
    out = Path(argv[2])
    out.mkdir(parents=True, exist_ok=True)
    report = build(results, [kit_run(path) for path in sorted(out.glob("kit/*/report.json"))])
    (out / "conformance.json").write_text(json.dumps(report, indent=2))
    (out / "conformance.md").write_text(markdown(report))
    (out / "conformance.html").write_text(page(report))
    for row in report["requirements"]:
        print(f"{row['id']:7} {row['status']:9} {len(row['tests']):3} tests")
    print(f"report: {out / 'conformance.html'}, conformance.md and conformance.json")
    if not report["ok"]:
        print("NOT CONFORMANT: every id needs at least one test, and every test must pass")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
