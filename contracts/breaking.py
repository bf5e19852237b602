"""The breaking-change guard: compares openapi.yaml with every released contract
(contracts/released/) and fails on a change that would break an existing client,
unless info.version has a new major number. Even then, a version of the API the new
document still serves (its paths under `/api/v1/`, say) must not break: a new major
version may add `/api/v2` beside `/api/v1`, or retire `/api/v1` whole, never change it.

Breaking: a removed path, operation or response field; a removed accepted request
field or parameter; a new required request field or parameter; a request input
narrowed (fewer JSON types or enum values, a tighter length or bound). A response
narrowed is not breaking: a client that accepted more still accepts what it gets
(1.2 bounds every string, array and integer it answers, for the OWASP API4 rules).

Usage: python contracts/breaking.py [CURRENT [RELEASED ...]]
"""

import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
# libyaml's parser where PyYAML has it: ten times the pure-Python one's speed, on
# documents of thousands of lines.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
_TIGHTER_IF_LOWER = ("maxLength", "maximum", "maxItems", "maxProperties")
# Inputs 1.2 bounds (FR-153, the OWASP API4 rules) that accepted nothing more before in
# fact, or only what no client sends: each reason is why the narrowing breaks none.
BOUNDED_INPUTS = {
    "parameter todo_id: maxLength": "its pattern already held it to a UUID's 36 characters",
    "parameter x-user-id: maxLength": "its pattern already held it to a UUID's 36 characters",
    "parameter cursor: maxLength": "a cursor is what next_cursor handed out (54 characters);"
    " anything else was always refused",
    "parameter if-match: maxLength": "8 KiB holds hundreds of entity tags: more is no client's",
    "parameter if-none-match: maxLength": "8 KiB holds hundreds of entity tags: more is no"
    " client's",
}
_TIGHTER_IF_HIGHER = ("minLength", "minimum", "minItems", "minProperties")

Spec = dict[str, Any]


