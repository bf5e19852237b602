"""`todo-service mcp`: the contract's tools over stdio for a local agent (FR-182), as a
client of a deployment's HTTP API, acting as one user: a bearer token from
TODO_MCP_TOKEN, renewed by running --token-command when it nears its expiry or is
refused (FR-186), or in header mode the user id from TODO_MCP_USER_ID. It knows nothing
of the database: any deployment of the contract will do."""

import os
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from importlib import metadata
from typing import Any

import anyio
import httpx2
from mcp.server import ServerRequestContext
from mcp.server.stdio import stdio_server

from service.mcp.renewal import RenewedToken
from service.mcp.server import build

_TIMEOUT = httpx2.Timeout(30.0, connect=5.0)


def identity(token_command: str | None = None) -> RenewedToken | dict[str, str] | str:
    """Who the agent acts for, as the API hears it; or what is wrong."""
    token = os.environ.get("TODO_MCP_TOKEN", "").strip()
    user = os.environ.get("TODO_MCP_USER_ID", "").strip()
    if user and (token or token_command):
        return (
            "set TODO_MCP_TOKEN or --token-command (jwt mode), or TODO_MCP_USER_ID"
            " (header mode), not both"
        )
    if token or token_command:
        return RenewedToken(token or None, token_command)
    if user:
        return {"X-User-ID": user}
    return (
        "set TODO_MCP_TOKEN or --token-command (a bearer token, jwt mode),"
        " or TODO_MCP_USER_ID (header mode)"
    )


def run(base_url: str, token_command: str | None = None) -> None:
    who = identity(token_command)
    if isinstance(who, str):
        print(f"todo-service mcp: {who}", file=sys.stderr)
        sys.exit(2)
    anyio.run(_serve, base_url, who)


async def _serve(base_url: str, who: RenewedToken | dict[str, str]) -> None:
    auth, headers = (who, {}) if isinstance(who, RenewedToken) else (None, who)
    async with httpx2.AsyncClient(
        base_url=base_url, headers=headers, auth=auth, timeout=_TIMEOUT
    ) as client:

        @asynccontextmanager
        async def reach(
            ctx: ServerRequestContext[Any, Any],
        ) -> AsyncIterator[tuple[httpx2.AsyncClient, Mapping[str, str]]]:
            yield client, {}

        server = build(reach, metadata.version("todo-service"))
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
