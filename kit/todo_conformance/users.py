"""The kit's users: fresh random ids in header mode; in bearer mode, tokens from a
command or from users the kit signs up with Better Auth. Each is proven before any
check runs (the preflight)."""

import base64
import json
import shlex
import subprocess
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

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


@dataclass
class Account:
    """An account the kit signed up with Better Auth: its session, to delete it again."""

    email: str
    password: str
    cookies: httpx.Cookies


@dataclass
class Accounts:
    """The accounts a run signed up with Better Auth, deleted at its end where the server
    allows it (Better Auth's `POST /api/auth/delete-user`, on when the server sets
    `user.deleteUser.enabled`); the ones it could not delete are counted and listed by
    email in the cleanup line, never kept in silence. A kept account holds no todo."""

    base: str
    made: list[Account] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    why: list[str] = field(default_factory=list)

    @property
    def deleted(self) -> int:
        return len(self.made) - len(self.kept)

    def delete(self) -> None:
        for account in self.made:
            refused = self._deleted(account)
            if refused is not None:
                self.kept.append(account.email)
                if refused not in self.why:
                    self.why.append(refused)

    def _deleted(self, account: Account) -> str | None:
        """None when the account is gone, else what Better Auth answered."""
        with httpx.Client(base_url=self.base, timeout=30, cookies=account.cookies) as auth:
            try:
                # With a session cookie, Better Auth wants an origin it trusts: its own.
                answer = auth.post(
                    "/api/auth/delete-user",
                    json={"password": account.password},
                    headers={"Origin": _origin(self.base)},
                )
            except httpx.TransportError as error:
                return f"delete-user: {error}"
        try:
            body = answer.json()
        except ValueError:  # Better Auth's 404 for a disabled endpoint has no body
            body = None
        message = body.get("message") if isinstance(body, dict) else None
        if answer.status_code == 200 and message == "User deleted":
            return None
        if answer.status_code == 404:
            return "the server does not allow delete-user: set user.deleteUser.enabled"
        return f"delete-user answered {answer.status_code}: {(message or answer.text)[:120]}"

    def line(self) -> str:
        said = f"accounts: made {len(self.made)}, deleted {self.deleted}"
        if self.kept:
            said += f", kept {len(self.kept)} ({'; '.join(self.why)}): {', '.join(self.kept)}"
        return said

    def shown(self) -> dict[str, Any]:
        return {"made": len(self.made), "deleted": self.deleted, "kept": self.kept, "why": self.why}


def better_auth_users(accounts: Accounts, run_id: str) -> list[User]:
    """Fresh users signed up through Better Auth's HTTP API (email and password), each
    token taken from /api/auth/token with the session cookie; each account is in
    `accounts` as soon as it exists, for the end of the run to delete."""
    users = []
    for name in NAMES:
        try:
            users.append(User(name, token=_signed_up(accounts, run_id, name)))
        except httpx.TransportError as error:
            raise SignInFailed(
                f"user {name}: Better Auth at {accounts.base} did not answer: {error}"
            ) from None
    return users


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def better_auth_base(url: str) -> str:
    """Better Auth's base URL, given it or its /api/auth."""
    return url.rstrip("/").removesuffix("/api/auth")


def _signed_up(accounts: Accounts, run_id: str, name: str) -> str:
    base = accounts.base
    with httpx.Client(base_url=base, timeout=30) as auth:
        email = f"todo-conformance-{run_id}-{name}@example.com"
        password = f"pw-{uuid.uuid4()}"
        signed = auth.post(
            "/api/auth/sign-up/email",
            json={"email": email, "password": password, "name": name},
        )
        if signed.status_code != 200:
            raise SignInFailed(
                f"user {name}: POST {base}/api/auth/sign-up/email answered"
                f" {signed.status_code}: {signed.text[:300]}"
            )
        accounts.made.append(Account(email, password, httpx.Cookies(auth.cookies)))
        answered = auth.get("/api/auth/token")
        token = answered.json().get("token") if answered.status_code == 200 else None
        if not isinstance(token, str) or not token:
            raise SignInFailed(
                f"user {name}: GET {base}/api/auth/token answered"
                f" {answered.status_code}: {answered.text[:300]}"
            )
        return token
