"""ASGI middleware: CORS for the listed browser origins only, the request id and
access log around everything else, and the body limit enforced before a byte of an
oversized body is read."""

import logging
import re
import time
import uuid
from collections.abc import Sequence

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import draining, limits, telemetry
from service.errors import InternalError, PayloadTooLarge, problem_response
from service.logs import request_id
from service.settings import RatePolicy

access_log = logging.getLogger("service.access")
log = logging.getLogger("service")

_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


# What a browser frontend may send and read (FR-106). No cookies: a bearer token.
CORS_METHODS = ("GET", "POST", "PATCH", "DELETE")
CORS_REQUEST_HEADERS = (
    "Authorization",
    "X-User-ID",
    "Content-Type",
    "If-Match",
    "If-None-Match",
    "Idempotency-Key",
    "X-Request-ID",
)
CORS_EXPOSED_HEADERS = (
    "Location",
    "ETag",
    "Link",
    "Retry-After",
    "Idempotent-Replayed",
    "X-Request-ID",
)
# ... and, with TODO_RATE_LIMIT set, what is left of the caller's limit.
RATE_LIMIT_HEADERS = ("RateLimit", "RateLimit-Policy")


class ListedOriginsOnly:
    """Starlette's CORSMiddleware, reached only by requests from a listed origin: on
    its own it answers an unlisted origin's preflight with 400 and CORS headers, and
    adds its exposed headers to every response. An unlisted origin here gets no CORS
    header at all; its preflight is a request like any other (405)."""

    def __init__(self, app: ASGIApp, origins: Sequence[str], rate_limited: bool) -> None:
        self.app = app
        self.origins = {origin.encode("latin-1") for origin in origins}
        exposed = CORS_EXPOSED_HEADERS + (RATE_LIMIT_HEADERS if rate_limited else ())
        self.cors = CORSMiddleware(
            app,
            allow_origins=list(origins),
            allow_methods=CORS_METHODS,
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=exposed,
            allow_credentials=False,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            origins = [value for key, value in scope["headers"] if key == b"origin"]
            if len(origins) == 1 and origins[0] in self.origins:
                await self.cors(scope, receive, send)
                return
        await self.app(scope, receive, send)


class RequestContext:
    """Echoes a sane `X-Request-ID` or makes one, logs one line per request and tells
    telemetry of it, answers HEAD with GET's headers and no body, closes the connection
    after each answer while the process drains (service/draining.py), and is the last
    resort that turns anything unexpected into a bare 500 problem."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id")
        rid = given if given and _CLIENT_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        token = request_id.set(rid)
        status = 0
        started = time.perf_counter()
        heard = telemetry.listener
        observed = heard.request_started(scope)
        head = scope["method"] == "HEAD"

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
                if draining.started.is_set():
                    message["headers"].append((b"connection", b"close"))
            elif head:
                message = {**message, "body": b""}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error")
            if status:
                raise
            error = InternalError("Something went wrong on our side.")
            await problem_response(error)(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path_format", None)
            said = {
                "method": scope["method"],
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
            }
            refused = limits.refused()
            if refused is not None:
                # Who the rate limit refused: the one way to find them (docs/operations.md).
                said["caller"] = str(refused)
            access_log.info("request", extra=said)
            heard.request_finished(observed, scope["method"], route, status, seconds)
            request_id.reset(token)


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"The request body is over the limit of {self.limit} bytes.")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await problem_response(self._too_large())(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise self._too_large()
            return message

        await self.app(scope, limited_receive, send)


class RateLimitHeaders:
    """With TODO_RATE_LIMIT: every answer to an identified caller says the policy and
    what is left of it, as draft-ietf-httpapi-ratelimit-headers-11 spells them
    (`RateLimit-Policy: "user";q=600;w=60`, `RateLimit: "user";r=599;t=1`)."""

    def __init__(self, app: ASGIApp, policy: RatePolicy) -> None:
        self.app = app
        self.policy = f'"user";q={policy.quota};w={policy.window}'.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tokens = limits.begin()

        async def send_with_limit(message: Message) -> None:
            allowance = limits.allowance()
            if message["type"] == "http.response.start" and allowance is not None:
                said = f'"user";r={allowance.remaining};t={allowance.reset}'.encode()
                message = {
                    **message,
                    "headers": [
                        *message.get("headers", []),
                        (b"ratelimit-policy", self.policy),
                        (b"ratelimit", said),
                    ],
                }
            await send(message)

        try:
            await self.app(scope, receive, send_with_limit)
        finally:
            limits.end(tokens)
