"""create_app(): the routes, the one set of error handlers, and the middleware."""

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Match

from service import limits, telemetry
from service.db import Database
from service.errors import (
    InternalError,
    MethodNotAllowed,
    NotFound,
    RateLimited,
    ServiceError,
    ServiceUnavailable,
    problem_response,
)
from service.middleware import BodyLimit, ListedOriginsOnly, RateLimitHeaders, RequestContext
from service.routes import bulk, docs, health, todos
from service.settings import Settings, get_settings

BODY_LIMIT = 64 * 1024

log = logging.getLogger("service")


ROUTERS = (todos.router, bulk.router, health.router, docs.router)


def _allowed_methods(request: Request) -> list[str]:
    probe = {**request.scope, "method": ""}
    methods: set[str] = set()
    for router in ROUTERS:
        for route in router.routes:
            if isinstance(route, APIRoute) and route.matches(probe)[0] is not Match.NONE:
                methods |= route.methods or set()
    return sorted(methods)


def _install_error_handlers(app: FastAPI, db: Database) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, error: ServiceError) -> Response:
        if error.status < 500 and limits.owed() is not None:
            # Refused before it reached the store (a 422): still a step of the caller's
            # limit, which a caller over it hears instead.
            try:
                await db.settle_rate_limit()
            except RateLimited as limited:
                error = limited
            except ServiceUnavailable:
                pass  # the limit cannot be asked; the refusal stands as it is
        return problem_response(error)

    @app.exception_handler(HTTPException)
    async def routing_error(request: Request, error: HTTPException) -> Response:
        if error.status_code == 405:
            allow = _allowed_methods(request)
            return problem_response(
                MethodNotAllowed(
                    f"{request.method} is not allowed here; use {', '.join(allow)}.", allow=allow
                )
            )
        if error.status_code == 404:
            return problem_response(NotFound(f"No resource lives at {request.url.path}."))
        log.error("unexpected HTTP error %s", error.status_code)
        return problem_response(InternalError("Something went wrong on our side."))


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    """Builds the app. Without `database` it connects to NEON_DATABASE_URL."""
    settings = settings or get_settings()
    db = database or Database(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as running:
            for part in app.state.running:
                await running.enter_async_context(part())
            yield
        db.close()
        telemetry.listener.close()

    # The contract is the hand-written openapi.yaml; FastAPI's generated one is off.
    app = FastAPI(
        title="Todo Service API",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        # The service reports its own spans and metrics (service/telemetry.py); FastAPI's
        # would double them whenever a global provider is set, and cost every request a
        # check of the providers when none is.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.db = db
    # The one thing identity needs to know: None is `header` mode. PyJWT and its
    # cryptography are loaded only in `jwt` mode (bench/results/findings.md).
    app.state.token_verifier = None
    if settings.auth_mode == "jwt":
        from service.tokens import TokenVerifier

        app.state.token_verifier = TokenVerifier(settings)
    for router in ROUTERS:
        # The routes as they are: FastAPI's include_router keeps an included router
        # live, re-checking its routes on every request (bench/results/findings.md),
        # and these routes never change after this.
        app.router.routes.extend(router.routes)
    # What runs as long as the app does (the MCP endpoint's sessions, when on).
    app.state.running = []
    if settings.mcp == "on":
        from service.mcp.endpoint import mount

        app.state.running.append(mount(app, settings).running)
    _install_error_handlers(app, db)
    # Outermost last. CORS is outermost so that even the last-resort 500 can be read by
    # a browser frontend.
    app.add_middleware(BodyLimit, limit=BODY_LIMIT)
    if settings.rate_limit is not None:
        app.add_middleware(RateLimitHeaders, policy=settings.rate_limit)
    app.add_middleware(RequestContext)
    if settings.cors_origin_list:
        app.add_middleware(
            ListedOriginsOnly,
            origins=settings.cors_origin_list,
            rate_limited=settings.rate_limit is not None,
        )
    return app
