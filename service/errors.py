"""Typed domain errors and the one place that turns them into problem details."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson
from starlette.responses import Response

from service import telemetry

PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


@dataclass
class ServiceError(Exception):
    """Base of every error the service answers on purpose."""

    detail: str
    status: ClassVar[int] = 500
    code: ClassVar[str] = "INTERNAL_ERROR"
    title: ClassVar[str] = "Internal error"
    slug: ClassVar[str] = "internal-error"

    def headers(self) -> dict[str, str]:
        return {}

    def body(self) -> dict[str, Any]:
        return {
            "type": f"/problems/{self.slug}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }


class InternalError(ServiceError):
    pass


class MissingUserContext(ServiceError):
    status = 400
    code = "MISSING_USER_CONTEXT"
    title = "Missing user context"
    slug = "missing-user-context"


class InvalidUserContext(ServiceError):
    status = 400
    code = "INVALID_USER_CONTEXT"
    title = "Invalid user context"
    slug = "invalid-user-context"


class Unauthenticated(ServiceError):
    """401 with an RFC 6750 challenge, which names the error only when a token was sent."""

    status = 401
    bearer_error: ClassVar[str | None] = "invalid_token"

    def headers(self) -> dict[str, str]:
        if self.bearer_error is None:
            return {"WWW-Authenticate": "Bearer"}
        return {"WWW-Authenticate": f'Bearer error="{self.bearer_error}"'}


class MissingToken(Unauthenticated):
    bearer_error = None
    code = "MISSING_TOKEN"
    title = "Missing token"
    slug = "missing-token"


class InvalidToken(Unauthenticated):
    code = "INVALID_TOKEN"
    title = "Invalid token"
    slug = "invalid-token"


class TokenExpired(Unauthenticated):
    code = "TOKEN_EXPIRED"
    title = "Token expired"
    slug = "token-expired"


class NotFound(ServiceError):
    status = 404
    code = "NOT_FOUND"
    title = "Not found"
    slug = "not-found"


@dataclass
class MethodNotAllowed(ServiceError):
    allow: Sequence[str] = ()
    status = 405
    code = "METHOD_NOT_ALLOWED"
    title = "Method not allowed"
    slug = "method-not-allowed"

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allow)}


class PreconditionFailed(ServiceError):
    status = 412
    code = "PRECONDITION_FAILED"
    title = "Precondition failed"
    slug = "precondition-failed"


@dataclass
class QuotaExceeded(ServiceError):
    limit: int = 0
    status = 409
    code = "QUOTA_EXCEEDED"
    title = "Quota exceeded"
    slug = "quota-exceeded"

    def body(self) -> dict[str, Any]:
        return {**super().body(), "limit": self.limit}


@dataclass
class RateLimited(ServiceError):
    retry_after: int = 1
    status = 429
    code = "RATE_LIMITED"
    title = "Rate limited"
    slug = "rate-limited"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class IdempotencyKeyReused(ServiceError):
    status = 422
    code = "IDEMPOTENCY_KEY_REUSED"
    title = "Idempotency key reused"
    slug = "idempotency-key-reused"


class PayloadTooLarge(ServiceError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"
    title = "Payload too large"
    slug = "payload-too-large"


class UnsupportedMediaType(ServiceError):
    status = 415
    code = "UNSUPPORTED_MEDIA_TYPE"
    title = "Unsupported media type"
    slug = "unsupported-media-type"


@dataclass
class ValidationFailed(ServiceError):
    errors: list[FieldError] = field(default_factory=list)
    status = 422
    code = "VALIDATION_ERROR"
    title = "Validation error"
    slug = "validation-error"

    def body(self) -> dict[str, Any]:
        return {
            **super().body(),
            "errors": [{"field": e.field, "message": e.message} for e in self.errors],
        }


@dataclass
class ServiceUnavailable(ServiceError):
    retry_after: int = 2
    # Why, one of service.metrics.CAUSES: metrics count by it.
    cause: str = "unreachable"
    status = 503
    code = "SERVICE_UNAVAILABLE"
    title = "Service unavailable"
    slug = "service-unavailable"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


# Bounds on what a refusal echoes of the request (FR-153): a body of 64 KiB can name
# thousands of members, each as long as it likes.
ERRORS_LISTED = 100
NAME_ECHOED = 200
MESSAGE_ECHOED = 500


def _cut(text: str, most: int) -> str:
    return text if len(text) <= most else text[: most - 1] + "\u2026"


def validation_failed(errors: list[FieldError]) -> ValidationFailed:
    count = len(errors)
    noun = "field" if count == 1 else "fields"
    shown = [
        FieldError(_cut(e.field, NAME_ECHOED), _cut(e.message, MESSAGE_ECHOED))
        for e in errors[:ERRORS_LISTED]
    ]
    listed = "; ".join(f"{e.field}: {e.message}" for e in shown)
    more = f"; and {count - len(shown)} more" if count > len(shown) else ""
    return ValidationFailed(
        f"The request has {count} invalid {noun}: {listed}{more}.", errors=shown
    )


def problem_response(error: ServiceError) -> Response:
    telemetry.listener.problem(error.code, getattr(error, "cause", None))
    return Response(
        content=orjson.dumps(error.body()),
        status_code=error.status,
        headers=error.headers(),
        media_type=PROBLEM_JSON,
    )
