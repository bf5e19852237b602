"""Schemathesis over openapi.yaml against the app: every check, positive and negative
data, and stateful sequences that follow the spec's links."""

from typing import Any

import pytest
import schemathesis
from conftest import SPEC_PATH
from sqlalchemy.engine import Engine
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

from service.app import create_app
from service.db import Database
from service.settings import Settings

EXAMPLES = 40


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
def test_every_operation_conforms(case: schemathesis.Case, app: FastAPI) -> None:
    case.call_and_validate(app=app)


@pytest.mark.req("FR-008", "FR-010", "FR-011", "FR-012", "SC-003", "SC-004")
def test_stateful_sequences_conform(app: FastAPI) -> None:
    class Sequences(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"app": app}

    Sequences.run(settings=settings(RELAXED, max_examples=EXAMPLES, stateful_step_count=6))
