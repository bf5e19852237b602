"""Agents as users (FR-181 to FR-184): the contract's operations as MCP tools, served over
stdio by `todo-service mcp` (a client of a deployment) and over streamable HTTP at /mcp
by the service itself, checked with clients nobody here wrote: the official MCP SDK's
client and the MCP Inspector's command line. Two users' agents never see, change or
learn of each other's todos; tokens from a real Better Auth are verified as the API
verifies them; limits, quota and metrics apply to tool calls as to any request."""

import base64
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import httpx2
import jwt
import mcp_types as types
import one_off
import pytest
from better_auth import PASSWORD, BetterAuth
from conftest import REPO, make_settings, read_yaml
from databases import Databases
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator
from key_server import KeyServer, SigningKey
from mcp import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from mcp_types import CallToolResult
from ports import free_port
from prometheus_client.parser import text_string_to_metric_families
from pydantic import AnyUrl, ValidationError
from run_logs import RunLogs
from served import EXECUTABLE, ServedService
from worker_probe import loaded_by_a_worker

from service.app import create_app
from service.db import Database
from service.identity import owner_id
from service.settings import Settings, settings_problems

CONTRACT: dict[str, Any] = read_yaml(REPO / "openapi.yaml")
TOOLS = {
    "list_todos",
    "get_todo",
    "create_todo",
    "update_todo",
    "delete_todo",
    "summarize_todos",
    "update_todos",
    "delete_todos",
}
TRANSPORTS = ("stdio", "http")


# -- deployments with /mcp, served as their users serve them ----------------------------


def _served(
    factory: pytest.TempPathFactory,
    logs: RunLogs,
    databases: Databases,
    name: str,
    port: int | None = None,
    **env: str,
) -> ServedService:
    service = ServedService(
        factory.mktemp(name),
        logs,
        databases.clone(name),
        extra_env={"TODO_MCP": "on", **env},
        port=port,
    )
    service.wait_ready()
    return service


@pytest.fixture(scope="module")
def header_mode(
    tmp_path_factory: pytest.TempPathFactory, run_logs: RunLogs, databases: Databases
) -> Iterator[ServedService]:
    service = _served(
        tmp_path_factory,
        run_logs,
        databases,
        "mcp-header",
        TODO_METRICS_PORT=str(free_port()),
        TODO_MAX_TODOS_PER_USER="20",
        TODO_RATE_LIMIT="120/60",
    )
    yield service
    service.stop()


# Access tokens of the deployment agents log in to live this long, so that expiry comes
# within a test; the service allows this much clock skew past it.
LIFETIME = 5
LEEWAY = 2


@dataclass(frozen=True)
class Deployment:
    """jwt mode with /mcp, and the Better Auth that is its authorization server."""

    service: ServedService
    auth: BetterAuth

    @property
    def base(self) -> str:
        return self.service.base


@pytest.fixture(scope="module")
def jwt_mode(
    tmp_path_factory: pytest.TempPathFactory, run_logs: RunLogs, databases: Databases
) -> Iterator[Deployment]:
    """A Better Auth of its own, whose OAuth access tokens are for this service's /mcp
    (its URL is known before the service starts), as a deployment's would be."""
    port = free_port()
    auth = BetterAuth(
        tmp_path_factory.mktemp("mcp-auth"),
        databases.clone("mcp-auth"),
        api=f"http://127.0.0.1:{port}",
        token_lifetime=LIFETIME,
    )
    service = _served(
        tmp_path_factory,
        run_logs,
        databases,
        "mcp-jwt",
        port=port,
        TODO_AUTH_MODE="jwt",
        TODO_JWT_JWKS_URL=auth.jwks_url,
        TODO_JWT_ISSUER=auth.base,
        TODO_JWT_AUDIENCE=auth.base,
        TODO_JWT_LEEWAY_SECONDS=str(LEEWAY),
    )
    yield Deployment(service, auth)
    service.stop()
    auth.stop()


# -- agents -------------------------------------------------------------------------------


@asynccontextmanager
async def agent(transport: str, base: str, identity: dict[str, str]) -> AsyncIterator[Client]:
    """The official SDK's client, acting for `identity` (X-User-ID or Authorization):
    over HTTP at base/mcp, or over stdio through `todo-service mcp --base-url base`."""
    if transport == "http":
        async with (
            httpx2.AsyncClient(headers=identity, timeout=30) as http,
            Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client,
        ):
            yield client
        return
    env = {k: v for k, v in os.environ.items() if not k.startswith("TODO_")}
    if "Authorization" in identity:
        env["TODO_MCP_TOKEN"] = identity["Authorization"].removeprefix("Bearer ")
    else:
        env["TODO_MCP_USER_ID"] = identity["X-User-ID"]
    server = StdioServerParameters(
        command=str(EXECUTABLE), args=["mcp", "--base-url", base], env=env
    )
    async with Client(server) as client:
        yield client


class Remembered:
    """An MCP client's token storage, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


@dataclass
class Login:
    """What an agent's logging in came to: how often its user was asked (sign-in and
    consent), and how often it refreshed its access token."""

    storage: Remembered = field(default_factory=Remembered)
    authorizations: int = 0
    refreshes: int = 0


def token_command(deployment: Deployment, email: str) -> str:
    """The command docs/agents.md gives for a fresh token of `email`'s user."""
    script = REPO / "clients" / "web" / "token.py"
    return f"{sys.executable} {script} {deployment.auth.base} {email}"


