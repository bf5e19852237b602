"""The run's reports: junit.xml (a test case per requirement and check, for CI),
report.json (for programs), report.md and report.html (for people). Each failure shows
its request and response, credentials redacted, and the curl line that sends it again."""

import html
import json
from collections import Counter
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from todo_conformance.results import ERROR, FAIL, NOT_APPLICABLE, PASS
from todo_conformance.runner import Outcome

ORDER = (FAIL, ERROR, PASS, NOT_APPLICABLE)


def _counts(outcome: Outcome) -> dict[str, int]:
    counted = Counter(r.outcome for r in outcome.requirements)
    return {name: counted.get(name, 0) for name in ORDER}


def document(outcome: Outcome) -> dict[str, Any]:
    return {
        **outcome.meta,
        "summary": _counts(outcome),
        "passed": outcome.exit_status == 0,
        "requirements": [r.shown() for r in outcome.requirements],
    }


def summary(outcome: Outcome) -> str:
    meta = outcome.meta
    counts = _counts(outcome)
    lines = [
        f"todo-conformance {meta['kit']['version']} against {meta['target']} ({meta['mode']} mode"
        + (", read-only" if meta["read_only"] else "")
        + ")",
        "  " + ", ".join(f"{n} {name}" for name, n in counts.items()),
    ]
    said: dict[tuple[str, str], list[str]] = {}
    for r in outcome.requirements:
        if r.outcome in {FAIL, ERROR}:
            expected = " (expected)" if r.expected_failure and r.outcome == FAIL else ""
            said.setdefault((r.outcome.upper() + expected, r.reason[:300]), []).append(r.id)
        elif r.expected_failure and r.outcome == PASS:
            lines.append(f"  PASS {r.id}, listed as an expected failure: take it off the list")
    for (what, reason), ids in said.items():
        lines.append(f"  {what} {', '.join(ids)}: {reason}")
    cleanup = meta.get("cleanup", {})
    lines.append(f"  cleanup completed: {cleanup.get('completed')}")
    return "\n".join(lines)


def _junit(outcome: Outcome) -> ET.ElementTree:
    suites = ET.Element("testsuites", name="todo-conformance")
    for r in outcome.requirements:
        suite = ET.SubElement(suites, "testsuite", name=r.id)
        cases = r.checks or []
        if not cases:
            case = ET.SubElement(suite, "testcase", classname=r.id, name=r.id)
            _mark(case, r.outcome, r.reason, r.expected_failure)
        for check in cases:
            case = ET.SubElement(
                suite, "testcase", classname=r.id, name=check.name, time=f"{check.seconds:.3f}"
            )
            _mark(case, check.outcome, check.reason, r.expected_failure, check.exchanges)
        suite.set("tests", str(max(1, len(cases))))
        suite.set("failures", str(sum(c.outcome == FAIL for c in cases)))
        suite.set("errors", str(sum(c.outcome == ERROR for c in cases)))
        suite.set("skipped", str(sum(c.outcome == NOT_APPLICABLE for c in cases)))
    return ET.ElementTree(suites)


def _mark(
    case: ET.Element,
    outcome: str,
    reason: str,
    expected: str | None,
    exchanges: list[dict[str, Any]] | None = None,
) -> None:
    detail = "\n\n".join(_exchange_text(e) for e in exchanges or [])
    if outcome == FAIL and expected:
        ET.SubElement(case, "skipped", message=f"expected failure: {expected}").text = reason
    elif outcome == FAIL:
        ET.SubElement(case, "failure", message=reason[:500]).text = detail or reason
    elif outcome == ERROR:
        ET.SubElement(case, "error", message=reason[:500]).text = detail or reason
    elif outcome == NOT_APPLICABLE:
        ET.SubElement(case, "skipped", message=f"not applicable: {reason}")


