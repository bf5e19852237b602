"""Developer and CI entry points. `nox -s tests` is what CI runs."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"
REPORT_DIR = Path("contracts/report")


def _install(session: nox.Session, *extras: str, kit: bool = False) -> None:
    # A real (non-editable) install: the wheel carries openapi.yaml inside the package.
    # The conformance kit (kit/) is a distribution of its own, installed beside it.
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install(spec, *(["./kit"] if kit else []))
    session.install("--force-reinstall", "--no-deps", ".", *(["./kit"] if kit else []))


NODE_ENV = {"REDOCLY_TELEMETRY": "off"}


def _npm_ci(session: nox.Session) -> None:
    # Pinned by package-lock.json; everything comes from the npm registry (Redocly, the
    # TypeScript toolchain, and Better Auth, the real auth server the tests sign in with).
    session.run("npm", "ci", "--no-audit", "--no-fund", external=True, env=NODE_ENV)


# The Debian packages the suite and the trial of the alerts run, by a command each gives:
# Prometheus and promtool, Alertmanager (with amtool) and the blackbox exporter.
SUITE_PACKAGES = {
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "amtool": "prometheus-alertmanager",
    "prometheus-blackbox-exporter": "prometheus-blackbox-exporter",
}


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole suite on real PostgreSQL (TEST_DATABASE_URL, Docker, or embedded), with
    a real Better Auth server (Node, from package-lock.json) issuing the tokens and a
    real Prometheus (Debian's package, installed here when missing) scraping metrics;
    amtool and the blackbox exporter check deploy/'s configurations. The trial of the
    alerts in real time is `nox -s alerts`."""
    _install(session, "test", kit=True)
    _npm_ci(session)
    _debian_packages(session, SUITE_PACKAGES)
    # Two steps over one directory of records (tests/whole_run.py). The suite first: two
    # worker processes share its tests (pytest-xdist, --dist load), beside the kit's jobs
    # in a process of their own (tests/kit_jobs.py); on a database given by
    # TEST_DATABASE_URL they would empty each other's tables, so there one process runs
    # them all. Then the audits of the whole run (`audit_last`), over what every process
    # of the first step kept. The slowest fifteen end the first: what it costs stays in
    # sight. The trial of the alerts (marked `alerts`) is `nox -s alerts`'s.
    # One test at a time to each worker (--maxschedchunk 1): handed out in chunks, the
    # tests left at the end sat queued behind one worker while the other idled for 30 s.
    workers = (
        []
        if os.environ.get("TEST_DATABASE_URL")
        else ["-n", "2", "--dist", "load", "--maxschedchunk", "1"]
    )
    with tempfile.TemporaryDirectory(prefix="todo-tests-run-", dir=_in_memory()) as records:
        # Every process of the run makes its temporary files there too (TMPDIR). Bytecode
        # is written even where PYTHONDONTWRITEBYTECODE is set (an empty value unsets it):
        # without it each of the run's hundred-odd Python processes compiles again what
        # it imports from source, and every pytest process rewrites the asserts of the
        # test modules and of its plugins' packages (261 modules, 2.6 of a worker's 6.6
        # CPU-seconds of collection).
        env = {"TESTS_RUN": records, "TMPDIR": records, "PYTHONDONTWRITEBYTECODE": ""}
        # Its temporary files (the served services' logs the audits read among them) kept
        # with the records, past pytest's rotation of its own temporary directories.
        basetemp = f"--basetemp={Path(records) / 'tmp'}"
        session.run(
            "pytest", *workers, "-m", "not audit_last and not alerts", basetemp, "--durations=15",
            *session.posargs, env=env,
        )  # fmt: skip
        # Exit status 5: the selection held no audit.
        session.run("pytest", "-m", "audit_last", *session.posargs, env=env, success_codes=[0, 5])


def _in_memory() -> str | None:
    """Where the suite keeps what it writes (its PostgreSQL servers' data, the fleet's
    cloned databases, venvs, logs): a tmpfs with room to spare, else the system's
    temporary directory. Nothing there outlives the run, and on a disk the kernel's
    writeback and discards of it cost some 40 of the run's 350 CPU-seconds here."""
    shm = Path("/dev/shm")
    try:
        found = os.statvfs(shm)
    except OSError:
        return None
    room = found.f_bavail * found.f_frsize
    return str(shm) if room >= 4 * 2**30 and os.access(shm, os.W_OK) else None


