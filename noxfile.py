"""Developer and CI entry points. `nox -s tests` is what CI runs."""

import os
import shutil
import tempfile
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"
REPORT_DIR = Path("contracts/report")


def _install(session: nox.Session, *extras: str) -> None:
    # A real (non-editable) install: the wheel carries openapi.yaml inside the package.
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install(spec)
    session.install("--force-reinstall", "--no-deps", ".")


NODE_ENV = {"REDOCLY_TELEMETRY": "off"}


def _npm_ci(session: nox.Session) -> None:
    # Pinned by package-lock.json; everything comes from the npm registry (Redocly, the
    # TypeScript toolchain, and Better Auth, the real auth server the tests sign in with).
    session.run("npm", "ci", "--no-audit", "--no-fund", external=True, env=NODE_ENV)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole suite on real PostgreSQL (TEST_DATABASE_URL, Docker, or embedded), with
    a real Better Auth server (Node, from package-lock.json) issuing the tokens."""
    _install(session, "test")
    _npm_ci(session)
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff, mypy (strict) and vulture (dead code, allow-list in pyproject.toml); the spec
    through Redocly (redocly.yaml, then its built-in recommended ruleset alone),
    openapi-spec-validator and Spectral's OWASP API Security Top 10 ruleset (no error);
    the breaking-change guard against every released contract."""
    _install(session, "test", "lint")
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
    service on another origin with the generated client."""
    _install(session, "clients")
    _debian_packages(session, {"chromium": "chromium"})
    _npm_ci(session)
    session.run(
        "pytest",
        "consumers/test_docs_browser.py",
        "consumers/test_web_frontend.py",
        *session.posargs,
    )


@nox.session(python=PYTHON)
def conformance(session: nox.Session) -> None:
    """Runs the suite and writes contracts/report/conformance.{html,md,json}; fails when any
    requirement id lacks a passing test."""
    _install(session, "test")
    _npm_ci(session)
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    results = REPORT_DIR / "test-results.json"
    env = {"FUZZ_REPORT_DIR": str((REPORT_DIR / "fuzz").resolve())}
    session.run(
        "pytest", f"--req-results={results}", *session.posargs, env=env, success_codes=[0, 1]
    )
    session.run("python", "contracts/conformance.py", str(results), str(REPORT_DIR))


def _debian_packages(session: nox.Session, programs: dict[str, str]) -> None:
    """Installs the Debian package of each program (name -> package) not on PATH."""
    missing = [package for program, package in programs.items() if shutil.which(program) is None]
    if missing:
        session.run("apt-get", "update", "-q", external=True)
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        session.run("apt-get", "install", "-y", "-q", *missing, external=True, env=env)


def _neon_shaped(session: nox.Session, profile: str) -> None:
    _install(session, "test")
    _npm_ci(session)
    _debian_packages(session, {"pgbouncer": "pgbouncer", "openssl": "openssl"})
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


@nox.session(python=PYTHON)
def fuzz(session: nox.Session) -> None:
    """A longer schemathesis run, in-process and against the served service, with a
    fixed seed for replay (FUZZ_SEED) and reports in contracts/report/fuzz."""
    _install(session, "test")
    env = {
        "FUZZ_MAX_EXAMPLES": os.environ.get("FUZZ_MAX_EXAMPLES", "200"),
        "FUZZ_IN_PROCESS_EXAMPLES": os.environ.get("FUZZ_IN_PROCESS_EXAMPLES", "300"),
        "FUZZ_SEED": os.environ.get("FUZZ_SEED", "20261125"),
        "FUZZ_REPORT_DIR": str((REPORT_DIR / "fuzz").resolve()),
    }
    session.run("pytest", "tests/test_fuzz.py", "-s", "--timeout=3600", *session.posargs, env=env)


@nox.session(python=PYTHON)
def serve(session: nox.Session) -> None:
    """Installs and serves on 127.0.0.1:8000 (embedded PostgreSQL unless
    NEON_DATABASE_URL is set). Extra arguments go to `todo-service serve`."""
    _install(session)
    session.run("todo-service", "serve", *session.posargs)
