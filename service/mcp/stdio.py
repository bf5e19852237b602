"""`todo-service mcp`: the contract's tools over stdio for a local agent (FR-182), as a
client of a deployment's HTTP API, acting as one user: a bearer token from
TODO_MCP_TOKEN, or in header mode the user id from TODO_MCP_USER_ID. It knows nothing
of the database: any deployment of the contract will do."""

import os
import sys
from importlib import metadata

import anyio
import httpx2
from mcp.server.stdio import stdio_server

from service.mcp.server import build

_TIMEOUT = httpx2.Timeout(30.0, connect=5.0)


def identity() -> dict[str, str] | str:
    """Who the agent acts for, as the API hears it; or what is wrong."""
    token = os.environ.get("TODO_MCP_TOKEN", "").strip()
    user = os.environ.get("TODO_MCP_USER_ID", "").strip()
    if token and user:
        return "set TODO_MCP_TOKEN (jwt mode) or TODO_MCP_USER_ID (header mode), not both"
    if token:
        return {"Authorization": f"Bearer {token}"}
    if user:
        return {"X-User-ID": user}
    return "set TODO_MCP_TOKEN (a bearer token, jwt mode) or TODO_MCP_USER_ID (header mode)"


def run(base_url: str) -> None:
    who = identity()
    if isinstance(who, str):
        print(f"todo-service mcp: {who}", file=sys.stderr)
        sys.exit(2)
    anyio.run(_serve, base_url, who)


async def _serve(base_url: str, who: dict[str, str]) -> None:
    async with httpx2.AsyncClient(base_url=base_url, headers=who, timeout=_TIMEOUT) as client:
        server = build(lambda ctx: (client, {}), metadata.version("todo-service"))
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
