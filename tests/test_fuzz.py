"""Schemathesis over openapi.yaml against the app: every check, positive and negative
data, and stateful sequences that follow the spec's links.

The contract declares two ways in, and a service runs in one of them; each run fuzzes
the view of the one contract that its mode promises. Header mode: X-User-ID is
required and nothing is authenticated (so there is no authentication for
`ignored_auth` to find ignored). JWT mode: a bearer token is required and X-User-ID is
no input at all; every check runs, `ignored_auth` included."""

import copy
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import fuzz_hooks
import jwt
import pytest
import schemathesis
import yaml
from conftest import SPEC_PATH
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from served import Serve
from sqlalchemy import text
from sqlalchemy.engine import Engine

from service.app import create_app
from service.db import Database
from service.settings import Settings

EXAMPLES = int(os.environ.get("FUZZ_IN_PROCESS_EXAMPLES", "40"))
CONFIG_PATH = Path(__file__).with_name("schemathesis.toml")
HOOKS = Path(fuzz_hooks.__file__)
JWT_SECRET = "fuzzing-secret-" + "x" * 32

# Hypothesis's own uuids() draws from a truly random source, so a replayed stateful
# sequence can draw differently and fail as FlakyStrategyDefinition. Drawn from plain
# integers instead, every example replays exactly.
schemathesis.openapi.format(
    "uuid", st.integers(0, 2**128 - 1).map(lambda n: str(uuid.UUID(int=n, version=4)))
)


def mode_view(spec: dict[str, Any], mode: str) -> dict[str, Any]:
    """What a service in `mode` promises: the contract with the other way in removed."""
    view = copy.deepcopy(spec)
    components = view["components"]
    if mode == "header":
        view.pop("security")
        components.pop("securitySchemes")
        components["parameters"]["UserId"]["required"] = True
        for item in view["paths"].values():
            for operation in item.values():
                if isinstance(operation, dict):
                    operation.pop("security", None)
        return view
    view["security"] = [{"bearerAuth": []}]
    components["securitySchemes"].pop("userIdHeader")
    components["parameters"].pop("UserId")
    user = {"$ref": "#/components/parameters/UserId"}
    for item in view["paths"].values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            if "parameters" in operation:
                operation["parameters"] = [p for p in operation["parameters"] if p != user]
            for response in operation.get("responses", {}).values():
                for link in response.get("links", {}).values():
                    link["parameters"].pop("header.X-User-ID", None)
    return view


SPEC: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())
schema = schemathesis.openapi.from_dict(
    mode_view(SPEC, "header"), config=SchemathesisConfig.from_path(CONFIG_PATH)
)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=EXAMPLES
)
RELAXED = settings(suppress_health_check=list(HealthCheck), deadline=None)


@pytest.fixture
def app(settings: Settings, database: Database, admin_engine: Engine) -> FastAPI:
    return create_app(settings, database)


@pytest.mark.req(
    "FR-020", "FR-021", "FR-016", "FR-017", "FR-018", "FR-019", "SC-006", "SC-007", "FR-107"
)
@schema.parametrize()
@RELAXED
def test_every_operation_conforms(case: schemathesis.Case[Any], app: FastAPI) -> None:
    case.call_and_validate(app=app)


@pytest.mark.req("FR-008", "FR-010", "FR-011", "FR-012", "SC-003", "SC-004", "FR-113", "FR-131")
def test_stateful_sequences_conform(app: FastAPI, admin_engine: Engine) -> None:
    class Sequences(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            # Links draw from earlier responses: each sequence starts from the same empty
            # database, or a replayed sequence would see other data and draw otherwise.
            with admin_engine.begin() as conn:
                conn.execute(text("TRUNCATE users, todos, idempotency_keys"))

        def get_call_kwargs(self, case: schemathesis.Case[Any]) -> dict[str, Any]:
            return {"app": app}

    Sequences.run(settings=settings(RELAXED, max_examples=EXAMPLES, stateful_step_count=6))


def _fuzz_served(base: str, mode: str, report_dir: Path, *headers: str) -> None:
    """The schemathesis CLI against a served service: all checks, all phases (examples,
    coverage, fuzzing, stateful), positive and negative data."""
    report_dir.mkdir(parents=True, exist_ok=True)
    view = report_dir / f"openapi-{mode}.yaml"
    view.write_text(yaml.safe_dump(mode_view(SPEC, mode), sort_keys=False))
    # One worker: Python 3.11.7's ast.parse is not thread-safe.
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "--config-file",
            str(CONFIG_PATH),
            "run",
            str(view),
            "--url",
            base,
            *[part for header in headers for part in ("--header", header)],
            "--checks",
            "all",
            "--mode",
            "all",
            "--workers",
            "1",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            os.environ.get("FUZZ_MAX_EXAMPLES", "15"),
            "--seed",
            os.environ.get("FUZZ_SEED", "20261125"),
            "--generation-database",
            "none",
            "--report",
            "junit,har",
            "--report-dir",
            str(report_dir / mode),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
        env={
            **os.environ,
            "SCHEMATHESIS_HOOKS": HOOKS.stem,
            "PYTHONPATH": os.pathsep.join([str(HOOKS.parent), os.environ.get("PYTHONPATH", "")]),
        },
    )
    print(run.stdout[-3000:])
    _write_summary(run.stdout, report_dir, mode)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]


def _report_dir(tmp_path: Path) -> Path:
    return Path(os.environ.get("FUZZ_REPORT_DIR", str(tmp_path / "fuzz-report")))


@pytest.mark.req("FR-020", "FR-021", "SC-006", "SC-003", "SC-004", "FR-107")
def test_the_served_service_conforms_in_header_mode(
    postgres_url: str, database: Database, tmp_path: Path, serve: Serve
) -> None:
    server = serve(postgres_url)
    server.wait_ready()
    try:
        _fuzz_served(server.base, "header", _report_dir(tmp_path))
    finally:
        server.stop()


@pytest.mark.req("FR-101", "FR-103", "FR-107", "FR-020", "FR-021")
def test_the_served_service_conforms_in_jwt_mode(
    postgres_url: str, database: Database, tmp_path: Path, serve: Serve
) -> None:
    server = serve(postgres_url, extra_env={"TODO_AUTH_MODE": "jwt", "TODO_JWT_SECRET": JWT_SECRET})
    server.wait_ready()
    claims = {"sub": "fuzzer", "iss": "https://auth.example", "exp": int(time.time()) + 3600}
    token = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
    try:
        _fuzz_served(server.base, "jwt", _report_dir(tmp_path), f"Authorization: Bearer {token}")
    finally:
        server.stop()


def _write_summary(output: str, report_dir: Path, mode: str) -> None:
    """What the conformance report shows of this run."""

    def grab(pattern: str) -> str | None:
        found = re.search(pattern, output)
        return found.group(1) if found else None

    summary = {
        "mode": mode,
        "operations_tested": grab(r"Tested:\s+(\d+)"),
        "operations_selected": grab(r"Selected:\s+(\d+/\d+)"),
        "test_cases": grab(r"Test cases:\s+(.+)"),
        "stateful_scenarios": grab(r"Scenarios:\s+(\d+)"),
        "seed": grab(r"Seed:\s+(\d+)"),
        "checks": "all" if mode == "jwt" else "all (no authentication to check in header mode)",
        "modes": "positive and negative",
        "phases": "examples, coverage, fuzzing, stateful",
        "outcome": grab(r"=+ (No issues found|.*(?:failure|error).*) in"),
    }
    (report_dir / f"summary-{mode}.json").write_text(json.dumps(summary, indent=2))
