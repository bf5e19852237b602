"""The run's reports: junit.xml (a test case per requirement and check, for CI),
report.json (for programs), report.md and report.html (for people), and the console's
summary. Each failure shows its request and response, credentials redacted, and the
curl line that sends it again; each check names what it enforces; an interrupted run,
a stale expected failure and a todo left behind are said in every one of them."""

import html
import json
from collections import Counter
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from todo_conformance.progress import paint
from todo_conformance.results import ERROR, FAIL, NOT_APPLICABLE, PASS, RequirementResult
from todo_conformance.runner import Outcome

ORDER = (FAIL, ERROR, PASS, NOT_APPLICABLE)
FILES = ("report.html", "report.md", "report.json", "junit.xml")
VERDICT_COLOUR = {"PASSED": "green", "FAILED": "red", "INTERRUPTED": "yellow"}
OUTCOME_COLOUR = {FAIL: "red", ERROR: "red", PASS: "green", NOT_APPLICABLE: "dim"}


def _counts(outcome: Outcome) -> dict[str, int]:
    counted = Counter(r.outcome for r in outcome.requirements)
    return {name: counted.get(name, 0) for name in ORDER}


def _counted(outcome: Outcome) -> str:
    return ", ".join(f"{n} {name}" for name, n in _counts(outcome).items())


def _cleanup_line(outcome: Outcome) -> str:
    if outcome.cleanup is None:
        said = "cleanup: nothing to clean (read-only)" if outcome.meta["read_only"] else ""
    else:
        said = outcome.cleanup.line()
    if outcome.accounts is not None:
        accounts = outcome.accounts.line()
        said = f"{said}; {accounts}" if said else f"cleanup: {accounts}"
    return said


def document(outcome: Outcome) -> dict[str, Any]:
    return {
        **outcome.meta,
        "verdict": outcome.verdict,
        "summary": _counts(outcome),
        "passed": outcome.exit_status == 0,
        "requirements": [r.shown() for r in outcome.requirements],
    }


def _said(r: RequirementResult) -> str:
    if r.stale:
        return "PASS, listed as an expected failure: take it off the list"
    expected = " (expected)" if r.expected_failure and r.outcome == FAIL else ""
    return r.outcome.upper() + expected


def summary(outcome: Outcome, colour: bool = False) -> str:
    meta = outcome.meta
    lines = [
        f"todo-conformance {meta['kit']['version']} against {meta['target']} ({meta['mode']} mode"
        + (", read-only" if meta["read_only"] else "")
        + ")",
        "  " + _counted(outcome),
    ]
    grouped: dict[tuple[str, str], list[str]] = {}
    for r in outcome.requirements:
        if r.stale:
            lines.append(f"  PASS {r.id}, listed as an expected failure: take it off the list")
        elif r.outcome in {FAIL, ERROR}:
            grouped.setdefault((_said(r), r.reason[:300]), []).append(r.id)
    for (what, reason), ids in grouped.items():
        shown = paint(what, "yellow" if "expected" in what else "red", colour)
        lines.append(f"  {shown} {', '.join(ids)}: {reason}")
    advised = sum(len(r.advice) for r in outcome.requirements)
    if advised:
        lines.append(f"  {advised} advice (beyond the contract, never failing): see the reports")
    if cleanup := _cleanup_line(outcome):
        lines.append("  " + cleanup)
    if outcome.interrupted:
        lines.append(
            "  " + paint("interrupted: the run was stopped before its end", "yellow", colour)
        )
    return "\n".join(lines)


def last_line(outcome: Outcome, written: list[Path], colour: bool = False) -> str:
    verdict = paint(outcome.verdict, VERDICT_COLOUR[outcome.verdict], colour)
    where = f"; reports: {', '.join(str(p) for p in written)}" if written else ""
    return f"todo-conformance: {verdict} ({_counted(outcome)}){where}"


# -- JUnit -------------------------------------------------------------------------------


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
        failures = sum(c.outcome == FAIL and not r.expected_failure for c in cases)
        if r.stale:
            # A listed failure that passes fails the run: CI shows it under its id.
            stale = ET.SubElement(suite, "testcase", classname=r.id, name=r.id)
            ET.SubElement(
                stale,
                "failure",
                message=f"{r.id} is listed as an expected failure, and it passes: take it off"
                f" the list (listed because: {r.expected_failure})",
            )
            failures += 1
        suite.set("tests", str(len(list(suite.iter("testcase")))))
        suite.set("failures", str(failures))
        suite.set("errors", str(sum(c.outcome == ERROR for c in cases)))
        suite.set("skipped", str(sum(c.outcome == NOT_APPLICABLE for c in cases)))
    # What belongs to the run, not to one id: only when there is something to say.
    leaked = outcome.cleanup is not None and not outcome.cleanup.completed
    if leaked or outcome.interrupted:
        run = ET.SubElement(suites, "testsuite", name="run")
        if outcome.cleanup is not None and leaked:
            case = ET.SubElement(run, "testcase", classname="run", name="cleanup")
            ET.SubElement(case, "failure", message=outcome.cleanup.line()[:500])
        if outcome.interrupted:
            case = ET.SubElement(run, "testcase", classname="run", name="interrupted")
            ET.SubElement(case, "error", message="the run was interrupted (SIGINT or SIGTERM)")
        run.set("tests", str(len(list(run.iter("testcase")))))
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


