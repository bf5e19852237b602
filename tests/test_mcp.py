"""Agents as users (FR-181 to FR-184): the contract's operations as MCP tools, served over
stdio by `todo-service mcp` (a client of a deployment) and over streamable HTTP at /mcp
by the service itself, checked with clients nobody here wrote: the official MCP SDK's
client and the MCP Inspector's command line. Two users' agents never see, change or
learn of each other's todos; tokens from a real Better Auth are verified as the API
verifies them; limits, quota and metrics apply to tool calls as to any request."""

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
import yaml
from better_auth import BetterAuth
from conftest import REPO, make_settings
from databases import Databases
from fastapi.testclient import TestClient
from key_server import KeyServer, SigningKey
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult
from ports import free_port
from prometheus_client.parser import text_string_to_metric_families
from run_logs import RunLogs
from served import EXECUTABLE, ServedService
from worker_probe import loaded_by_a_worker

from service.app import create_app
from service.db import Database

CONTRACT: dict[str, Any] = yaml.safe_load((REPO / "openapi.yaml").read_text())
TOOLS = {"list_todos", "get_todo", "create_todo", "update_todo", "delete_todo"}
TRANSPORTS = ("stdio", "http")


# -- deployments with /mcp, served as their users serve them ----------------------------


def _served(
    factory: pytest.TempPathFactory, logs: RunLogs, databases: Databases, name: str, **env: str
) -> ServedService:
    service = ServedService(
        factory.mktemp(name), logs, databases.clone(name), extra_env={"TODO_MCP": "on", **env}
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


@pytest.fixture(scope="module")
def jwt_mode(
    tmp_path_factory: pytest.TempPathFactory,
    run_logs: RunLogs,
    databases: Databases,
    better_auth: BetterAuth,
) -> Iterator[ServedService]:
    service = _served(
        tmp_path_factory,
        run_logs,
        databases,
        "mcp-jwt",
        TODO_AUTH_MODE="jwt",
        TODO_JWT_JWKS_URL=better_auth.jwks_url,
        TODO_JWT_ISSUER=better_auth.base,
        TODO_JWT_AUDIENCE=better_auth.base,
    )
    yield service
    service.stop()


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
    create, update = _schema("schemas", "TodoCreate"), _schema("schemas", "TodoUpdate")
    todo_id = {"todo_id": _schema("parameters", "TodoId")}
    return {
        "list_todos": {
            "limit": _schema("parameters", "Limit"),
            "cursor": _schema("parameters", "Cursor"),
        },
        "get_todo": todo_id,
        "create_todo": {
            **create["properties"],
            "idempotency_key": _schema("parameters", "IdempotencyKey"),
        },
        "update_todo": {**todo_id, **update["properties"]},
        "delete_todo": todo_id,
    }


def _undescribed(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != "description"}


@pytest.mark.req("FR-181", "FR-182", "FR-183")
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_five_tools_whose_schemas_are_the_contracts(
    header_mode: ServedService, transport: str
) -> None:
    async def scenario() -> None:
        async with agent(transport, header_mode.base, as_user(str(uuid.uuid4()))) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) == TOOLS
        for name, arguments in _expected_arguments().items():
            properties = tools[name].input_schema["properties"]
            assert set(properties) == set(arguments), name
            for argument, schema in arguments.items():
                assert _undescribed(properties[argument]) == _undescribed(schema), (name, argument)
            assert tools[name].input_schema.get("additionalProperties") is False
        assert tools["get_todo"].output_schema == _schema("schemas", "Todo")
        assert tools["create_todo"].output_schema == _schema("schemas", "Todo")
        assert tools["list_todos"].output_schema == _schema("schemas", "TodoList")
        assert tools["create_todo"].input_schema["required"] == ["title"]
        assert tools["update_todo"].input_schema["required"] == ["todo_id"]
        operations = {
            o["operationId"]: o
            for item in CONTRACT["paths"].values()
            for o in item.values()
            if isinstance(o, dict) and "operationId" in o
        }
        assert tools["create_todo"].title == operations["createTodo"]["summary"]
        assert operations["deleteTodo"]["summary"] in (tools["delete_todo"].description or "")
        for name in ("list_todos", "get_todo"):
            annotations = tools[name].annotations
            assert annotations is not None and annotations.read_only_hint is True, name
        deleting = tools["delete_todo"].annotations
        assert deleting is not None and deleting.destructive_hint is True
        assert deleting.read_only_hint is False

    run(scenario)


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


