"""The conformance kit, proven (FR-148): run as its users run it, against this service
in header mode and in jwt mode with a real Better Auth, where every applicable
requirement passes and nothing is left behind; against a 1.0 contract; read-only
behind a recording proxy; interrupted; and against broken implementations (2.0's too),
each reported under the requirement it breaks and nothing else.

The requirements the kit checks from outside are proven here, by the kit: each has a
test below that names it and passes when the kit's run says `pass`. What needs the
inside (the SQL audit, row-level security, faults, migrations) stays in the other
modules."""

import hashlib
import re
import shlex
import subprocess
import sys
from functools import partial
from pathlib import Path
from xml.etree import ElementTree

import one_off
import pytest
import yaml
from better_auth import BetterAuth
from conftest import REPO, read_yaml
from kit_jobs import Kits, Reached, Scheduled, job
from kit_runs import (
    BROKEN,
    BULK_BROKEN,
    FULL_DEPTH,
    INTERRUPTING,
    LIMITS_IDS,
    STRANGER,
    SWEPT,
    broken_job,
)
from ports import free_port
from prometheus_client.parser import text_string_to_metric_families

from kit import KitRun, run_kit

CATALOGUE = read_yaml(REPO / "contracts" / "requirements.yaml")["requirements"]
UNOBSERVABLE = {r["id"] for r in CATALOGUE if r.get("unobservable")}
# What no run here can check: the options a deployment must declare, and (in each
# mode) the requirements of the other. Only the header-mode run names a metrics listener.
UNDECLARED = {"FR-151", "FR-152"}
HEADER_ONLY = {"EC-2", "FR-161"}
BEARER_ONLY = {"FR-102", "FR-103", "FR-105"}
CHECKED_IN_HEADER_MODE = sorted(
    {r["id"] for r in CATALOGUE} - UNOBSERVABLE - UNDECLARED - BEARER_ONLY
)
CHECKED_IN_BEARER_MODE = sorted(set(SWEPT) - UNOBSERVABLE - UNDECLARED - HEADER_ONLY)
# After a run with thousands of distinct ids and paths, the metrics' series (label sets,
# buckets aside) stay fewer than this: labels are templates, methods, status codes and
# outcomes, nothing a caller chooses.
SERIES_BOUND = 300
CLOSED = {
    "http_request_method": {
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
        "QUERY", "_OTHER",
    },
    "http_route": {
        "", "/api/v1/todos", "/api/v1/todos/{todo_id}", "/api/v2/todos",
        "/api/v2/todos/{todo_id}", "/api/v2/todos/summary", "/health/live", "/health/ready",
        "/openapi.yaml", "/docs",
    },
    "url_scheme": {"http", "https"},
    "state": {"used", "idle"},
}  # fmt: skip
# What the build is: one series, whatever the values.
BUILD = {"version", "contract_version", "commit"}
# Any other label's value: a status code, an outcome, a statement's name. Never an id, a
# path or a token.
OPEN_VALUE = re.compile(r"[0-9]{3}|[a-z_]*|[a-z_.]+\.[A-Z_]+")


def _database_of(service: Reached) -> str:
    assert service.database_url
    return service.database_url


# -- this service, checked from outside, in both modes ---------------------------------


@pytest.mark.kit("header")
@pytest.mark.req("FR-148", "FR-141", "FR-144", "FR-146", "FR-143")
def test_the_kit_finds_this_service_conforming_in_header_mode_and_leaves_nothing(
    kit_jobs: Scheduled,
) -> None:
    run, before, after = kit_jobs["header"]
    assert run.status == 0, run.output
    assert run.failing() == set() and run.erring() == set(), run.output
    assert run.report["cleanup"]["completed"] is True
    assert after == before, "a bystander's todos changed"
    assert run.todos_left(_database_of(kit_jobs.service("header"))) == 0, "todos left behind"
    assert run.report["fuzz"]["exit_status"] is not None


