"""One MCP server of the contract's tools, whichever way it is served: `reach` gives, for
each call, the HTTP client that reaches the API, acting for the agent's user, and the
headers the call carries on (stdio: a deployment's URL and the configured user; /mcp:
this service itself, acting for /mcp's caller). Arguments are checked here only as far
as HTTP can carry them: the API checks them, and its refusal is the tool's error."""

import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx2
import mcp_types as types
from mcp.server import Server, ServerRequestContext

from service.mcp.tools import Call, answered, call, operations, refused


class TokenCommandFailed(Exception):
    """stdio's --token-command gave no token: the call cannot act for anyone."""


# The client that reaches the API for the agent's user, and the headers a call carries on.
Reach = Callable[
    [ServerRequestContext[Any, Any]],
    AbstractAsyncContextManager[tuple[httpx2.AsyncClient, Mapping[str, str]]],
]
# A tool call is an HTTP request of its own, which the API logs; the client need not.
logging.getLogger("httpx2").setLevel(logging.WARNING)
INSTRUCTIONS = (
    "The caller's todos: list them (a page at a time with limit and cursor), get, create,"
    " update, complete (update with is_completed) and delete them. Pass create_todo an"
    " idempotency_key to make a retry safe. A refusal names its code (VALIDATION_ERROR,"
    " NOT_FOUND, ...) and what to fix."
)


def build(reach: Reach, version: str) -> Server[Any]:
    tools = operations()

    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[operation.tool for operation in tools.values()])

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        operation = tools.get(params.name)
        if operation is None:
            return refused("NOT_FOUND", f"no tool {params.name!r} (the tools: {', '.join(tools)})")
        sent = call(operation, params.arguments or {})
        if not isinstance(sent, Call):
            return sent
        try:
            async with reach(ctx) as (client, carried):
                response = await client.request(
                    sent.method,
                    sent.path,
                    params=sent.query or None,
                    headers={**carried, **sent.headers},
                    content=sent.content,
                )
        except httpx2.TransportError as error:
            return refused(
                "SERVICE_UNAVAILABLE", f"the todo service did not answer ({type(error).__name__})"
            )
        except TokenCommandFailed as failed:
            return refused("TOKEN_COMMAND_FAILED", str(failed))
        return answered(operation, response)

    return Server(
        "todo-service",
        version=version,
        title="Todos",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )
