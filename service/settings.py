"""Every environment variable the service reads, typed, with its default."""

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

# HS256 keys shorter than the hash's output are brute-forceable (RFC 7518 §3.2).
JWT_SECRET_MIN_BYTES = 32
# The contract's bound on how many todos a user may be allowed (Problem.limit).
QUOTA_MAX = 1_000_000
_RATE = re.compile(r"\s*([0-9]{1,9})\s*/\s*([0-9]{1,9})\s*")
# The samplers the OpenTelemetry SDK knows by name (in any case), and those of them that
# read OTEL_TRACES_SAMPLER_ARG, as a ratio.
RATIO_SAMPLERS = frozenset({"traceidratio", "parentbased_traceidratio"})
SAMPLERS = RATIO_SAMPLERS | {
    "always_on",
    "always_off",
    "parentbased_always_on",
    "parentbased_always_off",
}
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# A shutdown that waits longer than this for load balancers is a mistake, not a choice.
SHUTDOWN_GRACE_MAX = 600
PREFIX = "TODO_"
# TODO_* variables read by the project's other programs, never by the service: `serve`
# sets TODO_RUN_DIR for its workers; `todo-service mcp` reads its user's credentials;
# the conformance kit, installed beside it, reads TODO_CONFORMANCE_*.
OTHER_PROGRAMS = frozenset({"TODO_RUN_DIR", "TODO_MCP_TOKEN", "TODO_MCP_USER_ID"})
KIT_PREFIX = "TODO_CONFORMANCE_"


