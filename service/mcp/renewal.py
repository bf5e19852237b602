"""A bearer token that renews itself (FR-186), for `todo-service mcp --token-command CMD`:
CMD is run for a fresh token when the one held nears its expiry (its `exp`, read without
verifying: the API verifies) or is refused (401), as the kit's --token-command gets its
users' tokens. An httpx2 Auth: every request carries the token held; a refusal is
answered by one renewal and one retry."""

import shlex
import time
from collections.abc import AsyncGenerator

import anyio
import httpx2
import jwt

from service.mcp.server import TokenCommandFailed

# Renewed once this much of its life is left, or a third of it when shorter.
RENEW_BEFORE_SECONDS = 30.0
COMMAND_TIMEOUT_SECONDS = 60.0


def _renew_at(token: str) -> float | None:
    """When `token` should be renewed; None when it says nothing of its expiry."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    expires, issued = claims.get("exp"), claims.get("iat")
    if not isinstance(expires, int | float):
        return None
    life = expires - issued if isinstance(issued, int | float) else RENEW_BEFORE_SECONDS * 3
    return float(expires) - min(RENEW_BEFORE_SECONDS, life / 3)


class RenewedToken(httpx2.Auth):
    """`Authorization: Bearer` with `token`, renewed by `command` (when there is one)."""

    def __init__(self, token: str | None, command: str | None) -> None:
        self._token = token
        self._command = command
        self._lock = anyio.Lock()

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        token = await self._current()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401 and self._command is not None:
            fresh = await self._renewed(refused=token)
            request.headers["Authorization"] = f"Bearer {fresh}"
            yield request

    async def _current(self) -> str:
        token = self._token
        if token is None:
            return await self._renewed(refused=None)
        renew_at = _renew_at(token)
        if self._command is not None and renew_at is not None and time.time() >= renew_at:
            return await self._renewed(refused=token)
        return token

    async def _renewed(self, refused: str | None) -> str:
        """A fresh token, unless another call renewed `refused` meanwhile."""
        async with self._lock:
            if self._token is not None and self._token != refused:
                return self._token
            self._token = await self._run()
            return self._token

    async def _run(self) -> str:
        assert self._command is not None
        try:
            with anyio.fail_after(COMMAND_TIMEOUT_SECONDS):
                done = await anyio.run_process(shlex.split(self._command), check=False)
        except (OSError, TimeoutError) as error:
            raise TokenCommandFailed(f"--token-command `{self._command}`: {error}") from None
        token = done.stdout.decode(errors="replace").strip()
        if done.returncode != 0 or not token:
            said = " ".join(done.stderr.decode(errors="replace").split())[:300]
            raise TokenCommandFailed(
                f"--token-command `{self._command}` exited {done.returncode} and printed"
                f" {len(token)} characters; stderr: {said}"
            )
        return token
