"""Verified identity from outside (1.1): what the contract declares, the tokens a kit can
make without the signing key, and the user id a token's owner gets."""

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from todo_conformance.checks import (
    TODOS,
    Broken,
    Context,
    check,
    expect,
    expect_problem,
    header,
    op,
    scheme,
)
from todo_conformance.target import Exchange


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _token(header: dict[str, Any], claims: dict[str, Any], signature: bytes) -> str:
    def encoded(part: dict[str, Any]) -> str:
        return _b64(json.dumps(part, separators=(",", ":")).encode())

    return f"{encoded(header)}.{encoded(claims)}.{_b64(signature)}"


def _claims(ctx: Context) -> dict[str, Any]:
    claims = ctx.main.claims()
    if claims is None:
        # A token that is no JWT: the kit makes its hostile tokens from plain claims.
        return {"sub": "todo-conformance", "exp": int(time.time()) + 600}
    return claims


def _with_token(ctx: Context, token: str) -> Exchange:
    return ctx.send("GET", TODOS, None, headers=[("Authorization", f"Bearer {token}")])


def _challenge(answer: Exchange, error: bool, what: str) -> None:
    challenge = answer.header("www-authenticate") or ""
    expect(
        challenge.lower().startswith("bearer"), f"{what}: WWW-Authenticate is {challenge!r}", answer
    )
    named = 'error="invalid_token"' in challenge
    expect(
        named == error,
        f"{what}: WWW-Authenticate {challenge!r} "
        + ("lacks" if error else "has")
        + ' error="invalid_token"',
        answer,
    )


@check(
    "FR-102",
    clauses=(scheme("bearerAuth"), op("GET", TODOS, 401)),
    since="1.1",
    modes=("bearer",),
    writes=False,
)
def tokens_of_no_or_a_foreign_algorithm_are_refused(ctx: Context) -> None:
    """bearer mode: a token signed with `none`, or with HS256 under a key of the kit's own, is 401
    INVALID_TOKEN"""
    claims = _claims(ctx)
    hostile = {
        "alg none": _token({"alg": "none", "typ": "JWT"}, claims, b""),
        "HS256 with another key": _token(
            {"alg": "HS256", "typ": "JWT"},
            claims,
            hmac.new(b"not the target's key" * 2, b"x", hashlib.sha256).digest(),
        ),
    }
    for what, token in hostile.items():
        answer = _with_token(ctx, token)
        expect_problem(answer, 401, "INVALID_TOKEN", f"a token with {what}")


@check(
    "FR-103",
    clauses=(op("GET", TODOS, 401), header("WWWAuthenticate")),
    since="1.1",
    modes=("bearer",),
    writes=False,
)
def a_missing_or_bad_token_is_401_with_a_challenge(ctx: Context) -> None:
    """bearer mode: no token is 401 MISSING_TOKEN; a tampered or malformed one is 401 INVALID_TOKEN;
    each with WWW-Authenticate: Bearer"""
    for headers, what in (
        ([], "no Authorization"),
        ([("Authorization", "")], "an empty Authorization"),
        ([("Authorization", "Basic dXNlcjpwdw==")], "a Basic credential"),
    ):
        answer = ctx.send("GET", TODOS, None, headers=headers)
        expect_problem(answer, 401, "MISSING_TOKEN", what)
        _challenge(answer, error=False, what=what)
    token = ctx.main.token or ""
    head, _, rest = token.partition(".")
    tampered = head + "." + ("A" if rest[:1] != "A" else "B") + rest[1:]
    for bad, what in (
        (tampered, "a tampered token"),
        ("not.a.jwt", "a malformed token"),
        ("abc", "a token of one part"),
    ):
        answer = _with_token(ctx, bad)
        expect_problem(answer, 401, "INVALID_TOKEN", what)
        _challenge(answer, error=True, what=what)


@check("FR-105", clauses=(scheme("bearerAuth"),), since="1.1", modes=("bearer",))
def a_tokens_owner_gets_the_derived_user_id(ctx: Context) -> None:
    """bearer mode: a token's todos carry user_id uuid5(uuid5(NAMESPACE_URL, iss), sub), the same on
    every request"""
    expected = ctx.main.expected_id
    if expected is None:
        raise Broken("the main user's token is no JWT with a subject: the kit cannot derive its id")
    made = ctx.create(ctx.main, "whose")
    expect(made["user_id"] == expected, f"user_id is {made['user_id']}, not {expected}")
    other = ctx.create(ctx.alt, "theirs")
    expect(other["user_id"] != made["user_id"], "two users' todos carry the same user_id")


@check("FR-107", clauses=(scheme("bearerAuth"), scheme("userIdHeader")), since="1.1", writes=False)
def the_contract_declares_both_ways_in(ctx: Context) -> None:
    """The served contract declares a bearer JWT security scheme and the X-User-ID header of header
    mode"""
    document = ctx.contract.document
    schemes = document.get("components", {}).get("securitySchemes", {})
    bearer = [
        s
        for s in schemes.values()
        if s.get("type") == "http" and str(s.get("scheme", "")).lower() == "bearer"
    ]
    header = [
        s
        for s in schemes.values()
        if s.get("type") == "apiKey"
        and s.get("in") == "header"
        and str(s.get("name", "")).lower() == "x-user-id"
    ]
    expect(bool(bearer), "no bearer security scheme is declared")
    expect(bool(header), "no X-User-ID security scheme is declared")
    declared = {tuple(sorted(entry)) for entry in document.get("security", [])}
    expect(len(declared) >= 2, "the contract's security does not offer both ways in")
