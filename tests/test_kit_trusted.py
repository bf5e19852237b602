"""The kit, trusted on a stranger's deployment (FR-171 to FR-176): departures seen in the
preflight are failures under the ids they break; clean implementations in another house
style get no failure and no error; after every run the database holds no todo the kit
made, interrupted or not, and the cleanup line balances; mistakes in how it is called
are refused in one line; a person can follow it; and it installs alone."""

import json
import os
import pty
import signal
import subprocess
import sys
import threading
import venv
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import environment
import pytest
from better_auth import BetterAuth
from conftest import REPO, read_yaml
from implementations import HOUSE_STYLE, SHIPPED
from kit_jobs import ORIGIN, Kits, Scheduled, job
from kit_runs import FULL_DEPTH, broken_job
from ports import free_port
from todo_conformance.checks import REGISTRY
from todo_conformance.fuzz import signals_held

from kit import KIT, KitRun, RecordingProxy, kit_command, run_kit

CATALOGUE = read_yaml(REPO / "contracts" / "requirements.yaml")["requirements"]
KNOWN = [r["id"] for r in CATALOGUE]
CONTRACT = read_yaml(REPO / "openapi.yaml")
RELEASED_1_0 = REPO / "contracts" / "released" / "openapi-1.0.0.yaml"


# -- clean implementations in another house style ------------------------------------


@job(
    "house style", instances={HOUSE_STYLE: (HOUSE_STYLE, {"TODO_CORS_ORIGINS": ORIGIN})}, weight=15
)
def _house_style_run(kits: Kits) -> KitRun:
    return run_kit(
        kits[HOUSE_STYLE].base,
        kits.directory("house-style"),
        "--origin",
        ORIGIN,
        # Its fuzzing (no finding against another house style), at full depth.
        "--fuzz-examples",
        "10" if FULL_DEPTH else "0",
    )


# What the 1.0 contract's run checks: where the house style answers otherwise.
HOUSE_STYLE_IDS = ("FR-001", "FR-008", "FR-009", "FR-014", "FR-020", "FR-021")


@job("house style 1.0", instances={"house style 1.0": (HOUSE_STYLE, {})}, weight=4)
def _house_style_1_0_run(kits: Kits) -> KitRun:
    """The same, checked against the released 1.0 contract, which never mentions a
    charset: a charset=latin-1 body read as JSON passes FR-008 and FR-021."""
    return run_kit(
        kits["house style 1.0"].base,
        kits.directory("house-style-1.0"),
        "--contract",
        str(RELEASED_1_0),
        "--only",
        ",".join(HOUSE_STYLE_IDS),
        "--fuzz-examples",
        "0",
    )


@pytest.mark.req("FR-172", "FR-148")
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.kit(n)) for n in ("house style", "house style 1.0")]
)
def test_a_clean_implementation_in_another_house_style_neither_fails_nor_errs(
    kit_jobs: Scheduled, name: str
) -> None:
    """`Z` timestamps, members in another order, problem types, titles and extension
    members of its own, extra headers, a charset parameter ignored, 415 before 413."""
    run = kit_jobs[name]
    assert run.failing() == set() and run.erring() == set(), run.output
    assert run.status == 0, run.output
    checked = {r for r, outcome in run.outcomes().items() if outcome == "pass"}
    assert set(HOUSE_STYLE_IDS) <= checked


@pytest.mark.req("FR-172")
def test_every_check_names_the_clauses_it_enforces_and_each_is_in_the_contract() -> None:
    for check in REGISTRY:
        assert check.ids, check.name
        for clause in check.clauses:
            node: Any = CONTRACT
            for part in clause.removeprefix("#/").split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
            assert node, clause
    enforcing = [c for c in REGISTRY if c.clauses]
    assert len(enforcing) >= len(REGISTRY) - 3, "a location of the contract for nearly every check"


@pytest.mark.kit("broken not-problems")
@pytest.mark.req("FR-172")
def test_every_report_names_what_each_failing_check_enforces(kit_jobs: Scheduled) -> None:
    run = kit_jobs["broken not-problems"]
    failed = [c for c in run.requirement("FR-020")["checks"] if c["outcome"] == "fail"]
    named = [c for c in failed if any(e.startswith("openapi.yaml#/") for e in c["enforces"])]
    assert named and all("FR-020" in c["enforces"] for c in failed), failed
    clause = next(e for e in named[0]["enforces"] if e.startswith("openapi.yaml#/"))
    for page in ("report.md", "report.html"):
        assert clause in (run.report_dir / page).read_text(), page
    # junit.xml has no place for a clause: its failing case names the check, whose
    # clause the other reports show.
    junit = ElementTree.parse(run.report_dir / "junit.xml").getroot()
    suite = next(s for s in junit.iter("testsuite") if s.get("name") == "FR-020")
    failing = {c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None}
    assert named[0]["name"] in failing, failing


