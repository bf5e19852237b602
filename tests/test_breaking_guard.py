"""The breaking-change guard catches what would break a generated client."""

import copy
import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, SPEC_PATH, read_yaml

_spec = importlib.util.spec_from_file_location("breaking", REPO / "contracts" / "breaking.py")
assert _spec is not None and _spec.loader is not None
breaking = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(breaking)

RELEASED = {
    version: read_yaml(REPO / "contracts" / "released" / f"openapi-{version}.yaml")
    for version in ("1.0.0", "1.1.0", "1.2.0", "2.0.0", "2.1.0")
}
BASELINE = RELEASED["1.0.0"]
CURRENT: dict[str, Any] = read_yaml(SPEC_PATH)


def _changed(change: Any) -> dict[str, Any]:
    spec = copy.deepcopy(CURRENT)
    change(spec["components"]["schemas"], spec)
    return spec


@pytest.mark.req("FR-020", "FR-153")
@pytest.mark.parametrize("version", RELEASED)
def test_the_current_contract_breaks_no_released_one(version: str) -> None:
    ok, problems = breaking.verdict(RELEASED[version], CURRENT)
    assert ok, problems
    assert problems == [], "a change breaking a client, even under a new major version"


@pytest.mark.req("FR-153")
def test_an_answer_bounded_more_tightly_breaks_no_client() -> None:
    """A client that accepted more still accepts what it gets: narrowing a response is
    not breaking, narrowing an input is."""

    def tighter(schemas: dict[str, Any], spec: dict[str, Any]) -> None:
        schemas["Todo"]["properties"]["title"]["maxLength"] = 100

    assert breaking.verdict(BASELINE, _changed(tighter)) == (True, [])


@pytest.mark.req("FR-020")
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s, spec: s["Todo"]["properties"].pop("updated_at"), "field removed"),
        (
            lambda s, spec: spec["paths"]["/api/v1/todos/{todo_id}"].pop("delete"),
            "operation removed",
        ),
        (lambda s, spec: s["Title"].update(maxLength=100), "maxLength lowered"),
        (lambda s, spec: s["TodoCreate"]["required"].append("description"), "new required field"),
        (lambda s, spec: s["Description"].update(type="string"), "type narrowed"),
        (lambda s, spec: s["TodoUpdate"]["properties"].pop("is_completed"), "field removed"),
    ],
)
def test_a_breaking_change_fails_the_guard_unless_the_major_version_moves(
    change: Any, expected: str, tmp_path: Path
) -> None:
    changed = _changed(change)
    ok, problems = breaking.verdict(BASELINE, changed)
    assert not ok
    assert any(expected in p for p in problems), problems

    current = tmp_path / "openapi.yaml"
    current.write_text(yaml.safe_dump(changed))
    assert breaking.main(["breaking", str(current)]) == 1

    # No major version may break /api/v1 while it serves it (2.0 keeps it exactly) ...
    changed["info"]["version"] = "3.0.0"
    assert not breaking.verdict(BASELINE, changed)[0]
    # ... but one may retire it whole.
    changed["paths"] = {p: item for p, item in changed["paths"].items() if "/api/v1/" not in p}
    assert breaking.verdict(BASELINE, changed)[0]


@pytest.mark.req("FR-020")
def test_additions_are_not_breaking() -> None:
    def add(schemas: dict[str, Any], spec: dict[str, Any]) -> None:
        schemas["Todo"]["properties"]["tags"] = {"type": "array", "items": {"type": "string"}}
        schemas["Title"]["maxLength"] = 500

    assert breaking.verdict(BASELINE, _changed(add)) == (True, [])
