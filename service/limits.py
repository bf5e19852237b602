"""The rate limit as one request meets it. Each identified request owes one step of its
caller's limit (TODO_RATE_LIMIT); the Database takes it in the request's first round
trip to PostgreSQL, or on its own when a request is answered before reaching the store
(a 422); what the step answered comes back here, and the HTTP layer says it in the
RateLimit headers. Nothing here outlives the request: the state is in PostgreSQL."""

import uuid
from contextvars import ContextVar, Token
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Allowance:
    """What a step left the caller: `remaining` requests now, `reset` seconds until
    one more."""

    remaining: int
    reset: int


_owed: ContextVar[uuid.UUID | None] = ContextVar("rate_limit_owed", default=None)
_allowance: ContextVar[Allowance | None] = ContextVar("rate_limit_allowance", default=None)
# Whom the limit refused: the access log names them (never a metric label: unbounded).
_refused: ContextVar[uuid.UUID | None] = ContextVar("rate_limit_refused", default=None)


def owe(user: uuid.UUID) -> None:
    """`user` is identified: this request owes a step of their limit."""
    _owed.set(user)


def owed() -> uuid.UUID | None:
    return _owed.get()


def take(user: uuid.UUID | None) -> bool:
    """Whether a statement sent for `user` should carry the step (the first one does)."""
    if user is None or _owed.get() != user:
        return False
    _owed.set(None)
    return True


def refuse(user: uuid.UUID) -> None:
    _refused.set(user)


def refused() -> uuid.UUID | None:
    """The caller this request's step refused, if it was refused."""
    return _refused.get()


def record(allowance: Allowance) -> None:
    _allowance.set(allowance)


def allowance() -> Allowance | None:
    return _allowance.get()


def begin() -> tuple[Token[uuid.UUID | None], Token[Allowance | None]]:
    return _owed.set(None), _allowance.set(None)


def end(tokens: tuple[Token[uuid.UUID | None], Token[Allowance | None]]) -> None:
    _owed.reset(tokens[0])
    _allowance.reset(tokens[1])