@pytest.mark.req("FR-181", "FR-016")
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
                assert blank.is_error and said(blank).startswith("VALIDATION_ERROR: ")
                assert "title" in said(blank)
                problem = json.loads(getattr(blank.content[-1], "text", ""))
                assert problem["code"] == "VALIDATION_ERROR" and problem["status"] == 422
            unknown = await call(client, "create_todo", title="x", colour="red")
            assert unknown.is_error and said(unknown).startswith("VALIDATION_ERROR: ")
            foreign = await call(client, "get_todo", todo_id=theirs["id"])
            assert foreign.is_error and "not found" in said(foreign).lower()
            assert said(foreign).startswith("NOT_FOUND: ")

    run(scenario)


# -- two users' agents --------------------------------------------------------------------


@pytest.mark.req("FR-184", "FR-013", "FR-014", "FR-105")
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_two_users_agents_never_see_change_or_learn_of_each_others_todos(
    jwt_mode: ServedService, better_auth: BetterAuth, transport: str
) -> None:
    """With tokens a real Better Auth issued: every tool on the other user's todo answers
    what it answers on a missing one, and changes nothing; no list holds it."""
    alice, bob = better_auth.sign_up("Alice").token, better_auth.sign_up("Bob").token

    async def scenario() -> None:
        async with agent(transport, jwt_mode.base, bearer(alice)) as hers:
            secret = (await call(hers, "create_todo", title="Alice's secret")).structured_content
            assert secret is not None
            async with agent(transport, jwt_mode.base, bearer(bob)) as his:
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


@pytest.mark.req("FR-183", "FR-103")
def test_without_a_valid_token_mcp_is_401_naming_the_resource_metadata(
    signed_by_us: tuple[TestClient, SigningKey, str],
) -> None:
    client, key, issuer = signed_by_us
    now = int(time.time())
    claims = {"sub": "agent-user", "iss": issuer, "aud": issuer, "iat": now, "exp": now + 600}
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


@pytest.mark.req("FR-183")
def test_the_protected_resource_metadata_names_better_auth(
    jwt_mode: ServedService, better_auth: BetterAuth
) -> None:
    refused = httpx.post(f"{jwt_mode.base}/mcp", json={})
    assert refused.status_code == 401
    challenge = refused.headers["www-authenticate"]
    where = challenge.split('resource_metadata="')[1].split('"')[0]
    assert where == f"{jwt_mode.base}/.well-known/oauth-protected-resource/mcp"
    for url in (where, f"{jwt_mode.base}/.well-known/oauth-protected-resource"):
        document = httpx.get(url).json()
        assert document["resource"] == f"{jwt_mode.base}/mcp"
        assert document["authorization_servers"] == [better_auth.base]
        assert document["bearer_methods_supported"] == ["header"]


@pytest.mark.req("FR-183", "FR-015")
def test_in_header_mode_mcp_takes_x_user_id_as_the_api_does(header_mode: ServedService) -> None:
    for headers, code in (
        ({}, "MISSING_USER_CONTEXT"),
        ({"X-User-ID": "alice"}, "INVALID_USER_CONTEXT"),
    ):
        answer = httpx.post(f"{header_mode.base}/mcp", json={}, headers=headers)
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
        for family in text_string_to_metric_families(httpx.get(header_mode.metrics_url).text)
        for sample in family.samples
        if family.name == "http_server_request_duration_seconds"
    }
    assert "/mcp" in routes and "/api/v1/todos" in routes


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

INSPECTOR = REPO / "node_modules" / ".bin" / "mcp-inspector"


def _inspector(target: list[str], *args: str) -> Any:
    done = subprocess.run(
        [str(INSPECTOR), "--cli", *target, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


@pytest.mark.req("FR-184", "FR-182", "FR-183")
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
    listed = _inspector(target, "--method", "tools/list")
    assert {tool["name"] for tool in listed["tools"]} == TOOLS
    made = _inspector(
        target, "--method", "tools/call", "--tool-name", "create_todo",
        "--tool-arg", "title=Written by the Inspector",
    )  # fmt: skip
    assert not made.get("isError"), made
    assert made["structuredContent"]["title"] == "Written by the Inspector"
    assert made["structuredContent"]["user_id"] == user
    read = httpx.get(
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