# -- after every run, nothing the kit made ------------------------------------------------

# The runs against broken implementations these tests read (tests/kit_runs.py).
for _defect in (
    "not-problems",
    "delete-keeps-row",
    "created-is-200",
    "list-of-everyone",
    "foreign-deletable",
):
    broken_job(_defect)

# Each run of the kit's own tests against a database of its own (or a service's), and
# whether it deletes: an implementation whose deletes keep the row cannot be emptied.
RUNS_TO_COUNT = [
    "header",
    "jwt",
    "limits",
    "read-only",
    "contract 1.0",
    "house style",
    "broken created-is-200",
    "broken list-of-everyone",
    "broken foreign-deletable",
    "interrupted 2",
    "interrupted 15",
    "interrupted in fuzzing",
    "interrupted in cleanup",
]


def _database(kit_jobs: Scheduled, name: str) -> str:
    served = {"header": "header", "jwt": "jwt", "read-only": "header", "contract 1.0": "header"}
    if name in served:
        url = kit_jobs.service(served[name]).database_url
        assert url
        return url
    instance = {
        "broken created-is-200": "created-is-200",
        "broken list-of-everyone": "list-of-everyone",
        "broken foreign-deletable": "foreign-deletable",
        "house style": HOUSE_STYLE,
    }.get(name, name)
    return kit_jobs.instance(instance).database_url


def _kit_run(result: Any) -> KitRun:
    """The KitRun of a job's result, whatever else the job returns with it."""
    if isinstance(result, KitRun):
        return result
    return next(part for part in result if isinstance(part, KitRun))


@pytest.mark.req("FR-173", "FR-144")
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.kit(n)) for n in RUNS_TO_COUNT])
def test_after_a_run_the_database_holds_no_todo_it_made_and_the_cleanup_line_balances(
    kit_jobs: Scheduled, name: str
) -> None:
    run = _kit_run(kit_jobs[name])
    cleanup = run.report["cleanup"]
    assert cleanup["completed"] is True, cleanup
    if not cleanup.get("read_only"):
        assert cleanup["created"] == cleanup["deleted"] + len(cleanup["left"]), cleanup
        assert cleanup["created"] > 0, cleanup
        assert f"cleanup: created {cleanup['created']}, deleted {cleanup['deleted']}" in run.output
    assert run.todos_left(_database(kit_jobs, name)) == 0, "todos the kit made are still there"


@pytest.mark.kit("broken delete-keeps-row")
@pytest.mark.req("FR-173")
def test_what_cannot_be_deleted_is_counted_listed_by_id_and_fails_the_run(
    kit_jobs: Scheduled,
) -> None:
    run = kit_jobs["broken delete-keeps-row"]
    cleanup = run.report["cleanup"]
    assert cleanup["completed"] is False and run.status == 1
    left = [entry.split(": ")[1] for entry in cleanup["left"]]
    assert left and cleanup["created"] == cleanup["deleted"] + len(left), cleanup
    assert run.todos_left(kit_jobs.instance("delete-keeps-row").database_url) == len(left)
    junit = ElementTree.parse(run.report_dir / "junit.xml").getroot()
    assert [c.get("name") for c in junit.iter("testcase") if c.find("failure") is not None]
    assert left[0] in (run.report_dir / "report.md").read_text()


# -- interrupted, at any phase ------------------------------------------------------------


# What each run checks, to reach its phase soon and stay in it long enough to be
# interrupted there: fuzzing after one check; cleanup at twenty requests a second.
REACHING = {
    "fuzzing": ("--only", "FR-010", "--fuzz-examples", "30"),
    "cleanup": ("--only", "FR-010", "--fuzz-examples", "0", "--max-rps", "20"),
}


@job("accounts kept", weight=20)
def _accounts_kept_run(kits: Kits) -> KitRun:
    """Against this service in jwt mode trusting a Better Auth that does not allow its
    users to delete their accounts: a few ids, enough to sign the users up."""
    database = kits.database("accounts-kept")
    auth = kits.keep(BetterAuth(kits.scratch("accounts-kept"), database, keep_accounts=True))
    trust = {"TODO_AUTH_MODE": "jwt", "TODO_JWT_JWKS_URL": auth.jwks_url}
    service = kits.serve("accounts-kept", database, extra_env=trust)
    service.wait_ready()
    return run_kit(
        service.base,
        kits.directory("accounts-kept"),
        *("--better-auth", auth.base, "--only", "FR-001", "--fuzz-examples", "0"),
    )


