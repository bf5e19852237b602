"""/mcp: the contract's tools over streamable HTTP, served by the service itself when
TODO_MCP=on (FR-183). An OAuth 2.1 resource server, as the MCP authorization
specification asks: a request is let in by the same identity function as the API
(`current_user`), with the same refusals, and in `jwt` mode only with a token meant for
/mcp itself, its audience (FR-185); a 401 also names this resource's metadata (RFC
9728), which names the authorization server. Each tool call is then sent to the API in
this very process, acting for the caller, through every middleware an API request
meets (rate limit, quota, metrics, traces): an agent is one more client. The token is
never passed on: the API would refuse it, being meant for /mcp."""

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit

import httpx2
from fastapi import FastAPI
from mcp.server import ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from service.errors import ServiceError, problem_response
from service.identity import acting_for, current_user
from service.mcp.server import build
from service.settings import Settings

# Stateless, the SDK's transport says at INFO that it ends each request's session ("Terminating
# session: None"): a line per tool call beside the access log's, saying nothing.
logging.getLogger("mcp.server.streamable_http").setLevel(logging.WARNING)

PATH = "/mcp"
METADATA = "/.well-known/oauth-protected-resource"
# What a tool call carries on to the API from the request that made it.
_CARRIED = ("traceparent", "tracestate")
_CALLER = "todo.mcp.caller"


class Mcp:
    """The /mcp endpoint (an ASGI app) and the resource's metadata."""

    route: Route

    def __init__(self, app: FastAPI, settings: Settings) -> None:
        self._api = httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://todo-service.internal"
        )
        self._authorization_server = _authorization_server(settings)
        self._public_origin = settings.public_url
        server = build(self._reach, metadata.version("todo-service"))
        # Stateless, one JSON answer a request: nothing an agent does lives in a
        # process, as nothing an API client does. Every request carries its credential,
        # so no rebinding of a browser's DNS can act for anyone.
        self._sessions = StreamableHTTPSessionManager(
            app=server,
            json_response=True,
            stateless=True,
            security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )

    @asynccontextmanager
    async def _reach(
        self, ctx: ServerRequestContext[Any, Any]
    ) -> AsyncIterator[tuple[httpx2.AsyncClient, Mapping[str, str]]]:
        request = ctx.request
        assert isinstance(request, Request), "a tool call at /mcp comes in an HTTP request"
        headers = request.headers
        with acting_for(request.scope[_CALLER]):
            yield self._api, {name: headers[name] for name in _CARRIED if name in headers}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The route the access log and the metrics name this request by: /mcp.
        scope["route"] = self.route
        request = Request(scope, receive)
        try:
            scope[_CALLER] = await current_user(request, audience=self.resource_url(scope))
        except ServiceError as refused:
            await self._refusal(refused, request)(scope, receive, send)
            return
        await self._sessions.handle_request(scope, receive, send)

    def resource_url(self, scope: Scope) -> str:
        """/mcp's URL: the audience its tokens are for (RFC 8707's resource indicator)."""
        return self._origin(scope) + PATH

    def _origin(self, scope: Scope) -> str:
        """Where clients reach this service: TODO_PUBLIC_URL, or the address the listener
        accepted this connection on (the socket's own, over plain HTTP, as `serve` listens).
        Never the request's Host, nor a proxy's X-Forwarded-* headers: the client writes
        those, and a document naming the resource must not be the client's to rename."""
        if self._public_origin is not None:
            return self._public_origin
        server = scope.get("server")
        if not server or server[1] is None:
            # A Unix socket has no address a client could use: TODO_PUBLIC_URL names one.
            return "http://localhost"
        host, port = server
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}" if port == 80 else f"http://{host}:{port}"

    def _refusal(self, refused: ServiceError, request: Request) -> Response:
        response = problem_response(refused)
        challenge = response.headers.get("www-authenticate")
        if challenge is not None:
            where = f'resource_metadata="{self._origin(request.scope)}{METADATA}{PATH}"'
            params = challenge.removeprefix("Bearer").strip()
            response.headers["www-authenticate"] = f"Bearer {where}" + (
                f", {params}" if params else ""
            )
        return response

    async def resource(self, request: Request) -> JSONResponse:
        """RFC 9728's protected resource metadata: what this resource is, and who
        issues the tokens it takes. The document at the root of the well-known path
        describes the resource named by the origin itself; the one under /mcp, /mcp's
        (RFC 9728 section 3.1: the resource's path follows the well-known name)."""
        origin = self._origin(request.scope)
        return JSONResponse(
            {
                "resource": origin + request.scope["path"].removeprefix(METADATA),
                "authorization_servers": [self._authorization_server]
                if self._authorization_server
                else [],
                "bearer_methods_supported": ["header"],
                "resource_name": "todo-service: the caller's todos, as MCP tools",
            }
        )

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with self._sessions.run():
            yield
        await self._api.aclose()


def _authorization_server(settings: Settings) -> str | None:
    """The issuer of the tokens taken (Better Auth's base URL): TODO_JWT_ISSUER, or the
    origin of the keys' URL. None in header mode, which takes no token."""
    if settings.auth_mode != "jwt":
        return None
    if settings.jwt_issuer:
        return settings.jwt_issuer
    if settings.jwt_jwks_url:
        parts = urlsplit(settings.jwt_jwks_url)
        return f"{parts.scheme}://{parts.netloc}"
    return None


def mount(app: FastAPI, settings: Settings) -> Mcp:
    """Adds /mcp and the resource's metadata to `app`; the returned Mcp runs with the
    app's lifespan (`running`)."""
    mcp = Mcp(app, settings)
    mcp.route = Route(PATH, endpoint=mcp)
    app.router.routes.extend(
        [
            mcp.route,
            Route(METADATA, endpoint=mcp.resource, methods=["GET"]),
            Route(METADATA + PATH, endpoint=mcp.resource, methods=["GET"]),
        ]
    )
    return mcp