@asynccontextmanager
async def stdio_agent(base: str, token: str | None, command: str) -> AsyncIterator[Client]:
    """`todo-service mcp --token-command command`, started with TODO_MCP_TOKEN=token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TODO_")}
    env["BETTER_AUTH_PASSWORD"] = PASSWORD
    server = StdioServerParameters(
        command=str(EXECUTABLE),
        args=["mcp", "--base-url", base, "--token-command", command],
        env={**env, **({"TODO_MCP_TOKEN": token} if token else {})},
    )
    async with Client(server) as client:
        yield client


@asynccontextmanager
async def logged_in(
    transport: str, deployment: Deployment, email: str, login: Login | None = None
) -> AsyncIterator[Client]:
    """The official SDK's client acting for `email`'s user, who logs in by itself: over
    HTTP with the SDK's OAuth client (discovery from /mcp's 401, registration,
    authorization code with PKCE, the user's sign-in and consent scripted, refresh);
    over stdio with `todo-service mcp --token-command`, which renews the token."""
    if transport == "stdio":
        async with stdio_agent(deployment.base, None, token_command(deployment, email)) as client:
            yield client
        return
    login = login or Login()
    asked: list[str] = []

    async def redirect(url: str) -> None:
        asked.append(url)

    async def callback() -> AuthorizationCodeResult:
        login.authorizations += 1
        back = await anyio.to_thread.run_sync(deployment.auth.consented, email, asked[-1])
        said = {k: v[0] for k, v in parse_qs(urlsplit(back).query).items()}
        return AuthorizationCodeResult(code=said["code"], state=said["state"], iss=said["iss"])

    async def counted(request: httpx2.Request) -> None:
        if request.url.path.endswith("/oauth2/token") and b"refresh_token" in request.content:
            login.refreshes += 1

    provider = OAuthClientProvider(
        server_url=f"{deployment.base}/mcp",
        client_metadata=OAuthClientMetadata(
            client_name="the tests' agent",
            redirect_uris=[AnyUrl(f"http://127.0.0.1:{free_port()}/callback")],
            grant_types=["authorization_code", "refresh_token"],
            token_endpoint_auth_method="none",
        ),
        storage=login.storage,
        redirect_handler=redirect,
        callback_handler=callback,
    )
    async with (
        httpx2.AsyncClient(auth=provider, timeout=30, event_hooks={"request": [counted]}) as http,
        Client(streamable_http_client(f"{deployment.base}/mcp", http_client=http)) as client,
    ):
        yield client


def as_user(user: str) -> dict[str, str]:
    return {"X-User-ID": user}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(client: Client, tool: str, **arguments: Any) -> CallToolResult:
    result: CallToolResult = await client.call_tool(tool, arguments)
    return result


def said(result: CallToolResult) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    anyio.run(scenario)


# -- the tools are the contract's ---------------------------------------------------------


def _resolved(node: Any) -> Any:
    if isinstance(node, list):
        return [_resolved(item) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target: Any = CONTRACT
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return _resolved(target)
    return {key: _resolved(value) for key, value in node.items()}


def _schema(kind: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = _resolved(CONTRACT["components"][kind][name])
    return found["schema"] if kind == "parameters" else found


def _expected_arguments() -> dict[str, dict[str, Any]]:
    """Each tool's arguments as the contract defines them: the operation's parameters
    and its body's members, side by side."""
    create, update = _schema("schemas", "TodoCreateV2"), _schema("schemas", "TodoUpdateV2")
    todo_id = {"todo_id": _schema("parameters", "TodoId")}
    # A bulk write's filters; its PATCH's `priority` is the body's change, not a filter.
    filters = {
        argument: _schema("parameters", name)
        for argument, name in (
            ("all", "All"),
            ("completed", "Completed"),
            ("tag", "TagFilter"),
            ("due_after", "DueAfter"),
            ("due_before", "DueBefore"),
            ("q", "Search"),
            ("idempotency_key", "BulkIdempotencyKey"),
        )
    }
    return {
        "list_todos": {
            argument: _schema("parameters", name)
            for argument, name in (
                ("completed", "Completed"),
                ("priority", "PriorityFilter"),
                ("tag", "TagFilter"),
                ("due_after", "DueAfter"),
                ("due_before", "DueBefore"),
                ("q", "Search"),
                ("sort", "Sort"),
                ("limit", "PageLimit"),
                ("cursor", "PageCursor"),
            )
        },
        "get_todo": todo_id,
        "create_todo": {
            **create["properties"],
            "idempotency_key": _schema("parameters", "IdempotencyKey"),
        },
        "update_todo": {**todo_id, **update["properties"]},
        "delete_todo": todo_id,
        "summarize_todos": {},
        "update_todos": {**filters, **_schema("schemas", "TodoBulkUpdate")["properties"]},
        "delete_todos": {**filters, "priority": _schema("parameters", "PriorityFilter")},
    }


# Values an argument or an answer's member may be sent as, good and bad: a tool's schema
# takes exactly those its contract's schema takes.
SAMPLES: list[Any] = [
    None, "", " ", "Buy milk", "x" * 256, "x" * 2001, "caf\u00e9", "\u200b", "a\u0000b",
    "0b9f1f6e-3c0a-4b8e-9b7e-6f3f3d2a1c55", "AQAGR8f2J3SGAAAAAAAAQACAAAAAAAAAAQ",
    0, 1, 20, 1000, 1001, -1, 1.5, True, False, [], {}, ["Buy milk"],
    "high", "urgent", ["high", "low"], "-due_at", "2026-12-04T16:00:00+00:00", " work",
    ["work", "work"], ["work", " home"], ["x" * 33], "w" * 101,
]  # fmt: skip


def _takes(schema: dict[str, Any]) -> list[bool]:
    validator = Draft202012Validator(schema)
    return [validator.is_valid(value) for value in SAMPLES]


