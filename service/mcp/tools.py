"""The contract's operations as MCP tools (FR-181, FR-187), derived from openapi.yaml so
that a tool cannot drift from its operation. The tools are the operations that say, in
`x-mcp-description`, what they do for a model to read; the name comes from the
operationId, the arguments are the operation's parameters and its request body's
members side by side (their schemas the contract's own), and the output schema is the
contract's answer. What a model reads is the contract's, with `x-mcp-description` in
place of the HTTP text where that does not serve; a parameter marked
`x-mcp-argument: false` (who the caller is, a conditional header) is no argument, and
`x-mcp-default` is the value an absent argument takes.

A call is the operation, sent over HTTP to the API: the same validation, identity,
limits and answers as any client gets. A refusal is a tool error of one line: the
problem's code, then what to fix.

A client of the contract: it imports nothing of the service, and reads the contract
the service package carries."""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any
from urllib.parse import quote

import httpx2
import mcp_types as types
import yaml

_API = "/api/"
# What a schema says about its value rather than of it: kept beside `anyOf`, not in it.
_ANNOTATIONS = frozenset({"description", "title", "examples", "default", "deprecated"})
# Keywords whose value maps names to schemas (a name is never a keyword).
_NAMED_SCHEMAS = frozenset({"properties", "patternProperties", "$defs"})


@dataclass(frozen=True)
class Operation:
    """One operation of the contract, as a tool."""

    name: str
    method: str
    path: str
    tool: types.Tool
    # Where each argument goes: the path, the query, a header, or the body.
    where: Mapping[str, tuple[str, str]]
    # What an absent argument is sent as (`x-mcp-default`).
    defaults: Mapping[str, Any]