@pytest.mark.kit("header")
@pytest.mark.req("FR-161")
def test_after_the_kits_fuzzing_the_metrics_series_stay_bounded(kit_jobs: Scheduled) -> None:
    run = kit_jobs["header"][0]
    header_service = kit_jobs.service("header")
    assert run.report["requests"] > 2000, "the run was too small to show anything"
    text = one_off.get(str(header_service.metrics_url), timeout=10).text
    series = {
        (family.name, frozenset((k, v) for k, v in sample.labels.items() if k != "le"))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert len(series) < SERIES_BOUND, f"{len(series)} series after the run"
    for _, labels in series:
        for name, value in labels:
            if name in CLOSED:
                assert value in CLOSED[name], f"{name}={value!r}"
            elif name not in BUILD:
                assert OPEN_VALUE.fullmatch(value), f"{name}={value!r} looks chosen by a caller"


@pytest.mark.kit("header")
@pytest.mark.parametrize(
    "rid", [pytest.param(r, marks=pytest.mark.req(r)) for r in CHECKED_IN_HEADER_MODE]
)
def test_the_kit_checks_this_requirement_in_header_mode(kit_jobs: Scheduled, rid: str) -> None:
    requirement = kit_jobs["header"][0].requirement(rid)
    assert requirement["outcome"] == "pass", requirement


@pytest.mark.kit("jwt")
@pytest.mark.req("FR-148", "FR-142", "FR-143", "FR-146")
def test_the_kit_finds_this_service_conforming_in_jwt_mode_with_better_auth(
    kit_jobs: Scheduled,
) -> None:
    run = kit_jobs["jwt"]
    assert run.status == 0, run.output
    assert run.failing() == set() and run.erring() == set(), run.output
    assert run.report["mode"] == "bearer"
    assert run.report["cleanup"]["completed"] is True
    assert run.todos_left(_database_of(kit_jobs.service("jwt"))) == 0, "todos left behind"
    # The accounts it signed up are deleted again (this Better Auth allows delete-user).
    accounts = run.report["cleanup"]["accounts"]
    assert accounts == {"made": 4, "deleted": 4, "kept": [], "why": []}, accounts
    assert "accounts: made 4, deleted 4" in run.output


@job("jwt without tokens", services=("jwt",), weight=2)
def _jwt_without_tokens_run(kits: Kits) -> KitRun:
    """The README's header-mode command against this service in jwt mode."""
    return run_kit(
        kits.service("jwt").base,
        kits.directory("jwt-without-tokens"),
        *("--only", "FR-001,FR-009", "--fuzz-examples", "0"),
    )


@pytest.mark.kit("jwt without tokens")
@pytest.mark.req("FR-171")
def test_a_jwt_deployment_checked_without_tokens_errs_saying_what_to_pass(
    kit_jobs: Scheduled,
) -> None:
    """No departure: the deployment conforms, and the kit could not sign in."""
    run = kit_jobs["jwt without tokens"]
    assert run.status == 1 and run.failing() == set(), run.output
    for rid in ("FR-001", "FR-009"):
        reason = run.requirement(rid)["reason"]
        assert run.requirement(rid)["outcome"] == "error", reason
        assert reason.startswith("sign-in: the target wants bearer tokens"), reason
        assert "--better-auth URL" in reason and "--token-command" in reason, reason


@pytest.mark.kit("jwt")
@pytest.mark.parametrize(
    "rid", [pytest.param(r, marks=pytest.mark.req(r)) for r in CHECKED_IN_BEARER_MODE]
)
def test_the_kit_checks_this_requirement_in_jwt_mode(kit_jobs: Scheduled, rid: str) -> None:
    requirement = kit_jobs["jwt"].requirement(rid)
    assert requirement["outcome"] == "pass", requirement


@pytest.mark.kit("header", "jwt")
@pytest.mark.req("FR-141")
def test_what_a_run_cannot_check_is_not_applicable_with_the_reason(kit_jobs: Scheduled) -> None:
    header_run = kit_jobs["header"][0]
    for run, other_mode in ((header_run, BEARER_ONLY), (kit_jobs["jwt"], HEADER_ONLY)):
        for rid in UNOBSERVABLE | UNDECLARED | other_mode:
            requirement = run.requirement(rid)
            assert requirement["outcome"] == "not-applicable", requirement
            assert requirement["reason"], rid
    assert "cannot be observed over HTTP" in header_run.requirement("FR-005")["reason"]
    assert "--quota" in header_run.requirement("FR-151")["reason"]
    assert "bearer mode" in header_run.requirement("FR-103")["reason"]


@pytest.mark.kit("limits")
@pytest.mark.req("FR-151", "FR-152", "FR-148")
def test_the_kit_checks_the_quota_and_rate_limit_a_deployment_sets(kit_jobs: Scheduled) -> None:
    run = kit_jobs["limits"]
    assert run.status == 0, run.output
    for rid in LIMITS_IDS:
        requirement = run.requirement(rid)
        assert requirement["outcome"] == "pass", requirement
    names = {c["name"] for c in run.requirement("FR-152")["checks"] if c["outcome"] == "pass"}
    assert any("429" in name for name in names), "the limit was spent and refused"


@pytest.mark.kit("contract 1.0")
@pytest.mark.req("FR-141")
def test_against_a_1_0_contract_the_later_requirements_are_not_applicable(
    kit_jobs: Scheduled,
) -> None:
    run = kit_jobs["contract 1.0"]
    assert run.status == 0, run.output
    assert [r["id"] for r in run.report["requirements"]] == SWEPT
    # (SC-002 is left out of the shallow sweep's run: nox -s kit-depth's checks it.)
    for r in [r for r in CATALOGUE if r["id"] in SWEPT]:
        outcome = run.requirement(r["id"])
        if r["id"] in UNOBSERVABLE:
            assert outcome["outcome"] == "not-applicable", outcome
        elif r["since"] != "1.0":
            assert outcome["outcome"] == "not-applicable", outcome
            assert "1.0.0" in outcome["reason"], outcome
        else:
            assert outcome["outcome"] == "pass", outcome


V2_IDS = [r["id"] for r in CATALOGUE if r["since"].startswith("2.")]


@job("contract 1.x", services=("header",), weight=3)
def _contract_1_x_runs(kits: Kits) -> tuple[KitRun, KitRun]:
    """The kit with the released 1.2.0 contract, and with a 2.0.0 document that declares
    no /api/v2: either way the 2.0 ids are not applicable, and v1 is checked as before."""
    directory = kits.directory("contract-1.x")
    only = ("--only", ",".join([*V2_IDS, "FR-009"]), "--fuzz-examples", "0")
    base = kits.service("header").base
    released = REPO / "contracts" / "released" / "openapi-1.2.0.yaml"
    older = run_kit(base, directory / "1.2.0", "--contract", str(released), *only)
    document = read_yaml(REPO / "openapi.yaml")
    document["paths"] = {p: v for p, v in document["paths"].items() if not p.startswith("/api/v2")}
    without = directory / "without-v2.yaml"
    without.write_text(yaml.safe_dump(document, sort_keys=False))
    return older, run_kit(base, directory / "without-v2", "--contract", str(without), *only)


@pytest.mark.kit("contract 1.x")
@pytest.mark.req("FR-222", "FR-141")
def test_where_the_contract_has_no_api_v2_the_2_0_requirements_are_not_applicable(
    kit_jobs: Scheduled,
) -> None:
    older, without = kit_jobs["contract 1.x"]
    for run, reason in ((older, "1.2.0"), (without, "declares no /api/v2/todos")):
        assert run.status == 0, run.output
        assert run.requirement("FR-009")["outcome"] == "pass"
        for rid in V2_IDS:
            outcome = run.requirement(rid)
            assert outcome["outcome"] == "not-applicable", outcome
            if rid not in UNOBSERVABLE:
                assert reason in outcome["reason"], outcome


@pytest.mark.req("FR-141", "FR-171")
def test_an_unreachable_target_is_an_error_never_a_failure(tmp_path: Path) -> None:
    run = run_kit(f"http://127.0.0.1:{free_port()}", tmp_path)
    assert run.status == 1
    assert set(run.outcomes().values()) == {"error"}
    assert "no contract to check against" in run.requirement("FR-001")["reason"]


# -- users -----------------------------------------------------------------------------


def _token_command(directory: Path, auth: BetterAuth, failing: str | None, same: bool) -> str:
    """A script that prints a token per user name (the same for all when `same`), and
    fails for the user named `failing`."""
    tokens = {name: auth.sign_up(name).token for name in ("main", "alt", "third", "fresh")}
    if same:
        tokens = dict.fromkeys(tokens, tokens["main"])
    script = directory / "token.py"
    script.write_text(
        "import sys\n"
        f"tokens = {tokens!r}\n"
        f"if sys.argv[1] == {failing!r}:\n"
        "    sys.exit('no such user')\n"
        "print(tokens[sys.argv[1]])\n"
    )
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"


def _token_run(kits: Kits, name: str, failing: str | None, same: bool, *args: str) -> KitRun:
    directory = kits.directory(name)
    assert kits.better_auth is not None
    command = _token_command(directory, kits.better_auth, failing, same)
    return run_kit(
        kits.service("jwt").base, directory / "report", "--token-command", command, *args
    )


BEARER = ("jwt",)


@job("token fails", services=BEARER, weight=1)
def _token_fails_run(kits: Kits) -> KitRun:
    return _token_run(kits, "token-fails", "alt", False)


@job("token same", services=BEARER, weight=1)
def _token_same_run(kits: Kits) -> KitRun:
    return _token_run(kits, "token-same", None, True)


@job("token command", services=BEARER, weight=6)
def _token_command_run(kits: Kits) -> KitRun:
    # Bearer mode's fuzzing is the jwt run's; this run's (the kit's default, 30), at
    # full depth.
    depth = () if FULL_DEPTH else ("--fuzz-examples", "0")
    return _token_run(kits, "token-command", None, False, "--only", "FR-013,FR-014,FR-101", *depth)


@pytest.mark.kit("token fails")
@pytest.mark.req("FR-142", "FR-171")
def test_a_user_that_cannot_sign_in_is_an_error_naming_them(kit_jobs: Scheduled) -> None:
    run = kit_jobs["token fails"]
    assert run.status == 1
    assert set(run.outcomes().values()) == {"error"}
    assert "user alt" in run.requirement("FR-010")["reason"]


@pytest.mark.kit("token same")
@pytest.mark.req("FR-142")
def test_users_that_are_one_user_fail_the_preflight(kit_jobs: Scheduled) -> None:
    run = kit_jobs["token same"]
    assert run.status == 1
    assert set(run.outcomes().values()) == {"error"}
    assert "not distinct" in run.requirement("FR-014")["reason"]


@pytest.mark.kit("token command")
@pytest.mark.req("FR-142", "FR-148")
def test_a_token_command_gives_the_users(kit_jobs: Scheduled) -> None:
    run = kit_jobs["token command"]
    assert run.status == 0, run.output
    assert {run.requirement(r)["outcome"] for r in ("FR-013", "FR-014", "FR-101")} == {"pass"}


# -- safety ----------------------------------------------------------------------------


@pytest.mark.kit("read-only")
@pytest.mark.req("FR-144")
def test_a_read_only_run_sends_nothing_but_get_head_and_options(kit_jobs: Scheduled) -> None:
    run, seen = kit_jobs["read-only"]
    assert run.status == 0, run.output
    assert set(seen) <= {"GET", "HEAD", "OPTIONS"}
    assert len(seen) > 50
    assert "--read-only" in run.requirement("FR-012")["reason"]
    assert run.requirement("FR-133")["outcome"] == "pass"


@pytest.mark.req("FR-144")
@pytest.mark.parametrize(
    "signum",
    [pytest.param(s, marks=pytest.mark.kit(f"interrupted {s}")) for s in INTERRUPTING],
)
def test_a_run_stopped_midway_still_deletes_what_it_made(kit_jobs: Scheduled, signum: int) -> None:
    status, output, run, made = kit_jobs[f"interrupted {signum}"]
    assert status == 130, output  # FR-173: an interrupted run exits 130, SIGTERM too
    report = run.report
    assert report["interrupted"] is True
    assert report["cleanup"]["completed"] is True, report["cleanup"]
    assert made == 0, "todos the kit made survived its interruption"


# -- reports ---------------------------------------------------------------------------


@pytest.mark.kit("header")
@pytest.mark.req("FR-145")
def test_the_reports_name_kit_target_contract_and_time_and_every_requirement(
    kit_jobs: Scheduled,
) -> None:
    run = kit_jobs["header"][0]
    header_service = kit_jobs.service("header")
    report = run.report
    served = one_off.get(f"{header_service.base}/openapi.yaml").content
    assert report["contract"]["sha256"] == hashlib.sha256(served).hexdigest()
    assert report["kit"]["name"] == "todo-conformance" and report["kit"]["version"]
    assert report["target"] == header_service.base and report["started_at"]
    assert [r["id"] for r in report["requirements"]] == [r["id"] for r in CATALOGUE]
    for requirement in report["requirements"]:
        assert {"id", "outcome", "reason", "checks"} <= set(requirement)
    junit = ElementTree.parse(run.report_dir / "junit.xml").getroot()
    suites = {s.get("name"): s for s in junit.iter("testsuite")}
    assert set(suites) == {r["id"] for r in CATALOGUE}
    cases = list(suites["FR-014"].iter("testcase"))
    assert cases and all(c.get("classname") == "FR-014" for c in cases)
    for page in ("report.md", "report.html"):
        shown = (run.report_dir / page).read_text()
        assert "FR-014" in shown and report["contract"]["sha256"] in shown


# -- against broken implementations ------------------------------------------------------

for _defect in BROKEN:
    broken_job(_defect)

# Departures the kit sees in its preflight, before any check: failures under the ids
# they break, never errors (FR-171).
SEEN_IN_THE_PREFLIGHT = {"list-of-everyone", "created-is-200"}


def _broken_marks(defect: str) -> list[pytest.MarkDecorator]:
    marks = [pytest.mark.kit(f"broken {defect}")]
    return [*marks, pytest.mark.req("FR-171")] if defect in SEEN_IN_THE_PREFLIGHT else marks


@pytest.mark.req("FR-148", "FR-146")
@pytest.mark.parametrize("defect", [pytest.param(d, marks=_broken_marks(d)) for d in BROKEN])
def test_a_broken_implementation_fails_exactly_the_requirements_it_breaks(
    kit_jobs: Scheduled, defect: str
) -> None:
    run = kit_jobs[f"broken {defect}"]
    assert run.status == 1
    assert run.erring() == set(), run.output
    assert run.failing() == BROKEN[defect], run.output


@pytest.mark.req("FR-212", "FR-213")
@pytest.mark.parametrize(
    "defect", [pytest.param(d, marks=pytest.mark.kit(f"broken {d}")) for d in BULK_BROKEN]
)
def test_a_broken_bulk_write_never_reaches_a_todo_the_kit_did_not_make(
    kit_jobs: Scheduled, defect: str
) -> None:
    """Every bulk write the kit sends filters on a tag of its run: a delete that drops its
    filters, or its caller, still reaches no stranger's todo."""
    run = kit_jobs[f"broken {defect}"]
    assert run.failing() == BROKEN[defect], run.output
    assert run.others(kit_jobs.instance(defect).database_url) == STRANGER


# Checked alone and without fuzzing: with every create slower than 2 s, a whole run would
# take minutes.
MISSED = {"slow-create": "SC-001", "first-answer-kept": "SC-003"}


def _missed_run(kits: Kits, defect: str, rid: str) -> KitRun:
    return run_kit(kits[defect].base, kits.directory(defect), "--only", rid, "--fuzz-examples", "0")


for _defect, _rid in MISSED.items():
    job(f"missed {_rid}", instances={_defect: (_defect, {})}, weight=10)(
        partial(_missed_run, defect=_defect, rid=_rid)
    )


@pytest.mark.parametrize(
    ("defect", "rid"),
    [
        pytest.param(d, r, marks=[pytest.mark.req(r), pytest.mark.kit(f"missed {r}")])
        for d, r in MISSED.items()
    ],
)
def test_a_broken_implementation_fails_the_success_criterion_it_misses(
    kit_jobs: Scheduled, defect: str, rid: str
) -> None:
    run = kit_jobs[f"missed {rid}"]
    assert run.status == 1
    assert run.requirement(rid)["outcome"] == "fail", run.output


@pytest.mark.kit("broken not-problems")
@pytest.mark.req("FR-145")
def test_a_failures_curl_line_sends_it_again(kit_jobs: Scheduled) -> None:
    run = kit_jobs["broken not-problems"]
    failed = [c for c in run.requirement("FR-020")["checks"] if c["outcome"] == "fail"]
    # (The fuzzer's findings have curl lines too, but those that read state it made may
    # find it deleted by now.)
    checked = [c for c in failed if not c["name"].startswith("fuzz:")]
    assert checked, run.output
    for check in checked:
        shown = check["exchanges"][-1]
        again = subprocess.run(["bash", "-c", shown["curl"]], capture_output=True, check=True)
        head, _, body = again.stdout.partition(b"\r\n\r\n")
        assert head.split(b" ")[1] == str(shown["response"]["status"]).encode(), shown["curl"]
        assert body.decode() == shown["response"]["body"], shown["curl"]


@pytest.mark.kit("expected failures")
@pytest.mark.req("FR-147")
def test_expected_failures_let_a_run_pass_until_one_of_them_passes(kit_jobs: Scheduled) -> None:
    known, stale = kit_jobs["expected failures"]
    assert known.status == 0, known.output
    assert known.requirement("FR-016")["expected_failure"] == "blank titles are accepted until 2.0"
    assert stale.status == 1
    assert "FR-009, listed as an expected failure" in stale.output