@pytest.mark.kit("accounts kept")
@pytest.mark.req("FR-173")
def test_accounts_the_auth_server_keeps_are_counted_and_listed_in_the_cleanup_line(
    kit_jobs: Scheduled,
) -> None:
    run = kit_jobs["accounts kept"]
    assert run.status == 0, "kept accounts hold no todo: they do not fail the run\n" + run.output
    accounts = run.report["cleanup"]["accounts"]
    assert accounts["made"] == 4 and accounts["deleted"] == 0, accounts
    prefix = f"todo-conformance-{run.report['run_id']}-"
    assert sorted(accounts["kept"]) == sorted(
        f"{prefix}{name}@example.com" for name in ("main", "alt", "third", "fresh")
    )
    assert "does not allow delete-user" in accounts["why"][0], accounts
    line = next(line for line in run.output.splitlines() if "cleanup:" in line)
    assert "accounts: made 4, deleted 0, kept 4" in line and f"{prefix}main@" in line, line


def _interrupted_when_seen(kits: Kits, instance: str, phase: str) -> tuple[int, str, KitRun]:
    """The kit against `instance`, sent SIGINT as soon as its progress names `phase`."""
    directory = kits.directory(instance)
    kit = subprocess.Popen(
        kit_command(kits[instance].base, directory, *REACHING[phase]),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment.child(),
    )
    lines: list[str] = []
    seen = threading.Event()

    def read() -> None:
        assert kit.stdout is not None
        for line in kit.stdout:
            lines.append(line)
            if f": {phase}" in line:
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert seen.wait(120), "".join(lines)
    kit.send_signal(signal.SIGINT)
    kit.wait(timeout=180)
    reader.join(timeout=10)
    output = "".join(lines)
    return kit.returncode, output, KitRun(kit.returncode, output, directory)


for _phase in ("fuzzing", "cleanup"):
    job(
        f"interrupted in {_phase}",
        instances={f"interrupted in {_phase}": (SHIPPED, {})},
        weight=5,
    )(partial(_interrupted_when_seen, instance=f"interrupted in {_phase}", phase=_phase))


@pytest.mark.req("FR-173")
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.kit(n))
        for n in ("interrupted 2", "interrupted in fuzzing", "interrupted in cleanup")
    ],
)
def test_an_interrupted_run_says_so_in_the_console_and_all_four_reports_and_exits_130(
    kit_jobs: Scheduled, name: str
) -> None:
    result = kit_jobs[name]
    status, output, run = result[0], result[1], result[2]
    assert status == 130, output
    assert "INTERRUPTED" in output and "interrupted" in output
    assert run.report["interrupted"] is True and run.report["verdict"] == "INTERRUPTED"
    for page in ("report.md", "report.html"):
        assert "INTERRUPTED" in (run.report_dir / page).read_text(), page
    junit = ElementTree.parse(run.report_dir / "junit.xml").getroot()
    [case] = [c for c in junit.iter("testcase") if c.get("name") == "interrupted"]
    assert case.find("error") is not None
    assert run.report["cleanup"]["completed"] is True


@pytest.mark.req("FR-173")
def test_a_signal_while_the_fuzzer_starts_stops_the_run_once_its_process_can_be_stopped() -> None:
    """A signal that cut the start of the fuzzer's process in two would leave it running,
    unseen, making todos after the cleanup: it is heard as the process has started."""
    heard: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: heard.append(signum))
    try:
        with signals_held():
            signal.raise_signal(signal.SIGTERM)
            assert heard == [], "heard while the process was being started"
        assert heard == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- mistakes ------------------------------------------------------------------------------


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """A plain web server that keeps quiet."""