def snake(name: str) -> str:
    """`createTodo` -> `create_todo`; `Idempotency-Key` -> `idempotency_key`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).replace("-", "_").lower()


def resolved(document: Mapping[str, Any], node: Any) -> Any:
    """`node` with every $ref replaced by what it names (the contract has no cycles)."""
    if isinstance(node, list):
        return [resolved(document, item) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        return resolved(document, target)
    return {key: resolved(document, value) for key, value in node.items()}


def prose(text: str) -> str:
    """A contract's description as a paragraph or more of flowing text (the YAML's line
    breaks within a paragraph are no part of it)."""
    return "\n\n".join(" ".join(p.split()) for p in text.split("\n\n") if p.strip())


def for_a_model(schema: Any, examples: bool = True) -> Any:
    """A contract's (resolved) schema as a tool's: `x-mcp-description` in place of the
    description, no other `x-` member, and a nullable member as `anyOf` of single types
    (a `type` list is legal JSON Schema, but single-type dialects such as Gemini's
    function declarations refuse it: the Inspector's --strict warns of it). Without
    `examples`, none: an answer is its own example."""
    if isinstance(schema, list):
        return [for_a_model(item, examples) for item in schema]
    if not isinstance(schema, dict):
        return schema
    shaped: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _NAMED_SCHEMAS and isinstance(value, dict):
            shaped[key] = {name: for_a_model(v, examples) for name, v in value.items()}
        elif not key.startswith("x-") and (examples or key != "examples"):
            shaped[key] = for_a_model(value, examples)
    description = schema.get("x-mcp-description", schema.get("description"))
    if isinstance(description, str):
        shaped["description"] = prose(description)
    kinds = shaped.get("type")
    if not isinstance(kinds, list):
        return shaped
    said = {key: value for key, value in shaped.items() if key in _ANNOTATIONS}
    constraints = {k: v for k, v in shaped.items() if k not in _ANNOTATIONS and k != "type"}
    branches = [{"type": k} if k == "null" else {"type": k, **constraints} for k in kinds]
    return {**said, "anyOf": branches}


def _annotations(method: str) -> types.ToolAnnotations:
    return types.ToolAnnotations(
        read_only_hint=method == "get",
        destructive_hint=method == "delete",
        idempotent_hint=method != "post",
        open_world_hint=False,
    )


def _operation(document: Mapping[str, Any], path: str, method: str) -> Operation:
    item = document["paths"][path]
    operation = item[method]
    parameters = [
        resolved(document, p)
        for p in [*item.get("parameters", []), *operation.get("parameters", [])]
    ]
    properties: dict[str, Any] = {}
    required: list[str] = []
    where: dict[str, tuple[str, str]] = {}
    defaults: dict[str, Any] = {}
    for parameter in parameters:
        if parameter.get("x-mcp-argument") is False:
            continue
        argument = snake(parameter["name"])
        schema = for_a_model(parameter["schema"])
        description = parameter.get("x-mcp-description", parameter.get("description"))
        if description:
            schema = {"description": prose(description), **schema}
        if "x-mcp-default" in parameter:
            schema["default"] = defaults[argument] = parameter["x-mcp-default"]
        properties[argument] = schema
        where[argument] = (parameter["in"], parameter["name"])
        if parameter.get("required"):
            required.append(argument)
    # A body that must name a member or more (TodoUpdate's change) needs that many
    # arguments besides the parameters', when every one of those is required: otherwise
    # an optional one could stand for the change, and the API alone says what is missing.
    fixed = len(properties) if len(required) == len(properties) else None
    changes: int | None = None
    body = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if body is not None:
        shape = resolved(document, body["schema"])
        for member, schema in shape.get("properties", {}).items():
            properties[member] = for_a_model(schema)
            where[member] = ("body", member)
        required += [m for m in shape.get("required", []) if m not in required]
        if "minProperties" in shape and fixed is not None:
            changes = fixed + shape["minProperties"]
    answers = operation.get("responses", {})
    success = next((answers[s] for s in ("200", "201") if s in answers), None)
    output = None
    if success is not None and "application/json" in success.get("content", {}):
        answer = success["content"]["application/json"]["schema"]
        output = for_a_model(resolved(document, answer), examples=False)
    name = snake(operation["operationId"])
    arguments: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    if changes is not None:
        arguments["minProperties"] = changes
    tool = types.Tool(
        name=name,
        title=operation.get("summary"),
        description=prose(operation["x-mcp-description"]),
        input_schema=arguments,
        output_schema=output,
        annotations=_annotations(method),
    )
    return Operation(name, method.upper(), path, tool, where, defaults)


@lru_cache
def contract() -> dict[str, Any]:
    """The contract this package carries (the one `serve` serves)."""
    raw = (resources.files("service") / "openapi.yaml").read_bytes()
    # libyaml's parser where PyYAML has it (as service/metrics.py reads it): the
    # pure-Python one costs `todo-service mcp` a fifth of a second as it starts.
    document: dict[str, Any] = yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return document


def operations(document: Mapping[str, Any] | None = None) -> dict[str, Operation]:
    """The API's operations written for a model (`x-mcp-description`), by tool name."""
    document = document or contract()
    found = [
        _operation(document, path, method)
        for path, item in document["paths"].items()
        if path.startswith(_API)
        for method, operation in item.items()
        if isinstance(operation, dict) and "x-mcp-description" in operation
    ]
    return {operation.name: operation for operation in found}


def _text(text: str) -> list[types.ContentBlock]:
    return [types.TextContent(type="text", text=text)]


def refused(code: str, detail: str) -> types.CallToolResult:
    """A tool error, one line: `CODE: what to fix`. Not as structured content, which a
    client holds to the tool's output schema (a todo, not a problem)."""
    line = " ".join(f"{code}: {detail}".split())
    return types.CallToolResult(content=_text(line), is_error=True)


def answered(operation: Operation, response: httpx2.Response) -> types.CallToolResult:
    """The API's answer as the tool's result: the contract's JSON, or its problem."""
    if response.status_code == 204:
        return types.CallToolResult(content=_text("Done: the todo is deleted."))
    try:
        body = response.json() if response.content else None
    except ValueError:
        body = None
    if response.is_success and isinstance(body, dict):
        return types.CallToolResult(
            content=_text(json.dumps(body, ensure_ascii=False)), structured_content=body
        )
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        fields = [e for e in body.get("errors", []) if isinstance(e, dict)]
        if not fields:
            return refused(body["code"], str(body.get("detail", "")))
        # Each field as the tool's argument, where the API named it as HTTP does
        # (`Idempotency-Key`); the body as a whole is the arguments.
        arguments = {name: argument for argument, (_, name) in operation.where.items()}
        said = [
            f"{arguments.get(str(e.get('field')), e.get('field'))}: {e.get('message')}"
            if e.get("field") != "body"
            else str(e.get("message"))
            for e in fields
        ]
        return refused(body["code"], "; ".join(said))
    return refused("UNEXPECTED_ANSWER", f"{operation.method} answered {response.status_code}")


@dataclass(frozen=True)
class Call:
    """The HTTP request a call is (its URL relative to the API's base)."""

    method: str
    path: str
    # A list is a repeated parameter (the contract's arrays are `form`, exploded).
    query: dict[str, str | list[str]]
    headers: dict[str, str]
    content: bytes | None


def _sent(value: Any) -> str:
    """A path, query or header argument as HTTP carries it."""
    if isinstance(value, bool):
        return str(value).lower()
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _header_value(text: str) -> bool:
    """Whether `text` can be a header's value as given: printable ASCII, with nothing
    for HTTP to trim at either end."""
    return bool(text) and text == text.strip() and all(" " <= c <= "~" for c in text)


def call(operation: Operation, arguments: Mapping[str, Any]) -> Call | types.CallToolResult:
    """The request a call is, or the tool error for arguments no request can carry (an
    argument the tool does not take is refused as the API refuses an unknown member).
    An argument outside the body given as null is absent, as models that fill every
    argument send an optional one they do not mean."""
    unknown = sorted(set(arguments) - set(operation.where))
    if unknown:
        return refused(
            "VALIDATION_ERROR",
            f"{operation.name} takes no argument {', '.join(unknown)}"
            f" (it takes {', '.join(sorted(operation.where))})",
        )
    given = {**operation.defaults}
    for argument, value in arguments.items():
        if value is not None or operation.where[argument][0] == "body":
            given[argument] = value
    path = operation.path
    query: dict[str, str | list[str]] = {}
    headers: dict[str, str] = {}
    body: dict[str, Any] = {}
    for argument, (place, name) in operation.where.items():
        if place == "path" and given.get(argument) in (None, ""):
            return refused("VALIDATION_ERROR", f"{argument}: is required")
        if argument not in given:
            continue
        value = given[argument]
        if place == "body":
            body[name] = value
            continue
        if place == "query":
            query[name] = [_sent(v) for v in value] if isinstance(value, list) else _sent(value)
            continue
        text = _sent(value)
        if place == "path":
            # Dots too: `..` would climb out of the operation's path.
            path = path.replace("{" + name + "}", quote(text, safe="").replace(".", "%2E"))
        elif _header_value(text):
            headers[name] = text
        else:
            return refused(
                "VALIDATION_ERROR",
                f"{argument}: must be printable ASCII characters, with no space at either end",
            )
    content = None
    if operation.method in {"POST", "PATCH"}:
        content = json.dumps(body, ensure_ascii=False).encode()
        headers["Content-Type"] = "application/json"
    return Call(operation.method, path, query, headers, content)
