"""A worker's Prometheus metrics (TODO_METRICS_PORT), with prometheus-client in its
multiprocess mode: each worker writes its figures to files in PROMETHEUS_MULTIPROC_DIR,
which `serve` wipes before the workers start and its listener reads at every scrape
(service/metrics_listener.py). Imported only when metrics are on.

The names are the OpenTelemetry semantic conventions' (HTTP and database client), in
Prometheus' spelling; a process's CPU and memory keep the names of prometheus-client's
process collector, which every dashboard knows (the collector itself cannot read
another process); the service's own are `todo_*`. Every label has a bounded set of
values: route templates, never paths; methods outside HTTP's as `_OTHER`; no user id,
todo id or token, anywhere.

What is a state rather than an event (the process's CPU and memory, the pool's
connections) is sampled by a thread of each worker, every SAMPLE_SECONDS."""

import os
import threading
import time
from collections.abc import Callable, MutableMapping
from importlib import metadata, resources
from typing import Any

import yaml
from prometheus_client import Counter, Gauge, Histogram, values

from service.telemetry import Listener, PoolState

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
    "503 answers, by cause: timeout (a statement past its timeout), unreachable (the"
    " database), pool (no connection free), migrating (the schema), key_server (the"
    " JWKS), draining (readiness after SIGTERM).",
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
CAUSES = ("timeout", "unreachable", "pool", "migrating", "key_server", "draining")
FETCH_OUTCOMES = ("ok", "failed", "no_usable_key")

# Each worker's figures, summed over the live ones (a dead worker's CPU seconds stay in
# the sum: they were spent). Kept out of the default registry, where the process
# collector has these names: only the listener's registry reads a worker's figures.
CPU_SECONDS = Counter(
    "process_cpu_seconds",
    "Total user and system CPU time spent in seconds (every worker).",
    registry=None,
)
RESIDENT_MEMORY = Gauge(
    "process_resident_memory_bytes",
    "Resident memory size in bytes (every worker).",
    multiprocess_mode="livesum",
    registry=None,
)
# The database client conventions' names before db.client.connection.count, whose
# `_count` Prometheus keeps for histograms and summaries (promtool check metrics).
CONNECTIONS = Gauge(
    "db_client_connections_usage",
    "The number of connections that are currently in the state described by the state"
    " attribute: used or idle (every worker's pool).",
    ("state",),
    multiprocess_mode="livesum",
)
CONNECTIONS_MAX = Gauge(
    "db_client_connections_max",
    "The maximum number of open connections allowed (every worker's pool).",
    multiprocess_mode="livesum",
)
BUILD_INFO = Gauge(
    "todo_build_info",
    "The service's version, the version of the contract it serves, and the commit it"
    " was built from (unknown: not built from a git checkout).",
    ("version", "contract_version", "commit"),
    multiprocess_mode="max",
)
SAMPLE_SECONDS = 1.0


class Metrics(Listener):
    """Counts what the service reports."""

    def __init__(self, names: dict[str, str]) -> None:
        # A statement's label is its name in the code (bounded), never its text.
        self._names = names
        # The labelled children, found once: `labels()` validates its values on every call.
        self._durations: dict[tuple[str, str, int, str], Any] = {}
        self._statements: dict[tuple[str, bool], Any] = {}
        BUILD_INFO.labels(*_build()).set(1)
        # Zero from the start, so that a rate over the first 503 or failed fetch has a
        # value before it to rise from, and a dashboard shows 0 rather than nothing.
        for cause in CAUSES:
            UNAVAILABLE.labels(cause)
        for outcome in FETCH_OUTCOMES:
            KEY_FETCHES.labels(outcome)
        self._pool: Callable[[], PoolState] | None = None
        threading.Thread(target=self._sample, name="metrics-sampler", daemon=True).start()

    def _sample(self) -> None:
        spent = 0.0
        used, idle = CONNECTIONS.labels("used"), CONNECTIONS.labels("idle")
        while True:
            now = time.process_time()
            CPU_SECONDS.inc(now - spent)
            spent = now
            resident = _resident_bytes()
            if resident is not None:
                RESIDENT_MEMORY.set(resident)
            if self._pool is not None:
                state = self._pool()
                used.set(state.used)
                idle.set(state.idle)
                CONNECTIONS_MAX.set(state.most)
            time.sleep(SAMPLE_SECONDS)

    def pool_opened(self, state: Callable[[], PoolState]) -> None:
        self._pool = state

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
            UNAVAILABLE.labels(cause or "unreachable").inc()
        elif code == "QUOTA_EXCEEDED":
            QUOTA_REFUSALS.inc()
        elif code == "RATE_LIMITED":
            RATE_LIMIT_REFUSALS.inc()

    def token_checked(self, outcome: str) -> None:
        TOKEN_CHECKS.labels(outcome).inc()

    def keys_fetched(self, outcome: str) -> None:
        KEY_FETCHES.labels(outcome).inc()


_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _resident_bytes() -> int | None:
    """This process's resident set, as `ps` counts it (Linux; elsewhere None)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_BYTES
    except OSError:
        return None


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _build() -> tuple[str, str, str]:
    """The service's version, the contract's (openapi.yaml's info.version) and the commit
    the build wrote into the package (hatch_build.py)."""
    package = resources.files("service")
    contract = yaml.load(package.joinpath("openapi.yaml").read_bytes(), Loader=_LOADER)
    stamped = package.joinpath("COMMIT")
    commit = stamped.read_text().strip() if stamped.is_file() else "unknown"
    return metadata.version("todo-service"), str(contract["info"]["version"]), commit or "unknown"
