"""Who is calling: `current_user`, the one function every route depends on. In `header`
mode the X-User-ID header names the caller (development and tests); in `jwt` mode a
verified bearer token does, and X-User-ID is ignored. Below this module nothing knows
which: the store sees a Caller."""

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from typing import TYPE_CHECKING

from fastapi import Request
from starlette.datastructures import Headers

from service import limits, telemetry
from service.errors import (
    InvalidToken,
    InvalidUserContext,
    MissingToken,
    MissingUserContext,
    ServiceError,
)
from service.parsing import parse_uuid
from service.store import Caller, UserId

if TYPE_CHECKING:
    from service.tokens import TokenVerifier

USER_HEADER = "x-user-id"
# RFC 6750's b64token, the only thing a Bearer credential may be.
_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr](?: +(.*))?")
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


@lru_cache(maxsize=4096)
def owner_id(issuer: str, subject: str) -> UserId:
    """The user id of a token's (issuer, subject): UUIDv5 of the subject in the
    namespace that is UUIDv5 of the issuer in the URL namespace (RFC 9562), so the same
    pair is the same user everywhere and different issuers never share a user."""
    return UserId(uuid.uuid5(uuid.uuid5(uuid.NAMESPACE_URL, issuer), subject))


# A header that names the caller must come exactly once (FR-108): a proxy reading the
# first line and a service reading the last must never disagree about who is calling.


def _from_header(headers: Headers) -> Caller:
    values = headers.getlist(USER_HEADER)
    if len(values) > 1:
        raise InvalidUserContext("Send the X-User-ID header once; it came more than once.")
    if not values or not values[0]:
        raise MissingUserContext(
            "The X-User-ID header is required and must hold the caller's user id (a UUID)."
        )
    user = parse_uuid(values[0])
    if user is None:
        raise InvalidUserContext(
            "The X-User-ID header must be a UUID such as 5f0c1e1e-8a55-4c1e-9a0e-2f1b5d9c7a10."
        )
    return Caller(UserId(user))


def bearer_token(headers: Headers) -> str:
    values = headers.getlist("authorization")
    if len(values) > 1:
        raise InvalidToken("Send the Authorization header once; it came more than once.")
    scheme = _BEARER.fullmatch(values[0]) if values else None
    if scheme is None or not (scheme.group(1) or "").strip():
        raise MissingToken("Send Authorization: Bearer <token> with a token from the auth server.")
    token = scheme.group(1).strip()
    if not _B64TOKEN.fullmatch(token):
        raise InvalidToken("The bearer token is not a well-formed JWT.")
    return token


# Who a request made in this process acts for: a tool call at /mcp is sent to the API
# as /mcp's caller, already identified, whose token was meant for /mcp and not for the
# API (FR-185). Set only by `acting_for`, around such a request; no header can set it.
_acting_for: ContextVar[Caller | None] = ContextVar("acting_for", default=None)


@contextmanager
def acting_for(caller: Caller) -> Iterator[None]:
    """Requests sent within the block, to this process's app, act for `caller`."""
    token = _acting_for.set(caller)
    try:
        yield
    finally:
        _acting_for.reset(token)


async def current_user(request: Request, audience: str | None = None) -> Caller:
    """The caller, who from here on owes a step of their rate limit (if one is set). In
    `jwt` mode the token must name `audience`, when given, instead of TODO_JWT_AUDIENCE."""
    caller = _acting_for.get()
    if caller is None:
        caller = await _identified(request, audience)
    limits.owe(caller.id)
    return caller


async def _identified(request: Request, audience: str | None) -> Caller:
    verifier: TokenVerifier | None = request.app.state.token_verifier
    if verifier is None:
        return _from_header(request.headers)
    try:
        verified = await verifier.verify(bearer_token(request.headers), audience)
    except ServiceError as refused:
        telemetry.listener.token_checked(refused.code.lower())
        raise
    telemetry.listener.token_checked("valid")
    subject = verified.subject
    return Caller(owner_id(verified.issuer, subject), verified.issuer, subject)
