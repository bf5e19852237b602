"""The contract's operations as MCP tools (FR-181), derived from openapi.yaml so that a
tool cannot drift from its operation: its name from the operationId, its description
from the summary and description, its arguments the operation's parameters and its
request body's members side by side (their schemas the contract's own), its output
schema the contract's answer. A call is the operation, sent over HTTP to the API: the
same validation, identity, limits and answers as any client gets. A refusal is a tool
error carrying the problem's code and detail.

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

# What an agent may send besides the operation's own: the operations that identify their
# caller take who the agent acts for from the transport, never from an argument; a
# conditional header is for clients that keep ETags, which a conversation does not.
_NOT_ARGUMENTS = {"x-user-id", "if-match", "if-none-match"}
_API = "/api/v1/"
_TOOL_METHODS = ("get", "post", "patch", "delete")


@dataclass(frozen=True)
class Operation:
    """One operation of the contract, as a tool."""

    name: str
    method: str
    path: str
    tool: types.Tool
    # Where each argument goes: the path, the query, a header, or the body.
    where: Mapping[str, tuple[str, str]]


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
    for parameter in parameters:
        if parameter["name"].lower() in _NOT_ARGUMENTS:
            continue
        argument = snake(parameter["name"])
        schema = dict(parameter["schema"])
        if "description" in parameter:
            schema.setdefault("description", parameter["description"])
        properties[argument] = schema
        where[argument] = (parameter["in"], parameter["name"])
        if parameter.get("required"):
            required.append(argument)
    body = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if body is not None:
        shape = resolved(document, body["schema"])
        for member, schema in shape.get("properties", {}).items():
            properties[member] = schema
            where[member] = ("body", member)
        required += [m for m in shape.get("required", []) if m not in required]
    answers = operation.get("responses", {})
    success = next((answers[s] for s in ("200", "201") if s in answers), None)
    output = None
    if success is not None and "application/json" in success.get("content", {}):
        output = resolved(document, success["content"]["application/json"]["schema"])
    name = snake(operation["operationId"])
    summary = operation.get("summary", "")
    description = operation.get("description", "").strip()
    tool = types.Tool(
        name=name,
        title=summary,
        description=f"{summary}.\n\n{description}" if description else summary,
        input_schema={
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        },
        output_schema=output,
        annotations=_annotations(method),
    )
    return Operation(name, method.upper(), path, tool, where)


@lru_cache
def contract() -> dict[str, Any]:
    """The contract this package carries (the one `serve` serves)."""
    raw = (resources.files("service") / "openapi.yaml").read_text()
    document: dict[str, Any] = yaml.safe_load(raw)
    return document


def operations(document: Mapping[str, Any] | None = None) -> dict[str, Operation]:
    """Every operation of /api/v1 (not its probes or its document), by tool name: 2.0's
    operations under /api/v2 take the same names, and the tools move to them whole."""
    document = document or contract()
    found = [
        _operation(document, path, method)
        for path, item in document["paths"].items()
        if path.startswith(_API)
        for method in _TOOL_METHODS
        if method in item
    ]
    return {operation.name: operation for operation in found}


def _text(text: str) -> list[types.ContentBlock]:
    return [types.TextContent(type="text", text=text)]


def refused(code: str, detail: str, problem: dict[str, Any] | None = None) -> types.CallToolResult:
    """A tool error: `CODE: detail`, then the problem itself as JSON. Not as structured
    content, which a client holds to the tool's output schema (a todo, not a problem)."""
    said = _text(f"{code}: {detail}")
    if problem is not None:
        said += _text(json.dumps(problem, ensure_ascii=False))
    return types.CallToolResult(content=said, is_error=True)


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
        detail = str(body.get("detail", ""))
        fields = [
            f"{e.get('field')}: {e.get('message')}"
            for e in body.get("errors", [])
            if isinstance(e, dict)
        ]
        said = "; ".join([f"{body.get('title', '')}: {detail}".strip(": "), *fields])
        return refused(body["code"], said, body)
    return refused("UNEXPECTED_ANSWER", f"{operation.method} answered {response.status_code}")


@dataclass(frozen=True)
class Call:
    """The HTTP request a tool call is (its URL relative to the API's base)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    content: bytes | None


def call(operation: Operation, arguments: Mapping[str, Any]) -> Call | types.CallToolResult:
    """The request a call is, or the tool error for arguments the tool does not take
    (the API refuses an unknown member the same way)."""
    unknown = sorted(set(arguments) - set(operation.where))
    if unknown:
        return refused(
            "VALIDATION_ERROR",
            f"{operation.name} takes no argument {', '.join(unknown)}"
            f" (it takes {', '.join(sorted(operation.where))})",
        )
    path = operation.path
    query: dict[str, str] = {}
    headers: dict[str, str] = {}
    body: dict[str, Any] = {}
    for argument, value in arguments.items():
        place, name = operation.where[argument]
        if place == "path":
            path = path.replace("{" + name + "}", quote(str(value), safe=""))
        elif place == "query":
            query[name] = str(value).lower() if isinstance(value, bool) else str(value)
        elif place == "header":
            headers[name] = str(value)
        else:
            body[name] = value
    content = None
    if operation.method in {"POST", "PATCH"}:
        content = json.dumps(body, ensure_ascii=False).encode()
        headers["Content-Type"] = "application/json"
    return Call(operation.method, path, query, headers, content)