def _answers_taken(schema: dict[str, Any]) -> list[bool]:
    todo = CONTRACT["components"]["schemas"]["TodoV2"]["examples"][0]
    answers = [
        todo,
        {**todo, "description": None},
        {**todo, "priority": "urgent"},
        {**todo, "completed_at": todo["updated_at"]},
        {**todo, "description": 7},
        {**todo, "colour": "red"},
        {k: v for k, v in todo.items() if k != "title"},
        {"items": [todo], "count": 1, "next_cursor": None},
        {"items": [todo], "count": 1, "next_cursor": "AQAG"},
        {"items": [{**todo, "description": []}], "count": 1},
        {"items": [], "count": -1},
    ]
    validator = Draft202012Validator(schema)
    return [validator.is_valid(answer) for answer in answers]


def _tools_of(tools: list[Any]) -> dict[str, dict[str, Any]]:
    return {t.name: t.model_dump(by_alias=True, exclude_none=True) for t in tools}


@pytest.mark.req("FR-181", "FR-182", "FR-183", "FR-187")
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_tools_schemas_are_the_contracts(header_mode: ServedService, transport: str) -> None:
    """Each argument takes exactly the values its parameter or body member takes, and
    each output schema exactly the answers the contract's schema takes: written for a
    model, the schemas still say what the contract says."""

    async def scenario() -> dict[str, dict[str, Any]]:
        async with agent(transport, header_mode.base, as_user(str(uuid.uuid4()))) as client:
            return _tools_of((await client.list_tools()).tools)

    tools = anyio.run(scenario)
    assert set(tools) == TOOLS
    for name, arguments in _expected_arguments().items():
        properties = tools[name]["inputSchema"]["properties"]
        assert set(properties) == set(arguments), name
        for argument, schema in arguments.items():
            assert _takes(properties[argument]) == _takes(schema), (name, argument)
        assert tools[name]["inputSchema"]["additionalProperties"] is False
    for name, answer in (
        ("get_todo", "TodoV2"),
        ("create_todo", "TodoV2"),
        ("update_todo", "TodoV2"),
        ("list_todos", "TodoListV2"),
    ):
        taken = _answers_taken(tools[name]["outputSchema"])
        assert taken == _answers_taken(_schema("schemas", answer)), name
        assert any(taken) and not all(taken)
    assert tools["create_todo"]["inputSchema"]["required"] == ["title"]
    assert tools["update_todo"]["inputSchema"]["required"] == ["todo_id"]
    operations = {
        o["operationId"]: o
        for item in CONTRACT["paths"].values()
        for o in item.values()
        if isinstance(o, dict) and "operationId" in o
    }
    assert tools["create_todo"]["title"] == operations["create_todo"]["summary"]
    for name in ("list_todos", "get_todo", "summarize_todos"):
        assert tools[name]["annotations"]["readOnlyHint"] is True, name
    for name in ("delete_todo", "delete_todos"):
        deleting = tools[name]["annotations"]
        assert deleting["destructiveHint"] is True and deleting["readOnlyHint"] is False
    changing = tools["update_todos"]["annotations"]
    assert changing["destructiveHint"] is False and changing["readOnlyHint"] is False