# -- Markdown ----------------------------------------------------------------------------


def _facts(outcome: Outcome) -> list[tuple[str, str]]:
    meta = outcome.meta
    contract = meta.get("contract") or {}
    mode = meta["mode"] + (", read-only" if meta["read_only"] else "")
    facts = [
        ("result", f"{outcome.verdict} ({_counted(outcome)})"),
        ("target", f"{meta['target']} ({mode} mode)"),
        (
            "contract",
            f"{contract.get('source')} version {contract.get('version')},"
            f" SHA-256 {contract.get('sha256')}",
        ),
        ("kit", f"todo-conformance {meta['kit']['version']}"),
        (
            "ran",
            f"{meta['started_at']} to {meta.get('finished_at')},"
            f" {meta.get('requests', 0)} requests, run id {meta['run_id']}",
        ),
        ("cleanup", _cleanup_line(outcome) or "n/a"),
    ]
    if outcome.interrupted:
        facts.append(("interrupted", "yes: the run was stopped before its end"))
    return facts


def _markdown(outcome: Outcome) -> str:
    lines = [f"# todo-conformance: {outcome.verdict}", ""]
    lines += [f"- {name}: {value}" for name, value in _facts(outcome)]
    lines += ["", "| id | outcome | reason |", "|---|---|---|"]
    for r in outcome.requirements:
        lines.append(f"| {r.id} | {_said(r)} | {r.reason.replace('|', '/')[:300]} |")
    for r in outcome.requirements:
        for check in r.checks:
            if check.outcome in {FAIL, ERROR}:
                lines += ["", f"## {r.id}: {check.name}", "", f"{check.outcome}: {check.reason}"]
                lines += ["", "Enforces: " + ", ".join([*check.ids, *check.clauses])]
                for e in check.exchanges:
                    lines += ["", "```", _exchange_text(e), "```"]
    advice = [(r.id, note) for r in outcome.requirements for note in r.advice]
    if advice:
        lines += ["", "## Advice (beyond the contract; never failing)", ""]
        lines += [f"- {rid}: {note}" for rid, note in advice]
    return "\n".join(lines) + "\n"


# -- HTML --------------------------------------------------------------------------------

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 1.5rem auto; max-width: 72rem;
       padding: 0 1rem; }
h1 { margin: 0 0 .5rem; }
h1 .verdict { padding: .1rem .6rem; border-radius: .3rem; color: #fff; }
.PASSED { background: #1a7f37; } .FAILED { background: #cf222e; }
.INTERRUPTED { background: #9a6700; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .1rem 1rem; margin: .5rem 0 1rem; }
dt { color: #57606a; } dd { margin: 0; overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #d0d7de; padding: .25rem .5rem; text-align: left; vertical-align: top; }
td.outcome { white-space: nowrap; font-weight: 600; }
tr.pass td.outcome { color: #1a7f37; }
tr.fail td.outcome, tr.error td.outcome { color: #cf222e; }
tr.not-applicable td.outcome { color: #57606a; font-weight: normal; }
section { border-top: 1px solid #d0d7de; margin-top: 1rem; }
pre { background: #f6f8fa; padding: .6rem; overflow-x: auto; white-space: pre-wrap; }
"""


def _html(outcome: Outcome) -> str:
    esc = html.escape
    facts = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in _facts(outcome))
    rows = "".join(
        f"<tr class='{esc(r.outcome)}'><td><a href='#{esc(r.id)}'>{esc(r.id)}</a></td>"
        f"<td class='outcome'>{esc(_said(r))}</td><td>{esc(r.reason)}</td></tr>"
        for r in outcome.requirements
    )
    details = "".join(
        f"<section id='{esc(r.id)}'><h3>{esc(r.id)}: {esc(c.name)}</h3>"
        f"<p><strong>{esc(c.outcome)}</strong>: {esc(c.reason)}</p>"
        f"<p>Enforces: {esc(', '.join([*c.ids, *c.clauses]))}</p>"
        + "".join(f"<pre>{esc(_exchange_text(e))}</pre>" for e in c.exchanges)
        + "</section>"
        for r in outcome.requirements
        for c in r.checks
        if c.outcome in {FAIL, ERROR}
    )
    notes = "".join(
        f"<li>{esc(r.id)}: {esc(note)}</li>" for r in outcome.requirements for note in r.advice
    )
    advice = f"<ul>{notes}</ul>" if notes else "<p>None.</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>todo-conformance: {outcome.verdict}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style></head>
<body>
<h1>todo-conformance: <span class="verdict {outcome.verdict}">{outcome.verdict}</span></h1>
<dl>{facts}</dl>
<table id="requirements"><thead><tr><th>id</th><th>outcome</th><th>reason</th></tr></thead>
<tbody>{rows}</tbody></table>
<h2>Failures and errors</h2>{details or "<p>None.</p>"}
<h2>Advice (beyond the contract; never failing)</h2>{advice}
</body></html>
"""


def write(outcome: Outcome, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    _junit(outcome).write(directory / "junit.xml", encoding="utf-8", xml_declaration=True)
    (directory / "report.json").write_text(
        json.dumps(document(outcome), indent=2, ensure_ascii=False)
    )
    (directory / "report.md").write_text(_markdown(outcome))
    (directory / "report.html").write_text(_html(outcome))
    return [directory / name for name in FILES]
