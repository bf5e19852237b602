"""Schemathesis over openapi.yaml against the app: every check, positive and negative
data, and stateful sequences that follow the spec's links."""

import pytest
import schemathesis
from conftest import SPEC_PATH
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

schema = schemathesis.openapi.from_path(SPEC_PATH)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=40
)


@pytest.fixture
def app_client(client: TestClient) -> TestClient:
    return client


@pytest.mark.req("FR-020", "FR-021", "FR-016", "FR-017", "FR-018", "FR-019", "SC-006", "SC-007")
@schema.parametrize()
@settings(suppress_health_check=list(HealthCheck), deadline=None)
def test_every_operation_conforms(case: schemathesis.Case, app_client: TestClient) -> None:
    case.call_and_validate(session=app_client)