@nox.session(python=PYTHON, name="kit-depth")
def kit_depth(session: nox.Session) -> None:
    """The kit's own tests with every run at full depth (KIT_DEPTH=full): where
    `nox -s tests` runs a shallower sweep of a kit run to keep within its time, this is
    the same check as deep as it ever was (docs/testing.md lists each pair)."""
    _install(session, "test", kit=True)
    _npm_ci(session)
    # Forty runs, four at once, each as deep as it was: a test may wait longer for its
    # run than nox -s tests allows, still bounded.
    session.run(
        "pytest", "tests/test_conformance_kit.py", "tests/test_kit_trusted.py",
        "--durations=15", "--timeout=1500", *session.posargs,
        env={"KIT_DEPTH": "full", "KIT_JOB_WAIT": "1200"},
    )  # fmt: skip


@nox.session(python=PYTHON)
def alerts(session: nox.Session) -> None:
    """The operator's trial, in real time (a few minutes): `serve` under load, a real
    Prometheus with deploy/'s rules, the blackbox exporter with deploy/'s probe and
    Alertmanager with deploy/'s routes (Debian's packages, installed here when missing);
    the database stops, and a page naming the cause must reach a webhook within 2 minutes."""
    _install(session, "test")
    _debian_packages(session, SUITE_PACKAGES)
    session.run("pytest", "-m", "alerts", "tests/test_alert_trial.py", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff, mypy (strict) and vulture (dead code, allow-list in pyproject.toml); the spec
    through Redocly (redocly.yaml, then its built-in recommended ruleset alone),
    openapi-spec-validator and Spectral's OWASP API Security Top 10 ruleset (no error);
    the breaking-change guard against every released contract; the links of the README
    and docs/ (remark-validate-links)."""
    _install(session, "test", "lint", kit=True)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
    session.run("vulture")
    session.run("openapi-spec-validator", "openapi.yaml")
    session.run("python", "contracts/breaking.py")
    _npm_ci(session)
    redocly = str(Path("node_modules/.bin/redocly").resolve())
    session.run(
        redocly, "lint", "openapi.yaml", "--config", "redocly.yaml", external=True, env=NODE_ENV
    )
    # And Redocly's built-in `recommended` ruleset alone, away from the project's config.
    with tempfile.TemporaryDirectory() as bare:
        shutil.copy("openapi.yaml", bare)
        with session.chdir(bare):
            session.run(redocly, "lint", "openapi.yaml", external=True, env=NODE_ENV)
    spectral = str(Path("node_modules/.bin/spectral").resolve())
    session.run(
        spectral, "lint", "openapi.yaml", "--ruleset", ".spectral.yaml",
        "--fail-severity", "error", external=True, env=NODE_ENV,
    )  # fmt: skip
    # Every relative link and anchor of the README and docs/ resolves (.remarkrc.json).
    remark = str(Path("node_modules/.bin/remark").resolve())
    session.run(
        remark, "--frail", "--quiet", "--no-stdout", "README.md", "docs/",
        external=True, env=NODE_ENV,
    )  # fmt: skip


@nox.session(python=PYTHON)
def clients(session: nox.Session) -> None:
    """Generates the TypeScript (openapi-typescript + openapi-fetch, tsc --strict) and
    Python (openapi-python-client) clients and drives a live service with each."""
    _install(session, "clients")
    _npm_ci(session)
    session.run(
        "pytest",
        "consumers/test_typescript_client.py",
        "consumers/test_python_client.py",
        *session.posargs,
    )


@nox.session(python=PYTHON)
def browser(session: nox.Session) -> None:
    """Headless Chromium (Debian's chromium package, installed here when missing): /docs
    of a live service renders every operation offline, and the browser frontend
    (clients/web) signs two users in with a real Better Auth server and drives the
    service on another origin with the generated client; the kit's report.html opens
    with its verdict and table."""
    _install(session, "clients", kit=True)
    _debian_packages(session, {"chromium": "chromium"})
    _npm_ci(session)
    session.run(
        "pytest",
        "consumers/test_docs_browser.py",
        "consumers/test_web_frontend.py",
        "consumers/test_kit_report_browser.py",
        *session.posargs,
    )


@nox.session(python=PYTHON)
def readme(session: nox.Session) -> None:
    """Every command block of the README, run as written with free ports substituted
    (consumers/test_readme.py): the curl lines against `todo-service serve`, the kit's
    full runs against it in header mode and against `npm run web:serve` (jwt mode, a real
    Better Auth), and the nox sessions it names checked to exist."""
    _install(session, "test", kit=True)
    _npm_ci(session)
    session.run("pytest", "consumers/test_readme.py", *session.posargs)


@nox.session(python=PYTHON)
def report(session: nox.Session) -> None:
    """Runs the suite and writes contracts/report/conformance.{html,md,json}, with the
    kit's own reports of this service (contracts/report/kit/); fails when any
    requirement id lacks a passing test."""
    _install(session, "test", kit=True)
    _npm_ci(session)
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    results = REPORT_DIR / "test-results.json"
    env = {"KIT_REPORT_DIR": str((REPORT_DIR / "kit").resolve())}
    session.run(
        "pytest", f"--req-results={results}", *session.posargs, env=env, success_codes=[0, 1]
    )
    session.run("python", "contracts/conformance.py", str(results), str(REPORT_DIR))


LOCAL_ORIGIN = "https://app.example.com"


@contextmanager
def _served_here(session: nox.Session) -> Iterator[str]:
    """This checkout's service on a free port (on the embedded PostgreSQL, in a directory
    of its own, unless NEON_DATABASE_URL is set), until the block ends."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    workdir = Path(tempfile.mkdtemp(prefix="todo-conformance-served-"))
    env = os.environ | {
        "TODO_CORS_ORIGINS": LOCAL_ORIGIN,
        "TODO_DATA_DIR": str(workdir / "data"),
        "TODO_SHUTDOWN_GRACE_SECONDS": "0",  # no load balancer to drain for
    }
    output = (workdir / "serve.log").open("w")
    server = subprocess.Popen(
        [str(Path(session.bin) / "todo-service"), "serve", "--port", str(port)],
        cwd=workdir, env=env, stdout=output, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not _ready(base):
            if server.poll() is not None or time.monotonic() > deadline:
                session.error(f"the service did not become ready; its output is in {output.name}")
            time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        server.wait(60)
        output.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/health/ready", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _kit(session: nox.Session, report_dir: Path, *args: str) -> None:
    """`todo-conformance run`: against `--base-url` when the arguments name one, otherwise
    against this checkout's service, served for the run."""
    report = ("--report-dir", str(report_dir))
    if "--base-url" in session.posargs or os.environ.get("TODO_CONFORMANCE_BASE_URL"):
        session.run("todo-conformance", "run", *report, *args, *session.posargs)
        return
    with _served_here(session) as base:
        session.run(
            "todo-conformance", "run", "--base-url", base, "--origin", LOCAL_ORIGIN,
            *report, *args, *session.posargs,
        )  # fmt: skip


@nox.session(python=PYTHON)
def conformance(session: nox.Session) -> None:
    """The conformance kit (`todo-conformance run`) against a deployment:
    `nox -s conformance -- --base-url URL [--better-auth URL | --token-command CMD] ...`.
    Without a base URL it serves this checkout and checks that. Reports (JUnit XML,
    JSON, Markdown, HTML) go to contracts/report/deployment/."""
    _install(session, kit=True)
    _kit(session, REPORT_DIR / "deployment")


def _debian_packages(session: nox.Session, programs: dict[str, str]) -> None:
    """Installs the Debian package of each program (name -> package) not on PATH."""
    absent = [program for program in programs if shutil.which(program) is None]
    missing = sorted({programs[program] for program in absent})
    if missing and (shutil.which("apt-get") is None or os.geteuid() != 0):
        # One line saying what to install, not apt-get's failure on another system.
        session.error(
            f"{', '.join(absent)} not found: install {', '.join(missing)} (Debian's"
            " package names; this session runs apt-get itself only on Debian or Ubuntu as root)"
        )
    if missing:
        session.run("apt-get", "update", "-q", external=True)
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        session.run("apt-get", "install", "-y", "-q", *missing, external=True, env=env)


def _neon_shaped(session: nox.Session, profile: str) -> None:
    _install(session, "test", kit=True)
    _npm_ci(session)
    # The whole suite, so what it needs too: the session runs alone as well as after
    # nox -s tests, which would otherwise have installed it.
    _debian_packages(session, {**SUITE_PACKAGES, "pgbouncer": "pgbouncer", "openssl": "openssl"})
    session.run("python", "tests/profiles/neon_shaped.py", profile, *session.posargs)


@nox.session(python=PYTHON, name="neon-direct")
def neon_direct(session: nox.Session) -> None:
    """The whole suite on Debian's PostgreSQL over TLS with scram-sha-256, through a URL
    of Neon's shape (sslmode=require&channel_binding=require)."""
    _neon_shaped(session, "direct")


@nox.session(python=PYTHON, name="neon-pooled")
def neon_pooled(session: nox.Session) -> None:
    """The whole suite through PgBouncer in transaction mode, TLS on both legs."""
    _neon_shaped(session, "pooled")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """The benchmark (bench/run.py): ours, a naive reference, FastAPI's and PostgreSQL's
    ceilings, with wrk and pgbench, on 1,000,000 seeded todos. Arguments after `--` go
    to bench/run.py (`--workers 2`, `--duration 10`, `--smoke`)."""
    _install(session, "test")
    _debian_packages(session, {"wrk": "wrk", "pgbench": "postgresql"})
    session.run("python", "bench/run.py", *session.posargs)


# The build the 2.0 migration must run under (FR-221): 1.3, the commit before 2.0.
V13 = "aab65bb"


@nox.session(python=PYTHON)
def migration(session: nox.Session) -> None:
    """FR-221 (tests_online/): the 2.0 migration of this checkout on 1,000,000 todos
    while the 1.3 build (V13, installed from this repository's history into a virtual
    environment of its own, kept between runs) serves a steady load. Minutes, so never
    in `nox -s tests`; the figures are printed."""
    _install(session, "test")
    build = Path(session.create_tmp()).resolve() / f"build-{V13}"
    program = build / "venv" / "bin" / "todo-service"
    if not program.exists():
        shutil.rmtree(build, ignore_errors=True)
        (build / "src").mkdir(parents=True)
        archive = subprocess.run(["git", "archive", V13], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(build / "src")], input=archive.stdout, check=True)
        session.run("python", "-m", "venv", str(build / "venv"))
        pip = str(build / "venv" / "bin" / "pip")
        session.run(pip, "install", "--quiet", str(build / "src"), external=True)
    env = {"TODO_V13_SERVICE": str(program)}
    session.run("pytest", "tests_online", "-s", "--durations=5", *session.posargs, env=env)


@nox.session(python=PYTHON)
def fuzz(session: nox.Session) -> None:
    """The kit with a longer schemathesis run (FR-146): FUZZ_MAX_EXAMPLES per operation
    (default 200) and a fixed seed for replay (FUZZ_SEED), against `--base-url` or this
    checkout served; its findings land under the ids they break, reports in
    contracts/report/fuzz/."""
    _install(session, kit=True)
    examples = os.environ.get("FUZZ_MAX_EXAMPLES", "200")
    seed = os.environ.get("FUZZ_SEED", "20261125")
    _kit(
        session,
        REPORT_DIR / "fuzz",
        "--fuzz-examples",
        examples,
        "--seed",
        seed,
    )


@nox.session(python=PYTHON)
def serve(session: nox.Session) -> None:
    """Installs and serves on 127.0.0.1:8000 (embedded PostgreSQL unless
    NEON_DATABASE_URL is set). Extra arguments go to `todo-service serve`."""
    _install(session)
    session.run("todo-service", "serve", *session.posargs)
