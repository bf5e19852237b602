"""Schemathesis over openapi.yaml against the app: every check, positive and negative
data, and stateful sequences that follow the spec's links."""

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from conftest import SPEC_PATH
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from served import Serve
from sqlalchemy import text
from sqlalchemy.engine import Engine

from service.app import create_app
from service.db import Database
from service.settings import Settings

EXAMPLES = int(os.environ.get("FUZZ_IN_PROCESS_EXAMPLES", "40"))

# Hypothesis's own uuids() draws from a truly random source, so a replayed stateful
# sequence can draw differently and fail as FlakyStrategyDefinition. Drawn from plain
# integers instead, every example replays exactly.
schemathesis.openapi.format(
    "uuid", st.integers(0, 2**128 - 1).map(lambda n: str(uuid.UUID(int=n, version=4)))
)

schema = schemathesis.openapi.from_path(SPEC_PATH)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=EXAMPLES
)
RELAXED = settings(suppress_health_check=list(HealthCheck), deadline=None)


@pytest.fixture
def app(settings: Settings, database: Database, admin_engine: Engine) -> FastAPI:
    return create_app(settings, database)


@pytest.mark.req("FR-020", "FR-021", "FR-016", "FR-017", "FR-018", "FR-019", "SC-006", "SC-007")
@schema.parametrize()
@RELAXED
def test_every_operation_conforms(case: schemathesis.Case[Any], app: FastAPI) -> None:
    case.call_and_validate(app=app)


@pytest.mark.req("FR-008", "FR-010", "FR-011", "FR-012", "SC-003", "SC-004")
def test_stateful_sequences_conform(app: FastAPI, admin_engine: Engine) -> None:
    class Sequences(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            # Links draw from earlier responses: each sequence starts from the same empty
            # database, or a replayed sequence would see other data and draw otherwise.
            with admin_engine.begin() as conn:
                conn.execute(text("TRUNCATE users, todos"))

        def get_call_kwargs(self, case: schemathesis.Case[Any]) -> dict[str, Any]:
            return {"app": app}

    Sequences.run(settings=settings(RELAXED, max_examples=EXAMPLES, stateful_step_count=6))


@pytest.mark.req("FR-020", "FR-021", "SC-006", "SC-003", "SC-004")
def test_the_served_service_conforms(
    postgres_url: str, database: Database, tmp_path: Path, serve: Serve
) -> None:
    """The schemathesis CLI against `todo-service serve` over HTTP: all checks, all
    phases (examples, coverage, fuzzing, stateful), positive and negative data."""
    server = serve(postgres_url)
    server.wait_ready()
    try:
        report_dir = os.environ.get("FUZZ_REPORT_DIR", str(tmp_path / "fuzz-report"))
        # One worker: Python 3.11.7's ast.parse is not thread-safe.
        run = subprocess.run(
            [
                str(Path(sys.executable).with_name("schemathesis")),
                "run",
                f"{server.base}/openapi.yaml",
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
                report_dir,
            ],
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
    finally:
        server.stop()
    print(run.stdout[-3000:])
    _write_summary(run.stdout, Path(report_dir))
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]


def _write_summary(output: str, report_dir: Path) -> None:
    """What the conformance report shows of this run."""

    def grab(pattern: str) -> str | None:
        found = re.search(pattern, output)
        return found.group(1) if found else None

    summary = {
        "operations_tested": grab(r"Tested:\s+(\d+)"),
        "operations_selected": grab(r"Selected:\s+(\d+/\d+)"),
        "test_cases": grab(r"Test cases:\s+(.+)"),
        "stateful_scenarios": grab(r"Scenarios:\s+(\d+)"),
        "seed": grab(r"Seed:\s+(\d+)"),
        "checks": "all",
        "modes": "positive and negative",
        "phases": "examples, coverage, fuzzing, stateful",
        "outcome": grab(r"=+ (No issues found|.*(?:failure|error).*) in"),
    }
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "summary.json").write_text(json.dumps(summary, indent=2))