@pytest.fixture
def plain_web_server(tmp_path: Path) -> Any:
    """A web server that is no deployment of the contract: its 404 page is HTML."""
    (tmp_path / "index.html").write_text("<html><body>Welcome</body></html>")
    server = ThreadingHTTPServer(
        ("127.0.0.1", free_port()), partial(_Quiet, directory=str(tmp_path))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _kit(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KIT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
        env=environment.child(),
    )


@pytest.mark.req("FR-174")
@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--only", "FR-999"], "no such id FR-999"),
        (["--only", "fr-113"], "no such id fr-113"),
        (["--expected-failures", "missing.yaml"], "missing.yaml"),
        (["--expected-failures", "malformed.yaml"], "not YAML"),
        (["--expected-failures", "unknown.yaml"], "no such id FR-998"),
        (["--expected-failures", "reasonless.yaml"], "an id and a reason"),
        (["--base-url", "ftp://example.com"], "not an http(s) URL"),
        (["--base-url", "example.com"], "not an http(s) URL"),
        (["--no-such-option"], "unrecognized arguments"),
        # FR-151 fills a user up to the quota: past what a run can spend, it is refused,
        # never skipped in silence.
        (["--quota", "10000"], "at most 5,000"),
        (["--quota", "0"], "--quota 0"),
    ],
)
def test_a_mistake_is_refused_with_exit_2_and_one_line(
    tmp_path: Path, plain_web_server: str, args: list[str], said: str
) -> None:
    (tmp_path / "malformed.yaml").write_text("- id: [unclosed\n")
    (tmp_path / "unknown.yaml").write_text("- id: FR-998\n  reason: not an id\n")
    (tmp_path / "reasonless.yaml").write_text("- id: FR-009\n")
    base = [] if "--base-url" in args else ["--base-url", plain_web_server]
    done = _kit("run", *base, *args, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    assert said in done.stderr and "Traceback" not in done.stderr
    if "no such id" in said:
        assert "FR-113" in done.stderr and "SC-007" in done.stderr, "the line lists the known ids"


@pytest.mark.req("FR-174")
def test_a_target_that_serves_no_contract_is_refused_naming_the_url_and_its_answer(
    plain_web_server: str,
) -> None:
    done = _kit("run", "--base-url", plain_web_server)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"{plain_web_server}/openapi.yaml answered 404" in done.stderr
    assert "text/html" in done.stderr and "Traceback" not in done.stderr


@job("prefixed", services=("header",), weight=2)
def _prefixed_run(kits: Kits) -> KitRun:
    proxy = RecordingProxy(kits.service("header").base, prefix="/staging")
    try:
        return run_kit(
            proxy.base,
            kits.directory("prefixed"),
            "--only",
            "FR-010,FR-014",
            "--fuzz-examples",
            "0",
        )
    finally:
        proxy.stop()


@pytest.mark.kit("prefixed")
@pytest.mark.req("FR-174")
def test_a_base_url_with_a_path_prefix_works(kit_jobs: Scheduled) -> None:
    run = kit_jobs["prefixed"]
    assert run.status == 0, run.output
    assert run.report["target"].endswith("/staging")
    assert {run.requirement(r)["outcome"] for r in ("FR-010", "FR-014")} == {"pass"}


@pytest.mark.req("FR-174")
def test_version_names_the_kit_and_the_contract_versions_it_knows() -> None:
    done = _kit("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == (
        f"todo-conformance {metadata.version('todo-conformance')}"
        " (contract versions 1.0, 1.1, 1.2, 2.0, 2.1)"
    )


@pytest.mark.req("FR-174")
def test_ids_lists_every_id_with_its_text() -> None:
    done = _kit("ids")
    assert done.returncode == 0
    listed = [line.split("\t") for line in done.stdout.splitlines()]
    assert [rid for rid, _ in listed] == KNOWN
    assert all(text for _, text in listed)


@pytest.mark.kit("expected failures")
@pytest.mark.req("FR-174", "FR-147")
def test_a_stale_expected_failure_is_a_failing_junit_case_named_for_its_id(
    kit_jobs: Scheduled,
) -> None:
    _, stale = kit_jobs["expected failures"]
    junit = ElementTree.parse(stale.report_dir / "junit.xml").getroot()
    suite = next(s for s in junit.iter("testsuite") if s.get("name") == "FR-009")
    [case] = [c for c in suite.iter("testcase") if c.get("name") == "FR-009"]
    assert case.find("failure") is not None
    assert int(suite.get("failures") or 0) >= 1


# -- a person can follow it ---------------------------------------------------------------


@pytest.mark.kit("header")
@pytest.mark.req("FR-175")
def test_a_run_shows_its_phases_and_requests_and_ends_with_the_verdict_and_its_reports(
    kit_jobs: Scheduled,
) -> None:
    run = kit_jobs["header"][0]
    progress = [line for line in run.output.splitlines() if line.startswith("todo-conformance: ")]
    for phase in ("preflight", "checks", "fuzzing", "cleanup"):
        assert any(f": {phase}" in line and "requests sent" in line for line in progress), phase
    assert any("scenarios" in line for line in progress), "fuzzing shows how far it is"
    last = run.output.strip().splitlines()[-1]
    assert last.startswith("todo-conformance: PASSED (")
    for name in ("report.html", "report.md", "report.json", "junit.xml"):
        assert str(run.report_dir / name) in last


def _on_a_terminal(*args: str, env: dict[str, str]) -> str:
    """The kit's output as a terminal sees it."""
    main, child = pty.openpty()
    process = subprocess.Popen(
        [str(KIT), *args], stdin=child, stdout=child, stderr=child, env=env, close_fds=True
    )
    os.close(child)
    seen = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    process.wait(timeout=60)
    os.close(main)
    return seen.decode(errors="replace")


@pytest.mark.req("FR-175")
def test_colour_on_a_terminal_unless_no_color_is_set() -> None:
    unreachable = ["run", "--base-url", f"http://127.0.0.1:{free_port()}", "--fuzz-examples", "0"]
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    coloured = _on_a_terminal(*unreachable, env=env)
    assert "\x1b[31mFAILED\x1b[0m" in coloured, coloured
    plain = _on_a_terminal(*unreachable, env={**env, "NO_COLOR": "1"})
    assert "FAILED" in plain and "\x1b[" not in plain, plain


# -- it installs alone ------------------------------------------------------------------


@job("installed alone", services=("header",), weight=30)
def _installed_alone(kits: Kits) -> tuple[str, list[str], KitRun]:
    """A bare virtual environment, `pip install ./kit` into it, and a run from it."""
    directory = kits.directory("installed-alone")
    venv.create(directory / "venv")  # bare: not even pip, which installs from outside
    python = directory / "venv" / "bin" / "python"
    installed = subprocess.run(
        # --no-compile: what the run imports is compiled as it is, not all of it.
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
         "--no-compile", str(REPO / "kit")],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    listed = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m, json;"
         " print(json.dumps([d.metadata['Name'] for d in m.distributions()]))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    packages = [name.lower() for name in json.loads(listed.stdout)]
    kit = directory / "venv" / "bin" / "todo-conformance"
    version = subprocess.run([str(kit), "--version"], capture_output=True, text=True, check=True)
    examples = "3" if FULL_DEPTH else "0"
    done = subprocess.run(
        [str(kit), "run", "--base-url", kits.service("header").base, "--report-dir",
         str(directory / "report"), "--only", "FR-008,FR-010,FR-014", "--fuzz-examples", examples],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    run = KitRun(done.returncode, done.stdout + done.stderr, directory / "report")
    return version.stdout, packages, run


@pytest.mark.kit("installed alone")
@pytest.mark.req("FR-176")
def test_the_kit_installs_alone_without_the_services_dependencies_and_runs(
    kit_jobs: Scheduled,
) -> None:
    version, packages, run = kit_jobs["installed alone"]
    assert version.startswith("todo-conformance ")
    assert "todo-conformance" in packages
    for of_the_service in ("todo-service", "fastapi", "sqlmodel", "psycopg2-binary", "alembic"):
        assert of_the_service not in packages, of_the_service
    assert run.status == 0, run.output
    assert {run.requirement(r)["outcome"] for r in ("FR-008", "FR-010", "FR-014")} == {"pass"}


@pytest.mark.req("FR-176")
def test_the_services_install_puts_no_todo_conformance_on_the_path() -> None:
    scripts = {e.name for e in metadata.distribution("todo-service").entry_points}
    assert scripts == {"todo-service"}
    assert metadata.distribution("todo-conformance").read_text("entry_points.txt")
    # The command the tests run is the one the kit's distribution installed, and no other.
    [script] = [
        f for f in metadata.distribution("todo-conformance").files or () if f.name == KIT.name
    ]
    assert Path(script.locate()).resolve() == KIT.resolve()
    assert KIT.name not in {f.name for f in metadata.distribution("todo-service").files or ()}


@pytest.mark.kit("broken not-problems")
@pytest.mark.req("FR-175", "FR-145")
def test_report_html_shows_each_failure_with_its_exchanges_and_curl_line_and_no_raw_json(
    kit_jobs: Scheduled,
) -> None:
    run = kit_jobs["broken not-problems"]
    page = (run.report_dir / "report.html").read_text()
    assert page.index('class="verdict FAILED"') < page.index('id="requirements"')
    failed = next(c for c in run.requirement("FR-020")["checks"] if c["outcome"] == "fail")
    assert failed["exchanges"] and "curl -sS" in failed["exchanges"][-1]["curl"]
    assert "<pre>" in page and "curl -sS" in page
    assert '{"kit"' not in page and "&quot;kit&quot;" not in page
