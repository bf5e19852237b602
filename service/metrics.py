"""A worker's Prometheus metrics (TODO_METRICS_PORT), with prometheus-client in its
multiprocess mode: each worker writes its figures to files in PROMETHEUS_MULTIPROC_DIR,
which `serve` wipes before the workers start and its listener reads at every scrape
(service/metrics_listener.py). Imported only when metrics are on.

The names are the OpenTelemetry semantic conventions' (HTTP and database client), in
Prometheus' spelling; the service's own are `todo_*`. Every label has a bounded set of
values: route templates, never paths; methods outside HTTP's as `_OTHER`; no user id,
todo id or token, anywhere."""

import os
from collections.abc import MutableMapping
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, values

from service.telemetry import Listener

_process = os.getpid()


def _this_process() -> int:
    return _process


def _forked() -> None:
    global _process
    _process = os.getpid()


# Every write of a value asks which process it is in, to find its file; by default that
# is a getpid(2) per write, eight per get-by-id. A worker's pid is known once it starts
# (and again in the child of any fork): measured in a worker, a get's metrics cost about
# 1.5 us less of its ~17.
if values.ValueClass is not values.MutexValue:  # the library's multiprocess mode
    os.register_at_fork(after_in_child=_forked)
    values.ValueClass = values.MultiProcessValue(_this_process)  # type: ignore[no-untyped-call]

# The HTTP semantic conventions' advice for http.server.request.duration.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
# The database client conventions' advice for db.client.operation.duration; a pool wait
# is mostly nothing, so its buckets start lower.
DB_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10)
WAIT_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10)
METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "QUERY"}
)

REQUEST_DURATION = Histogram(
    "http_server_request_duration_seconds",
    "Duration of HTTP server requests.",
    ("http_request_method", "http_route", "http_response_status_code", "url_scheme"),
    buckets=HTTP_BUCKETS,
)
ACTIVE_REQUESTS = Gauge(
    "http_server_active_requests",
    "Number of active HTTP server requests.",
    multiprocess_mode="livesum",
)
CONNECTION_WAIT = Histogram(
    "db_client_connection_wait_time_seconds",
    "The time it took to obtain an open connection from the pool.",
    buckets=WAIT_BUCKETS,
)
STATEMENT_DURATION = Histogram(
    "db_client_operation_duration_seconds",
    "Duration of database client operations (the statement's name in the code; its"
    " wait for a connection included).",
    ("db_operation_name", "error_type"),
    buckets=DB_BUCKETS,
)
UNAVAILABLE = Counter(
    "todo_unavailable_responses",
    "503 answers, by what was out of reach: database, pool or key_server.",
    ("cause",),
)
QUOTA_REFUSALS = Counter("todo_quota_refusals", "Creates refused by the quota of todos.")
RATE_LIMIT_REFUSALS = Counter("todo_rate_limit_refusals", "Requests refused by the rate limit.")
TOKEN_CHECKS = Counter(
    "todo_token_verifications",
    "Bearer tokens checked, by outcome: valid, or the code of the refusal.",
    ("outcome",),
)
KEY_FETCHES = Counter(
    "todo_key_fetches",
    "Fetches of the auth server's keys (JWKS), by outcome: ok, failed, no_usable_key.",
    ("outcome",),
)


class Metrics(Listener):
    """Counts what the service reports."""

    def __init__(self, names: dict[str, str]) -> None:
        # A statement's label is its name in the code (bounded), never its text.
        self._names = names
        # The labelled children, found once: `labels()` validates its values on every call.
        self._durations: dict[tuple[str, str, int, str], Any] = {}
        self._statements: dict[tuple[str, bool], Any] = {}

    def request_started(self, scope: MutableMapping[str, Any]) -> Any:
        ACTIVE_REQUESTS.inc()
        return scope.get("scheme", "http")

    def request_finished(
        self, started: Any, method: str, route: str | None, status: int, seconds: float
    ) -> None:
        ACTIVE_REQUESTS.dec()
        # Every part of the key is bounded (a caller's own method is `_OTHER`), so is this.
        key = (method if method in METHODS else "_OTHER", route or "", status, started)
        child = self._durations.get(key)
        if child is None:
            child = self._durations[key] = REQUEST_DURATION.labels(
                key[0], key[1], str(status), started
            )
        child.observe(seconds)

    def connection_waited(self, seconds: float) -> None:
        CONNECTION_WAIT.observe(seconds)

    def statement_started(self, statement: str) -> Any:
        return self._names.get(statement, "other")

    def statement_finished(self, started: Any, seconds: float, failed: bool) -> None:
        key = (started, failed)
        child = self._statements.get(key)
        if child is None:
            child = self._statements[key] = STATEMENT_DURATION.labels(
                started, "error" if failed else ""
            )
        child.observe(seconds)

    def problem(self, code: str, cause: str | None) -> None:
        if code == "SERVICE_UNAVAILABLE":
            UNAVAILABLE.labels(cause or "database").inc()
        elif code == "QUOTA_EXCEEDED":
            QUOTA_REFUSALS.inc()
        elif code == "RATE_LIMITED":
            RATE_LIMIT_REFUSALS.inc()

    def token_checked(self, outcome: str) -> None:
        TOKEN_CHECKS.labels(outcome).inc()

    def keys_fetched(self, outcome: str) -> None:
        KEY_FETCHES.labels(outcome).inc()