@dataclass(frozen=True)
class RatePolicy:
    """`quota` requests per caller in any `window` seconds (TODO_RATE_LIMIT=quota/window)."""

    quota: int
    window: int


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_url: str | None = Field(default=None, alias="NEON_DATABASE_URL")
    direct_database_url: str | None = Field(default=None, alias="NEON_DATABASE_DIRECT_URL")
    data_dir: Path = Field(default=Path(".todo-service"), alias="TODO_DATA_DIR")

    pool_size: int = Field(default=8, ge=1, alias="TODO_DB_POOL_SIZE")
    max_overflow: int = Field(default=0, ge=0, alias="TODO_DB_MAX_OVERFLOW")
    pool_timeout: float = Field(default=5.0, gt=0, alias="TODO_DB_POOL_TIMEOUT")
    pool_recycle: int = Field(default=300, gt=0, alias="TODO_DB_POOL_RECYCLE")
    connect_timeout: int = Field(default=3, ge=1, alias="TODO_DB_CONNECT_TIMEOUT")
    statement_timeout_ms: int = Field(default=5000, ge=1, alias="TODO_DB_STATEMENT_TIMEOUT_MS")
    retry_after_seconds: int = Field(default=2, ge=1, alias="TODO_RETRY_AFTER_SECONDS")

    auth_mode: Literal["header", "jwt"] = Field(default="header", alias="TODO_AUTH_MODE")
    jwt_jwks_url: str | None = Field(default=None, alias="TODO_JWT_JWKS_URL")
    jwt_secret: SecretStr | None = Field(default=None, alias="TODO_JWT_SECRET")
    jwt_issuer: str | None = Field(default=None, alias="TODO_JWT_ISSUER")
    jwt_audience: str | None = Field(default=None, alias="TODO_JWT_AUDIENCE")
    jwt_user_claim: str = Field(default="sub", min_length=1, alias="TODO_JWT_USER_CLAIM")
    jwt_leeway_seconds: int = Field(default=30, ge=0, alias="TODO_JWT_LEEWAY_SECONDS")
    jwks_timeout_seconds: float = Field(default=3.0, gt=0, alias="TODO_JWT_JWKS_TIMEOUT_SECONDS")

    # Comma-separated exact origins; empty means no CORS headers at all.
    cors_origins: str = Field(default="", alias="TODO_CORS_ORIGINS")

    # Bounded consumption; unset, neither is checked, nor costs a statement.
    max_todos_per_user: int | None = Field(
        default=None, ge=1, le=QUOTA_MAX, alias="TODO_MAX_TODOS_PER_USER"
    )
    rate_limit: RatePolicy | None = Field(default=None, alias="TODO_RATE_LIMIT")

    metrics_port: int | None = Field(default=None, ge=1, le=65535, alias="TODO_METRICS_PORT")
    # Unset: the API's --host.
    metrics_host: str | None = Field(default=None, alias="TODO_METRICS_HOST")
    # Set, traces go there over OTLP/HTTP; the OpenTelemetry SDK reads the rest of its
    # standard variables (OTEL_SERVICE_NAME, OTEL_BSP_*, ...) itself. What it would only
    # find wrong at the first export, or take silently for its default, is checked here.
    otlp_endpoint: str | None = Field(default=None, alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    otlp_traces_endpoint: str | None = Field(
        default=None, alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    traces_sampler: str | None = Field(default=None, alias="OTEL_TRACES_SAMPLER")
    traces_sampler_arg: str | None = Field(default=None, alias="OTEL_TRACES_SAMPLER_ARG")

    # on: the contract's tools for agents at /mcp (Model Context Protocol).
    mcp: Literal["on", "off"] = Field(default="off", alias="TODO_MCP")

    log_level: str = Field(default="INFO", alias="TODO_LOG_LEVEL")

    # After SIGTERM: readiness answers 503 at once and the listener keeps accepting for
    # this long, so that a load balancer stops sending before it closes.
    shutdown_grace_seconds: float = Field(
        default=5.0, ge=0, le=SHUTDOWN_GRACE_MAX, alias="TODO_SHUTDOWN_GRACE_SECONDS"
    )

    @field_validator("log_level")
    @classmethod
    def _a_level(cls, value: str) -> str:
        if value.lower() not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value.upper()

    @field_validator("jwt_secret")
    @classmethod
    def _long_enough(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None and len(secret.get_secret_value().encode()) < JWT_SECRET_MIN_BYTES:
            raise ValueError(f"must be at least {JWT_SECRET_MIN_BYTES} bytes")
        return secret

    @field_validator("rate_limit", mode="before")
    @classmethod
    def _quota_per_window(cls, value: Any) -> RatePolicy | None:
        if value is None or isinstance(value, RatePolicy) or value == "":
            return value or None
        found = _RATE.fullmatch(str(value))
        if found is None or int(found[1]) < 1 or int(found[2]) < 1:
            raise ValueError("must be requests/seconds, such as 600/60")
        return RatePolicy(int(found[1]), int(found[2]))

    @field_validator("max_todos_per_user", "metrics_port", mode="before")
    @classmethod
    def _unset_when_blank(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator(
        "jwt_issuer",
        "jwt_audience",
        "jwt_jwks_url",
        "metrics_host",
        "otlp_endpoint",
        "otlp_traces_endpoint",
        "traces_sampler",
        "traces_sampler_arg",
    )
    @classmethod
    def _unset_when_empty(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("otlp_endpoint", "otlp_traces_endpoint")
    @classmethod
    def _collector_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 (raises on a port that is no port)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be the collector's http:// or https:// URL, with its host")
        return value

    @field_validator("traces_sampler")
    @classmethod
    def _known_sampler(cls, value: str | None) -> str | None:
        # The SDK takes any other name for its default, which traces every request.
        if value is None or value.lower() in SAMPLERS:
            return value
        raise ValueError(f"must be one of {', '.join(sorted(SAMPLERS))}")

    @field_validator("traces_sampler_arg")
    @classmethod
    def _ratio(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or "traces_sampler" not in info.data:
            return value  # unset, or the sampler is wrong already: said once
        sampler = (info.data["traces_sampler"] or "").lower()
        try:
            ratio = float(value)
        except ValueError:
            ratio = math.nan
        if not 0 <= ratio <= 1:
            raise ValueError("must be a ratio from 0 to 1, such as 0.1")
        if sampler not in RATIO_SAMPLERS:
            # The SDK would ignore it and trace every request.
            raise ValueError(
                "is read only by a ratio sampler: set OTEL_TRACES_SAMPLER to"
                " parentbased_traceidratio"
            )
        return value

    @model_validator(mode="after")
    def _one_key_source_in_jwt_mode(self) -> Self:
        if self.auth_mode == "jwt" and (self.jwt_jwks_url is None) == (self.jwt_secret is None):
            raise ValueError(
                "TODO_AUTH_MODE=jwt needs exactly one of TODO_JWT_JWKS_URL and TODO_JWT_SECRET"
            )
        return self

    @property
    def auth_mode_said(self) -> bool:
        """Whether TODO_AUTH_MODE was set, rather than taken for its default."""
        return "auth_mode" in self.model_fields_set

    @property
    def tracing(self) -> bool:
        """Traces are sent: to OTEL_EXPORTER_OTLP_ENDPOINT's /v1/traces, or to
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT itself."""
        return self.otlp_endpoint is not None or self.otlp_traces_endpoint is not None

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]


def settings_problems(error: ValidationError) -> list[str]:
    """What is wrong, variable by variable, without echoing any value (one may be a
    secret)."""
    problems = []
    for item in error.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in item["loc"]) or "settings"
        problems.append(f"{where}: {item['msg'].removeprefix('Value error, ')}")
    return problems


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A line for each TODO_* variable nothing here reads, naming the setting it is most
    likely a typo of: ignored, `TODO_AUTH_MOD=jwt` would leave the service in header
    mode, where the caller names the user."""
    known = {
        str(field.alias)
        for field in Settings.model_fields.values()
        if str(field.alias).startswith(PREFIX)
    } | OTHER_PROGRAMS
    suffixes = {name.removeprefix(PREFIX): name for name in known}
    problems = []
    for name in sorted(environ):
        upper = name.upper()  # the settings are read in any case
        if not upper.startswith(PREFIX) or upper in known or upper.startswith(KIT_PREFIX):
            continue
        close = difflib.get_close_matches(upper.removeprefix(PREFIX), suffixes, n=1)
        hint = f"did you mean {suffixes[close[0]]}?" if close else "the README lists them"
        problems.append(f"{name}: the service has no such setting; {hint}")
    return problems


@lru_cache
def get_settings() -> Settings:
    return Settings()