def _descriptions(node: Any) -> Iterator[str]:
    if isinstance(node, list):
        for item in node:
            yield from _descriptions(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "description" and isinstance(value, str):
                yield value
            else:
                yield from _descriptions(value)


def _type_lists(node: Any) -> Iterator[Any]:
    if isinstance(node, list):
        for item in node:
            yield from _type_lists(item)
    elif isinstance(node, dict):
        if isinstance(node.get("type"), list):
            yield node["type"]
        for value in node.values():
            yield from _type_lists(value)


# What an HTTP client reads and a model has no use for.
HTTP_WORDS = re.compile(
    r"ETag|If-(None-)?Match|Link\b|header|HTTP|as in 1\.0|Idempotency-Key|X-User-ID|Location"
    r"|\b(200|201|204|304|400|401|404|409|412|413|415|422|429|500|503)\b"
)


@pytest.mark.req("FR-187")
def test_the_tools_are_written_for_a_model_to_read(header_mode: ServedService) -> None:
    async def scenario() -> types.ListToolsResult:
        async with agent("http", header_mode.base, as_user(str(uuid.uuid4()))) as client:
            return await client.list_tools()

    listed = anyio.run(scenario)
    tools = _tools_of(listed.tools)
    for name, tool in tools.items():
        said = [tool["description"], *_descriptions(tool["inputSchema"])]
        said += list(_descriptions(tool.get("outputSchema", {})))
        for text in said:
            assert not HTTP_WORDS.search(text), (name, text)
        arguments = tool["inputSchema"]["properties"]
        for argument, schema in arguments.items():
            assert schema.get("description"), f"{name}'s {argument} says nothing of itself"
        assert list(_type_lists(tool)) == [], f"{name} has a type list, not anyOf"
    described = tools["create_todo"]["inputSchema"]["properties"]["description"]
    assert described["examples"] == ["Two litres, semi-skimmed."]
    assert tools["list_todos"]["inputSchema"]["properties"]["limit"]["default"] == 20
    update = Draft202012Validator(tools["update_todo"]["inputSchema"])
    todo_id = str(uuid.uuid4())
    assert not update.is_valid({"todo_id": todo_id}), "update_todo takes no change"
    assert update.is_valid({"todo_id": todo_id, "is_completed": True})
    assert update.is_valid({"todo_id": todo_id, "description": None})
    size = len(listed.model_dump_json(by_alias=True, exclude_none=True).encode())
    # 1.3's five tools: 12,314 bytes with HTTP's words and the answers' examples, 8,587
    # without. 2.0's (three more members, seven more list arguments, the summary) take
    # 16,100; 2.1's bulk writes, each with the list's filters, bring it to 21,100.
    assert size < 22000, size


# -- an agent at work ---------------------------------------------------------------------


@pytest.mark.req("FR-181", "FR-182", "FR-183")
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_agent_creates_lists_with_pages_gets_updates_completes_and_deletes_a_todo(
    header_mode: ServedService, transport: str
) -> None:
    async def scenario() -> None:
        async with agent(transport, header_mode.base, as_user(str(uuid.uuid4()))) as client:
            key = str(uuid.uuid4())
            made = await call(client, "create_todo", title="Buy milk", idempotency_key=key)
            assert not made.is_error, said(made)
            todo = made.structured_content
            assert (
                todo is not None and todo["title"] == "Buy milk" and todo["is_completed"] is False
            )
            again = await call(client, "create_todo", title="Buy milk", idempotency_key=key)
            assert again.structured_content == todo, "a retry with the key made another todo"
            for n in range(2):
                assert not (await call(client, "create_todo", title=f"more {n}")).is_error
            first = (await call(client, "list_todos", limit=2)).structured_content
            assert first is not None and first["count"] == 2 and first["next_cursor"]
            rest = await call(client, "list_todos", limit=2, cursor=first["next_cursor"])
            assert rest.structured_content is not None
            walked = [t["id"] for t in first["items"] + rest.structured_content["items"]]
            assert len(walked) == 3 and todo["id"] in walked
            got = await call(client, "get_todo", todo_id=todo["id"])
            assert got.structured_content == todo
            renamed = await call(client, "update_todo", todo_id=todo["id"], title="Buy oat milk")
            assert renamed.structured_content is not None
            assert renamed.structured_content["title"] == "Buy oat milk"
            done = await call(client, "update_todo", todo_id=todo["id"], is_completed=True)
            assert done.structured_content is not None
            assert done.structured_content["is_completed"] is True
            gone = await call(client, "delete_todo", todo_id=todo["id"])
            assert not gone.is_error, said(gone)
            missing = await call(client, "get_todo", todo_id=todo["id"])
            assert missing.is_error and "NOT_FOUND" in said(missing)

    run(scenario)


def one_line(result: CallToolResult) -> bool:
    """A tool error is one text, of one line, that says nothing twice."""
    [block] = result.content
    text = getattr(block, "text", "")
    parts = [part.strip() for part in re.split(r"[:;]", text)]
    return "\n" not in text and len(parts) == len(set(parts))


@pytest.mark.req("FR-181", "FR-016", "FR-187")
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_refusal_is_a_tool_error_carrying_the_problems_code_and_detail(
    header_mode: ServedService, transport: str
) -> None:
    async def scenario() -> None:
        owner, other = str(uuid.uuid4()), str(uuid.uuid4())
        async with agent(transport, header_mode.base, as_user(owner)) as mine:
            theirs = (await call(mine, "create_todo", title="not yours")).structured_content
        assert theirs is not None
        async with agent(transport, header_mode.base, as_user(other)) as client:
            for title in ("", "   "):
                blank = await call(client, "create_todo", title=title)
                assert blank.is_error and said(blank).startswith("VALIDATION_ERROR: title: ")
                assert one_line(blank)
            nothing = await call(client, "update_todo", todo_id=theirs["id"])
            assert said(nothing).startswith("VALIDATION_ERROR: must set at least one of")
            assert one_line(nothing)
            unknown = await call(client, "create_todo", title="x", colour="red")
            assert unknown.is_error and said(unknown).startswith("VALIDATION_ERROR: ")
            foreign = await call(client, "get_todo", todo_id=theirs["id"])
            assert foreign.is_error and said(foreign).startswith("NOT_FOUND: ")
            assert one_line(foreign)

    run(scenario)


@pytest.mark.req("FR-222", "FR-191", "FR-201", "FR-202")
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_agent_uses_2_0s_members_filters_and_sorts_with_no_tool_written_for_them(
    header_mode: ServedService, transport: str
) -> None:
    """The tools are /api/v2's operations: a priority, a due time and tags go in with the
    todo, and the list's filters and sort reach the agent as arguments."""

    async def scenario() -> None:
        async with agent(transport, header_mode.base, as_user(str(uuid.uuid4()))) as client:
            made = []
            for title, priority, tags in (
                ("file taxes", "high", ["home", "money"]),
                ("call Ana", "low", ["work"]),
                ("pay rent", "medium", ["home", "money"]),
            ):
                answer = await call(
                    client, "create_todo", title=title, priority=priority, tags=tags,
                    due_at="2026-12-24T17:00:00+01:00",
                )  # fmt: skip
                assert not answer.is_error, said(answer)
                made.append(answer.structured_content)
            assert made[0] is not None and made[0]["due_at"] == "2026-12-24T16:00:00+00:00"
            listed = await call(client, "list_todos", tag=["money"], sort="-priority")
            assert listed.structured_content is not None, said(listed)
            titles = [t["title"] for t in listed.structured_content["items"]]
            assert titles == ["file taxes", "pay rent"]
            found = await call(client, "list_todos", q="ANA", completed=False)
            assert found.structured_content is not None, said(found)
            assert [t["title"] for t in found.structured_content["items"]] == ["call Ana"]
            counted = await call(client, "summarize_todos")
            assert counted.structured_content is not None, said(counted)
            assert counted.structured_content["open"] == 3
            assert counted.structured_content["by_tag"] == {"home": 2, "money": 2, "work": 1}
            wrong = await call(client, "list_todos", sort="urgency")
            assert wrong.is_error and said(wrong).startswith("VALIDATION_ERROR: sort: ")
            done = await call(client, "update_todos", tag=["money"], is_completed=True)
            assert done.structured_content == {"updated": 2}, said(done)
            cleared = await call(client, "delete_todos", completed=True)
            assert cleared.structured_content == {"deleted": 2}, said(cleared)
            unfiltered = await call(client, "delete_todos")
            assert unfiltered.is_error and said(unfiltered).startswith("VALIDATION_ERROR: all: ")

    run(scenario)


@pytest.mark.req("FR-187")
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_bare_list_todos_reads_a_page(header_mode: ServedService, transport: str) -> None:
    """A list of unknown length never lands whole in a conversation: without `limit`,
    the tool reads a page of 20 (an answer with `next_cursor`, which only pages carry),
    and a cursor alone goes on from there."""

    async def scenario() -> None:
        async with agent(transport, header_mode.base, as_user(str(uuid.uuid4()))) as client:
            for n in range(3):
                assert not (await call(client, "create_todo", title=f"t{n}")).is_error
            whole = (await call(client, "list_todos")).structured_content
            assert whole is not None and whole["count"] == 3
            assert "next_cursor" in whole and whole["next_cursor"] is None
            first = (await call(client, "list_todos", limit=2)).structured_content
            assert first is not None and first["next_cursor"]
            rest = await call(client, "list_todos", cursor=first["next_cursor"])
            assert rest.structured_content is not None, said(rest)
            assert rest.structured_content["count"] == 1

    run(scenario)


# Whatever a model may put in an argument: none of it may end the call with a protocol
# error (the SDK raises those), only with an answer or a tool error of one line.
HOSTILE: list[Any] = [
    None, "", "caf\u00e9", "a\r\nX-Injected: 1", "x" * 5000, "../../health/live", 1.5, True, [],
]  # fmt: skip
VALID = {"todo_id": "0b9f1f6e-3c0a-4b8e-9b7e-6f3f3d2a1c55", "title": "Hostile"}


@pytest.mark.req("FR-187")
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_any_value_of_any_argument_is_a_result_or_a_tool_error(
    header_mode: ServedService, transport: str
) -> None:
    """One user, within the deployment's 120 requests a minute."""

    async def scenario() -> None:
        async with agent(transport, header_mode.base, as_user(str(uuid.uuid4()))) as client:
            for tool, arguments in _expected_arguments().items():
                for argument in arguments:
                    for value in HOSTILE:
                        given = {k: v for k, v in VALID.items() if k in arguments}
                        result = await call(client, tool, **{**given, argument: value})
                        assert not result.is_error or one_line(result), (tool, argument)
            for key in ("caf\u00e9", "a\r\nX-Injected: 1", " padded "):
                refused = await call(client, "create_todo", title="x", idempotency_key=key)
                assert refused.is_error and said(refused).startswith(
                    "VALIDATION_ERROR: idempotency_key: "
                ), said(refused)

    run(scenario)


# -- two users' agents --------------------------------------------------------------------


@pytest.mark.req("FR-184", "FR-013", "FR-014", "FR-105", "FR-185", "FR-186")
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_two_users_agents_never_see_change_or_learn_of_each_others_todos(
    jwt_mode: Deployment, transport: str
) -> None:
    """Two users of a real Better Auth, each agent logged in by itself: every tool on the
    other user's todo answers what it answers on a missing one, and changes nothing; no
    list holds it."""
    alice, bob = (f"{uuid.uuid4().hex}@example.com" for _ in range(2))
    jwt_mode.auth.sign_up("Alice", alice)
    jwt_mode.auth.sign_up("Bob", bob)

    async def scenario() -> None:
        async with logged_in(transport, jwt_mode, alice) as hers:
            secret = (await call(hers, "create_todo", title="Alice's secret")).structured_content
            assert secret is not None
            async with logged_in(transport, jwt_mode, bob) as his:
                mine = (await call(his, "create_todo", title="Bob's own")).structured_content
                assert mine is not None and mine["user_id"] != secret["user_id"]
                missing = str(uuid.uuid4())
                for tool, extra in (
                    ("get_todo", {}),
                    ("update_todo", {"title": "taken"}),
                    ("update_todo", {"is_completed": True}),
                    ("delete_todo", {}),
                ):
                    foreign = await call(his, tool, todo_id=secret["id"], **extra)
                    absent = await call(his, tool, todo_id=missing, **extra)
                    assert foreign.is_error and "NOT_FOUND" in said(foreign), tool
                    assert said(foreign).replace(secret["id"], "<id>") == said(absent).replace(
                        missing, "<id>"
                    ), f"{tool} tells another user's todo from a missing one"
                listed = (await call(his, "list_todos")).structured_content
                assert listed is not None
                assert [t["id"] for t in listed["items"]] == [mine["id"]]
            after = await call(hers, "get_todo", todo_id=secret["id"])
            assert after.structured_content == secret, "another user's agent changed it"
            listed = (await call(hers, "list_todos")).structured_content
            assert listed is not None and [t["id"] for t in listed["items"]] == [secret["id"]]

    run(scenario)


# -- agents that log in by themselves -------------------------------------------------------


async def _refused_when_expired(method: str, url: str, token: str, **request: Any) -> None:
    """Until `url` refuses `token` as expired: the access token's real expiry, here. The
    request asked again and again must change nothing (a POST creating a todo made a
    user of some twenty-five of them, one every quarter second until the expiry)."""
    deadline = time.monotonic() + LIFETIME + LEEWAY + 30
    async with httpx2.AsyncClient(timeout=10) as client:
        while True:
            answer = await client.request(method, url, headers=bearer(token), **request)
            if answer.status_code == 401 and answer.json()["code"] == "TOKEN_EXPIRED":
                return
            assert time.monotonic() < deadline, (answer.status_code, answer.text)
            await anyio.sleep(0.25)


@pytest.mark.req("FR-185", "FR-183")
def test_a_standard_mcp_client_logs_in_by_itself_and_goes_on_past_expiry(
    jwt_mode: Deployment,
) -> None:
    """The official SDK's OAuth client, given nothing but /mcp's URL: from the 401 it
    finds the resource's metadata and Better Auth's, registers, logs its user in with
    an authorization code and PKCE, lists and creates todos, and keeps calling after its
    access token has expired, through a refresh, without asking its user again."""
    email = f"{uuid.uuid4().hex}@example.com"
    user = jwt_mode.auth.sign_up("Agent's user", email)
    login = Login()

    async def scenario() -> None:
        async with logged_in("http", jwt_mode, email, login) as client:
            made = await call(client, "create_todo", title="Before the expiry")
            assert made.structured_content is not None, said(made)
            assert made.structured_content["user_id"] == str(
                owner_id(jwt_mode.auth.base, user.subject)
            ), "the agent acts for another user than the one who logged in"
            listed = (await call(client, "list_todos")).structured_content
            assert listed is not None and listed["count"] == 1
            assert login.storage.client is not None and login.storage.client.client_id
            tokens = login.storage.tokens
            assert tokens is not None and tokens.refresh_token
            claims = jwt.decode(tokens.access_token, options={"verify_signature": False})
            assert claims["aud"][0] == f"{jwt_mode.base}/mcp", claims["aud"]
            await _refused_when_expired(
                "POST", f"{jwt_mode.base}/mcp", tokens.access_token, json={}
            )
            again = await call(client, "create_todo", title="After the expiry")
            assert not again.is_error, said(again)
            listed = (await call(client, "list_todos")).structured_content
            assert listed is not None and listed["count"] == 2
            assert login.storage.tokens is not None
            assert login.storage.tokens.access_token != tokens.access_token
        assert login.authorizations == 1, "the user was asked to log in again"
        assert login.refreshes >= 1

    run(scenario)


@pytest.mark.req("FR-185", "FR-103")
def test_a_token_for_another_audience_is_refused(jwt_mode: Deployment) -> None:
    """Better Auth's tokens for the API (its `jwt` plugin's, aud = its base URL) are not
    /mcp's, and /mcp's are not the API's: each is refused where it is not meant for."""
    email = f"{uuid.uuid4().hex}@example.com"
    for_the_api = jwt_mode.auth.sign_up("Someone", email).token
    refused = one_off.post(f"{jwt_mode.base}/mcp", json={}, headers=bearer(for_the_api))
    assert refused.status_code == 401 and refused.json()["code"] == "INVALID_TOKEN"
    assert "audience" in refused.json()["detail"]
    assert 'resource_metadata="' in refused.headers["www-authenticate"]
    login = Login()

    async def scenario() -> None:
        async with logged_in("http", jwt_mode, email, login) as client:
            assert not (await call(client, "list_todos")).is_error

    run(scenario)
    assert login.storage.tokens is not None
    for_mcp = login.storage.tokens.access_token
    api = one_off.get(f"{jwt_mode.base}/api/v1/todos", headers=bearer(for_mcp))
    assert api.status_code == 401 and api.json()["code"] == "INVALID_TOKEN"
    fresh = jwt_mode.auth.sign_in(email).token
    assert one_off.get(f"{jwt_mode.base}/api/v1/todos", headers=bearer(fresh)).is_success


@pytest.mark.req("FR-186", "FR-182")
def test_stdio_renews_its_token_across_an_expiry_and_a_refusal(jwt_mode: Deployment) -> None:
    """`todo-service mcp --token-command`: the token it was started with expires (the
    API refuses it) and the agent goes on; a token the API refuses from the start is
    replaced at the first call; a command that prints no token is a tool error saying
    so, in one line."""
    email = f"{uuid.uuid4().hex}@example.com"
    user = jwt_mode.auth.sign_up("Someone", email)
    first, own = user.token, str(owner_id(jwt_mode.auth.base, user.subject))
    command = token_command(jwt_mode, email)
    now = int(time.time())
    todos = f"{jwt_mode.base}/api/v1/todos"
    # Unsigned, so never anyone: the API refuses it, and the agent started with it acts
    # for the user its --token-command signs in, no one else.
    refused = _unsigned({"sub": "someone", "iss": jwt_mode.auth.base, "exp": now + 3600})
    unsigned = one_off.get(todos, headers=bearer(refused))
    assert (unsigned.status_code, unsigned.json()["code"]) == (401, "INVALID_TOKEN")

    def listed(result: CallToolResult) -> set[tuple[str, str]]:
        assert result.structured_content is not None, said(result)
        return {(todo["user_id"], todo["title"]) for todo in result.structured_content["items"]}

    async def refused_from_the_start() -> None:
        async with stdio_agent(jwt_mode.base, refused, command) as client:
            assert listed(await call(client, "list_todos")) == {(own, "Before the expiry")}
        async with stdio_agent(jwt_mode.base, refused, "false") as client:
            failed = await call(client, "list_todos")
            assert failed.is_error and said(failed).startswith("TOKEN_COMMAND_FAILED: ")
            assert one_line(failed)

    async def scenario() -> None:
        async with stdio_agent(jwt_mode.base, first, command) as client:
            before = await call(client, "create_todo", title="Before the expiry")
            assert not before.is_error, said(before)
            # The other agents meanwhile: the expiry is waited for in real time.
            async with anyio.create_task_group() as meanwhile:
                meanwhile.start_soon(refused_from_the_start)
                await _refused_when_expired("GET", todos, first)
            after = await call(client, "create_todo", title="After the expiry")
            assert not after.is_error, said(after)
            assert listed(await call(client, "list_todos")) == {
                (own, "Before the expiry"),
                (own, "After the expiry"),
            }

    run(scenario)


# -- /mcp, a resource server --------------------------------------------------------------


@pytest.fixture
def signed_by_us(
    postgres_url: str, database: Database
) -> Iterator[tuple[TestClient, SigningKey, str]]:
    """The service with /mcp in jwt mode, trusting a key server of the tests' own, which
    can sign what Better Auth never would (an expired token)."""
    key, server = SigningKey.new("EdDSA"), KeyServer()
    server.publish(key)
    server.start()
    issuer = "https://auth.example.com"
    settings = make_settings(
        postgres_url,
        TODO_MCP="on",
        TODO_AUTH_MODE="jwt",
        TODO_JWT_JWKS_URL=server.url,
        TODO_JWT_ISSUER=issuer,
        TODO_JWT_AUDIENCE=issuer,
        TODO_JWT_LEEWAY_SECONDS=0,
    )
    with TestClient(create_app(settings, database), raise_server_exceptions=False) as client:
        yield client, key, issuer
    server.stop()


def _unsigned(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


@pytest.mark.req("FR-183", "FR-103", "FR-185")
def test_without_a_valid_token_mcp_is_401_naming_the_resource_metadata(
    signed_by_us: tuple[TestClient, SigningKey, str],
) -> None:
    client, key, issuer = signed_by_us
    now = int(time.time())
    # TestClient's listener is `testserver`, port 80: /mcp is http://testserver/mcp.
    claims: dict[str, Any] = {"sub": "agent-user", "iss": issuer, "aud": "http://testserver/mcp"}
    claims |= {"iat": now, "exp": now + 600}
    good = key.sign(claims)
    head, body, signature = good.split(".")
    tampered = f"{head}.{body}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    expired = key.sign({**claims, "iat": now - 1200, "exp": now - 600})
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    metadata = 'resource_metadata="http://testserver/.well-known/oauth-protected-resource/mcp"'
    for token, code in (
        (None, "MISSING_TOKEN"),
        (tampered, "INVALID_TOKEN"),
        (expired, "TOKEN_EXPIRED"),
        (_unsigned(claims), "INVALID_TOKEN"),
        (key.sign({**claims, "aud": issuer}), "INVALID_TOKEN"),
    ):
        headers = {} if token is None else bearer(token)
        answer = client.post("/mcp", json=initialize, headers=headers)
        assert answer.status_code == 401, (code, answer.text)
        assert answer.json()["code"] == code
        challenge = answer.headers["www-authenticate"]
        assert challenge.startswith("Bearer ") and metadata in challenge, challenge
        assert ('error="invalid_token"' in challenge) == (token is not None)
    accepted = client.post(
        "/mcp",
        json=initialize,
        headers={**bearer(good), "Accept": "application/json, text/event-stream"},
    )
    # Let in, and answered: the tools listed (json_response), not an error of any kind.
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["result"]["tools"], accepted.text


@pytest.mark.req("FR-183", "FR-188")
def test_the_protected_resource_metadata_names_better_auth(jwt_mode: Deployment) -> None:
    """/mcp's document names /mcp; the one at the root names the origin (RFC 9728)."""
    refused = one_off.post(f"{jwt_mode.base}/mcp", json={})
    assert refused.status_code == 401
    challenge = refused.headers["www-authenticate"]
    where = challenge.split('resource_metadata="')[1].split('"')[0]
    assert where == f"{jwt_mode.base}/.well-known/oauth-protected-resource/mcp"
    for url, resource in (
        (where, f"{jwt_mode.base}/mcp"),
        (f"{jwt_mode.base}/.well-known/oauth-protected-resource", jwt_mode.base),
    ):
        document = one_off.get(url).json()
        assert document["resource"] == resource
        assert document["authorization_servers"] == [jwt_mode.auth.base]
        assert document["bearer_methods_supported"] == ["header"]


METADATA = "/.well-known/oauth-protected-resource"
# What a client may write to rename the service in its answers, were the service to listen.
SPOOFED = (
    {"Host": "evil.example"},
    {"Host": "evil.example:8443", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"},
    {"Forwarded": "host=evil.example;proto=https", "X-Forwarded-Port": "443"},
)


def _answers(base: str, client: httpx.Client, headers: dict[str, str]) -> list[Any]:
    """/mcp's refusal and both metadata documents, as a client sending `headers` sees them."""
    refused = client.post(f"{base}/mcp", json={}, headers=headers)
    documents = [
        client.get(f"{base}/.well-known/oauth-protected-resource{path}", headers=headers)
        for path in ("", "/mcp")
    ]
    return [
        (refused.status_code, refused.headers.get("www-authenticate"), refused.json()),
        *((d.status_code, d.json()) for d in documents),
    ]


@pytest.mark.req("FR-188")
def test_a_spoofed_host_changes_nothing_in_any_answer(jwt_mode: Deployment) -> None:
    """Unset, TODO_PUBLIC_URL's place is taken by the address the listener accepted the
    connection on (here `serve --host 127.0.0.1 --port N`), never by a request's Host or
    a proxy's forwarding headers, which the client writes."""
    with httpx.Client(timeout=10) as client:
        honest = _answers(jwt_mode.base, client, {})
        assert honest[0][1].count(f'"{jwt_mode.base}/.well-known/') == 1, honest[0]
        assert honest[1][1]["resource"] == jwt_mode.base
        assert honest[2][1]["resource"] == f"{jwt_mode.base}/mcp"
        for headers in SPOOFED:
            assert _answers(jwt_mode.base, client, headers) == honest, headers


@pytest.mark.req("FR-188")
def test_todo_public_url_names_the_resource_whatever_host_a_request_carries(
    postgres_url: str, database: Database
) -> None:
    settings = make_settings(
        postgres_url,
        TODO_MCP="on",
        TODO_AUTH_MODE="jwt",
        TODO_JWT_SECRET="s" * 32,
        TODO_JWT_ISSUER="https://app.example.com",
        TODO_PUBLIC_URL="https://Todos.example.com/",
    )
    public = "https://todos.example.com"
    with TestClient(create_app(settings, database)) as client:
        for headers in ({}, *SPOOFED):
            refused = client.post("/mcp", json={}, headers=headers)
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"].startswith(
                f'Bearer resource_metadata="{public}/.well-known/oauth-protected-resource/mcp"'
            )
            for path, resource in (("", public), ("/mcp", f"{public}/mcp")):
                document = client.get(
                    f"/.well-known/oauth-protected-resource{path}", headers=headers
                )
                assert document.json()["resource"] == resource
                assert document.json()["authorization_servers"] == ["https://app.example.com"]


@pytest.mark.req("FR-188")
@pytest.mark.parametrize(
    "value",
    [
        "todos.example.com",
        "ftp://todos.example.com",
        "https://todos.example.com/api",
        "https://todos.example.com?x=1",
        "https://user@todos.example.com",
        "https://todos.example.com:99999",
        "https://",
    ],
)
def test_a_public_url_that_is_no_origin_is_named_at_start(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TODO_PUBLIC_URL", value)
    with pytest.raises(ValidationError) as refused:
        Settings()
    [problem] = settings_problems(refused.value)
    assert problem.startswith("TODO_PUBLIC_URL: must be an origin"), problem


@pytest.mark.req("FR-183", "FR-015")
def test_in_header_mode_mcp_takes_x_user_id_as_the_api_does(header_mode: ServedService) -> None:
    for headers, code in (
        ({}, "MISSING_USER_CONTEXT"),
        ({"X-User-ID": "alice"}, "INVALID_USER_CONTEXT"),
    ):
        answer = one_off.post(f"{header_mode.base}/mcp", json={}, headers=headers)
        assert answer.status_code == 400 and answer.json()["code"] == code


@pytest.mark.req("FR-183", "FR-151", "FR-152", "FR-161")
def test_quota_rate_limit_and_metrics_apply_to_tool_calls(header_mode: ServedService) -> None:
    """The deployment holds a user to 20 todos and 120 requests a minute: an agent meets
    both as any client would, and its calls are counted under /mcp."""

    async def scenario() -> None:
        async with agent("http", header_mode.base, as_user(str(uuid.uuid4()))) as client:
            for n in range(20):
                assert not (await call(client, "create_todo", title=f"t{n}")).is_error
            over = await call(client, "create_todo", title="one too many")
            assert over.is_error and said(over).startswith("QUOTA_EXCEEDED: ")
            refused = None
            for _ in range(200):
                answer = await call(client, "list_todos", limit=1)
                if answer.is_error:
                    refused = answer
                    break
            assert refused is not None and said(refused).startswith("RATE_LIMITED: ")

    run(scenario)
    assert header_mode.metrics_url is not None
    routes = {
        sample.labels.get("http_route")
        for family in text_string_to_metric_families(one_off.get(header_mode.metrics_url).text)
        for sample in family.samples
        if family.name == "http_server_request_duration_seconds"
    }
    assert "/mcp" in routes and "/api/v2/todos" in routes


@pytest.mark.req("FR-183")
def test_off_unless_asked_for_mcp_is_neither_served_nor_imported(
    client: TestClient, postgres_url: str, database: Database, tmp_path: Path
) -> None:
    assert client.post("/mcp", json={}, headers=as_user(str(uuid.uuid4()))).status_code == 404
    assert client.get("/.well-known/oauth-protected-resource").status_code == 404
    assert loaded_by_a_worker(postgres_url, tmp_path, ["mcp"]) == []
    assert loaded_by_a_worker(postgres_url, tmp_path, ["mcp"], TODO_MCP="on") == ["mcp"]


@pytest.mark.req("FR-182")
def test_the_stdio_server_refuses_to_start_without_a_user(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TODO_")}
    done = subprocess.run(
        [str(EXECUTABLE), "mcp"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "TODO_MCP_TOKEN" in done.stderr and "TODO_MCP_USER_ID" in done.stderr


# -- the MCP Inspector's command line -------------------------------------------------------

# As docs/agents.md runs it, after `npm ci`; never fetched from the registry here.
INSPECTOR = ["npx", "--no-install", "@modelcontextprotocol/inspector"]


def _inspector(target: list[str], *args: str) -> Any:
    """The Inspector's answer; with --strict, it has found nothing to say of the tools'
    schemas (their portability to single-type dialects, remote refs, untyped schemas)."""
    done = subprocess.run(
        # A stdio server starting on a loaded machine may take past the 15 s default.
        [*INSPECTOR, "--cli", *target, "--connect-timeout", "60000", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Schema portability" not in done.stderr, done.stderr
    assert "Warning:" not in done.stderr and "Error:" not in done.stderr, done.stderr
    return json.loads(done.stdout)


@pytest.mark.req("FR-184", "FR-182", "FR-183", "FR-187")
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_inspector_cli_lists_the_tools_and_creates_a_todo(
    header_mode: ServedService, transport: str
) -> None:
    user = str(uuid.uuid4())
    if transport == "stdio":
        target = [
            str(EXECUTABLE),
            "mcp",
            "--base-url",
            header_mode.base,
            "-e",
            f"TODO_MCP_USER_ID={user}",
        ]
    else:
        target = [
            f"{header_mode.base}/mcp",
            "--transport",
            "http",
            "--header",
            f"X-User-ID: {user}",
        ]
    listed = _inspector(target, "--method", "tools/list", "--strict")
    assert {tool["name"] for tool in listed["tools"]} == TOOLS
    made = _inspector(
        target, "--method", "tools/call", "--tool-name", "create_todo",
        "--tool-arg", "title=Written by the Inspector",
    )  # fmt: skip
    assert not made.get("isError"), made
    assert made["structuredContent"]["title"] == "Written by the Inspector"
    assert made["structuredContent"]["user_id"] == user
    read = one_off.get(
        f"{header_mode.base}/api/v1/todos/{made['structuredContent']['id']}", headers=as_user(user)
    )
    assert read.status_code == 200


@pytest.mark.req("FR-182")
def test_the_stdio_server_imports_nothing_of_the_service_below_its_tools() -> None:
    """A client of the contract: no database, no store, no identity of its own."""
    done = subprocess.run(
        [sys.executable, "-c",
         "import sys; import service.mcp.stdio, service.mcp.server, service.mcp.tools;"
         " print(sorted(m for m in sys.modules if m.startswith('service.')"
         " and not m.startswith('service.mcp')))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stdout.strip() == "[]"
