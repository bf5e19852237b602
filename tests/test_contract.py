"""openapi.yaml is the source of truth: served byte for byte, rendered offline."""

import re
from typing import Any

import pytest
import yaml
from conftest import SPEC_PATH
from fastapi.testclient import TestClient
from openapi_spec_validator import validate

SPEC: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())


@pytest.mark.req("FR-020")
def test_the_contract_is_valid_openapi_3_1() -> None:
    assert SPEC["openapi"].startswith("3.1")
    validate(SPEC)


@pytest.mark.req("FR-020")
def test_the_service_serves_the_hand_written_document(client: TestClient) -> None:
    response = client.get("/openapi.yaml")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/yaml")
    assert response.content == SPEC_PATH.read_bytes()


@pytest.mark.req("FR-020")
def test_docs_need_nothing_from_the_internet(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    references = re.findall(r'(?:src|href|url)\s*[=:]\s*"([^"]+)"', page.text)
    assert references, "the page loads its assets and the document"
    for reference in references:
        assert reference.startswith("/"), f"{reference} is not served by the service"
        assert client.get(reference).status_code == 200


@pytest.mark.req("FR-008", "FR-009", "FR-010", "FR-011", "FR-012")
def test_every_operation_of_the_contract_is_documented() -> None:
    operations = {
        (method.upper(), path)
        for path, item in SPEC["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert operations == {
        ("POST", "/api/v1/todos"),
        ("GET", "/api/v1/todos"),
        ("GET", "/api/v1/todos/{todo_id}"),
        ("PATCH", "/api/v1/todos/{todo_id}"),
        ("DELETE", "/api/v1/todos/{todo_id}"),
        ("GET", "/health/live"),
        ("GET", "/health/ready"),
        ("GET", "/openapi.yaml"),
        ("GET", "/docs"),
    }