def _exchange_text(e: dict[str, Any]) -> str:
    request, response = e["request"], e["response"]
    head = "\n".join(f"{k}: {v}" for k, v in request["headers"])
    back = "\n".join(f"{k}: {v}" for k, v in response["headers"])
    return (
        f"{request['method']} {request['url']}\n{head}\n\n{request['body']}\n\n"
        f"-> {response['status']}\n{back}\n\n{response['body']}\n\n{e['curl']}"
    )


def _markdown(outcome: Outcome) -> str:
    meta = outcome.meta
    contract = meta.get("contract") or {}
    lines = [
        "# todo-conformance report",
        "",
        f"- kit: todo-conformance {meta['kit']['version']}",
        f"- target: {meta['target']} ({meta['mode']} mode"
        + (", read-only)" if meta["read_only"] else ")"),
        f"- contract: {contract.get('source')} version {contract.get('version')},"
        f" SHA-256 {contract.get('sha256')}",
        f"- ran: {meta['started_at']} to {meta.get('finished_at')},"
        f" {meta.get('requests', 0)} requests",
        f"- cleanup completed: {meta.get('cleanup', {}).get('completed')}",
        f"- result: {'passed' if outcome.exit_status == 0 else 'FAILED'}"
        f" ({', '.join(f'{n} {k}' for k, n in _counts(outcome).items())})",
        "",
        "| id | outcome | reason |",
        "|---|---|---|",
    ]
    for r in outcome.requirements:
        shown = r.outcome + (" (expected)" if r.expected_failure and r.outcome == FAIL else "")
        lines.append(f"| {r.id} | {shown} | {r.reason.replace('|', '/')[:300]} |")
    for r in outcome.requirements:
        for check in r.checks:
            if check.outcome in {FAIL, ERROR}:
                lines += ["", f"## {r.id}: {check.name}", "", f"{check.outcome}: {check.reason}"]
                for e in check.exchanges:
                    lines += ["", "```", _exchange_text(e), "```"]
    return "\n".join(lines) + "\n"


def _html(outcome: Outcome) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr class='{esc(r.outcome)}'><td>{esc(r.id)}</td><td>{esc(r.outcome)}"
        f"{' (expected)' if r.expected_failure and r.outcome == FAIL else ''}</td>"
        f"<td>{esc(r.reason)}</td></tr>"
        for r in outcome.requirements
    )
    details = "".join(
        f"<section><h3>{esc(r.id)}: {esc(c.name)}</h3><p>{esc(c.outcome)}: {esc(c.reason)}</p>"
        + "".join(f"<pre>{esc(_exchange_text(e))}</pre>" for e in c.exchanges)
        + "</section>"
        for r in outcome.requirements
        for c in r.checks
        if c.outcome in {FAIL, ERROR}
    )
    meta = esc(json.dumps({k: v for k, v in outcome.meta.items()}, indent=2))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>todo-conformance report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; }}
table {{ border-collapse: collapse; }}
td {{ border: 1px solid #ccc; padding: .3rem .6rem; vertical-align: top; }}
.pass td:nth-child(2) {{ color: #060; }}
.fail td:nth-child(2), .error td:nth-child(2) {{ color: #a00; font-weight: bold; }}
.not-applicable td:nth-child(2) {{ color: #666; }}
pre {{ background: #f6f6f6; padding: .6rem; overflow-x: auto; }}
</style></head><body>
<h1>todo-conformance: {"passed" if outcome.exit_status == 0 else "FAILED"}</h1>
<pre>{meta}</pre>
<table><tr><th>id</th><th>outcome</th><th>reason</th></tr>{rows}</table>
<h2>Failures and errors</h2>{details or "<p>None.</p>"}
</body></html>
"""


def write(outcome: Outcome, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    _junit(outcome).write(directory / "junit.xml", encoding="utf-8", xml_declaration=True)
    (directory / "report.json").write_text(json.dumps(document(outcome), indent=2))
    (directory / "report.md").write_text(_markdown(outcome))
    (directory / "report.html").write_text(_html(outcome))
