"""The kit's users: fresh random ids in header mode; in bearer mode, tokens from a
command or from users the kit signs up with Better Auth. Each is proven before any
check runs (the preflight)."""

import base64
import json
import shlex
import subprocess
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

# The kit's users, by the role they play in the checks: main and alt own todos and try
# each other's, third holds long lists, fresh never writes (its list stays empty).
NAMES = ("main", "alt", "third", "fresh")


class SignInFailed(Exception):
    """A user could not be had: what was asked, and what came back."""


@dataclass
class User:
    name: str
    # In header mode the id the caller names; in bearer mode the token.
    user_header: str | None = None
    token: str | None = None

    def identity(self) -> list[tuple[str, str]]:
        if self.token is not None:
            return [("Authorization", f"Bearer {self.token}")]
        assert self.user_header is not None
        return [("X-User-ID", self.user_header)]

    def claims(self) -> dict[str, Any] | None:
        """A JWT's claims, read without verifying (the target verifies): which user
        the token names, for FR-105's derived user id."""
        if self.token is None or self.token.count(".") != 2:
            return None
        payload = self.token.split(".")[1]
        try:
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except ValueError:
            return None
        return claims if isinstance(claims, dict) else None

    @property
    def expected_id(self) -> str | None:
        """The `user_id` this user's todos carry, when it can be known from outside."""
        if self.user_header is not None:
            return self.user_header.lower()
        claims = self.claims()
        if claims is None or not isinstance(claims.get("sub"), str):
            return None
        issuer = claims.get("iss") if isinstance(claims.get("iss"), str) else ""
        namespace = uuid.uuid5(uuid.NAMESPACE_URL, str(issuer))
        return str(uuid.uuid5(namespace, claims["sub"]))


def header_users() -> list[User]:
    return [User(name, user_header=str(uuid.uuid4())) for name in NAMES]


def command_users(command: str) -> list[User]:
    """`command NAME` prints NAME's bearer token."""
    users = []
    for name in NAMES:
        try:
            done = subprocess.run(
                [*shlex.split(command), name],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise SignInFailed(f"user {name}: `{command} {name}`: {error}") from None
        token = done.stdout.strip()
        if done.returncode != 0 or not token:
            raise SignInFailed(
                f"user {name}: `{command} {name}` exited {done.returncode}"
                f" and printed {len(token)} characters; stderr: {done.stderr.strip()[:300]}"
            )
        users.append(User(name, token=token))
    return users


def better_auth_users(base: str, run_id: str) -> list[User]:
    """Fresh users signed up through Better Auth's HTTP API (email and password), each
    token taken from /api/auth/token with the session cookie."""
    base = base.rstrip("/").removesuffix("/api/auth")
    users = []
    for name in NAMES:
        try:
            users.append(User(name, token=_signed_up(base, run_id, name)))
        except httpx.TransportError as error:
            raise SignInFailed(
                f"user {name}: Better Auth at {base} did not answer: {error}"
            ) from None
    return users


def _signed_up(base: str, run_id: str, name: str) -> str:
    with httpx.Client(base_url=base, timeout=30) as auth:
        email = f"todo-conformance-{run_id}-{name}@example.com"
        signed = auth.post(
            "/api/auth/sign-up/email",
            json={"email": email, "password": f"pw-{uuid.uuid4()}", "name": name},
        )
        if signed.status_code != 200:
            raise SignInFailed(
                f"user {name}: POST {base}/api/auth/sign-up/email answered"
                f" {signed.status_code}: {signed.text[:300]}"
            )
        answered = auth.get("/api/auth/token")
        token = answered.json().get("token") if answered.status_code == 200 else None
        if not isinstance(token, str) or not token:
            raise SignInFailed(
                f"user {name}: GET {base}/api/auth/token answered"
                f" {answered.status_code}: {answered.text[:300]}"
            )
        return token