def _resolve(spec: Spec, node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _types(schema: dict[str, Any]) -> set[str]:
    kind = schema.get("type")
    return set(kind) if isinstance(kind, list) else ({kind} if kind else set())


def _narrowed(old: dict[str, Any], new: dict[str, Any], where: str) -> list[str]:
    """How an input's schema accepts less than it did."""
    problems = []
    if _types(old) - _types(new) and _types(new):
        problems.append(
            f"{where}: type narrowed from {sorted(_types(old))} to {sorted(_types(new))}"
        )
    if "enum" in old and set(old["enum"]) - set(new.get("enum") or old["enum"]):
        problems.append(f"{where}: enum values removed")
    for key in _TIGHTER_IF_LOWER:
        accepted = any(
            where.endswith(bound.rsplit(":", 1)[0]) and bound.endswith(key)
            for bound in BOUNDED_INPUTS
        )
        if key in new and new[key] < old.get(key, float("inf")) and not accepted:
            problems.append(f"{where}: {key} lowered to {new[key]}")
    for key in _TIGHTER_IF_HIGHER:
        if key in new and new[key] > old.get(key, float("-inf")):
            problems.append(f"{where}: {key} raised to {new[key]}")
    return problems


def _compare_schemas(
    old_spec: Spec, new_spec: Spec, old: Any, new: Any, where: str, request: bool
) -> list[str]:
    old, new = _resolve(old_spec, old), _resolve(new_spec, new)
    if not isinstance(old, dict) or not isinstance(new, dict):
        return []
    problems = _narrowed(old, new, where) if request else []
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for name in old_props:
        if name not in new_props:
            problems.append(f"{where}.{name}: field removed")
        else:
            problems += _compare_schemas(
                old_spec, new_spec, old_props[name], new_props[name], f"{where}.{name}", request
            )
    if request:
        for name in set(new.get("required", [])) - set(old.get("required", [])):
            problems.append(f"{where}.{name}: new required field")
    if "items" in old and "items" in new:
        problems += _compare_schemas(
            old_spec, new_spec, old["items"], new["items"], f"{where}[]", request
        )
    return problems


def _parameters(
    spec: Spec, path_item: dict[str, Any], operation: dict[str, Any]
) -> dict[tuple[str, str], Any]:
    merged = {}
    for reference in [*path_item.get("parameters", []), *operation.get("parameters", [])]:
        parameter = _resolve(spec, reference)
        merged[(parameter["in"], parameter["name"].lower())] = parameter
    return merged


def _compare_kept(
    old_spec: Spec,
    new_spec: Spec,
    old: dict[Any, Any],
    new: dict[Any, Any],
    label: str,
    request: bool,
) -> list[str]:
    """Each old entry (a parameter, a body or a response media type) must still be
    there, and its schema must not have narrowed; `label` names the entry for messages."""
    problems = []
    for key, entry in old.items():
        name = key[1] if isinstance(key, tuple) else key
        if key not in new:
            problems.append(f"{label} {name} removed")
        else:
            problems += _compare_schemas(
                old_spec,
                new_spec,
                entry.get("schema"),
                new[key].get("schema"),
                f"{label} {name}",
                request=request,
            )
    return problems


def _compare_operations(old_spec: Spec, new_spec: Spec, path: str, method: str) -> list[str]:
    where = f"{method.upper()} {path}"
    old_item, new_item = old_spec["paths"][path], new_spec["paths"][path]
    old_op, new_op = old_item[method], new_item[method]
    problems = []
    old_params = _parameters(old_spec, old_item, old_op)
    new_params = _parameters(new_spec, new_item, new_op)
    for key, parameter in new_params.items():
        if parameter.get("required") and not old_params.get(key, {}).get("required"):
            problems.append(f"{where}: new required parameter {key[1]}")
    problems += _compare_kept(
        old_spec, new_spec, old_params, new_params, f"{where}: parameter", request=True
    )
    old_body = _resolve(old_spec, old_op.get("requestBody", {})).get("content", {})
    new_body = _resolve(new_spec, new_op.get("requestBody", {})).get("content", {})
    problems += _compare_kept(
        old_spec, new_spec, old_body, new_body, f"{where}: request body", request=True
    )
    for status, response in old_op.get("responses", {}).items():
        new_response = new_op.get("responses", {}).get(status)
        if new_response is None:
            continue
        old_content = _resolve(old_spec, response).get("content", {})
        new_content = _resolve(new_spec, new_response).get("content", {})
        problems += _compare_kept(
            old_spec, new_spec, old_content, new_content, f"{where} {status}: response", False
        )
    return problems


def breaking_changes(old_spec: Spec, new_spec: Spec) -> list[str]:
    problems = []
    for path, item in old_spec["paths"].items():
        if path not in new_spec["paths"]:
            problems.append(f"{path}: path removed")
            continue
        for method in METHODS & set(item):
            if method not in new_spec["paths"][path]:
                problems.append(f"{method.upper()} {path}: operation removed")
            else:
                problems += _compare_operations(old_spec, new_spec, path, method)
    return problems


def _major(spec: Spec) -> int:
    return int(str(spec["info"]["version"]).split(".")[0])


def _api_version(path: str) -> str | None:
    """`/api/v1` of `/api/v1/todos/{todo_id}`; None for a path outside a versioned API."""
    parts = path.split("/")
    if len(parts) > 2 and parts[1] == "api" and parts[2][:1] == "v" and parts[2][1:].isdigit():
        return "/".join(parts[:3])
    return None


def _kept_versions(problems: list[str], new_spec: Spec) -> list[str]:
    """The problems in a version of the API that the new document still serves."""
    served = {_api_version(path) for path in new_spec["paths"]} - {None}
    return [
        problem
        for problem in problems
        if any(word.startswith(f"{version}/") for word in problem.split() for version in served)
    ]


def verdict(old_spec: Spec, new_spec: Spec) -> tuple[bool, list[str]]:
    """(acceptable, breaking changes): breaking changes need a new major version, and
    none may be in a version of the API that is still served."""
    problems = breaking_changes(old_spec, new_spec)
    if not problems:
        return True, problems
    moved = _major(new_spec) > _major(old_spec)
    return moved and not _kept_versions(problems, new_spec), problems


RELEASED = sorted((HERE / "released").glob("openapi-*.yaml"))


def load(path: Path) -> Spec:
    spec: Spec = yaml.load(path.read_bytes(), Loader=_LOADER)
    return spec


def main(argv: list[str]) -> int:
    current = Path(argv[1]) if len(argv) > 1 else HERE.parent / "openapi.yaml"
    released = [Path(a) for a in argv[2:]] or RELEASED
    failed = False
    for baseline in released:
        ok, problems = verdict(load(baseline), load(current))
        for problem in problems:
            print(f"breaking ({baseline.name}): {problem}")
        if not ok:
            print(f"FAIL against {baseline.name}: breaking changes need a new major version")
            failed = True
        else:
            print(
                f"ok against {baseline.name}: "
                + (
                    "no breaking change"
                    if not problems
                    else "breaking changes under a new major version"
                )
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
