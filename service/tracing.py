"""OpenTelemetry traces over OTLP/HTTP (OTEL_EXPORTER_OTLP_ENDPOINT): a server span per
request, continuing an incoming W3C `traceparent`, named by the route template it
matched; a client span per SQL statement under it, with the statement's text (values
are never in it: the driver puts them in after). Imported only when tracing is on.

The SDK reads the standard variables itself: OTEL_TRACES_SAMPLER and its argument
(sample a tenth with `parentbased_traceidratio` and `0.1`), OTEL_SERVICE_NAME,
OTEL_EXPORTER_OTLP_HEADERS and the batch processor's OTEL_BSP_*. Spans are sent from a
thread of each worker, in batches, and flushed when the worker stops.

A collector that is down costs a log line a minute, not one per batch, and does not hold
a worker that stops for more than FLUSH_SECONDS (FR-166)."""

import fcntl
import logging
import os
import threading
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from service import logs
from service.telemetry import Listener

METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "QUERY"}
)
# What a propagator may read of a request: the trace context and its companions.
_PROPAGATED = frozenset({b"traceparent", b"tracestate", b"baggage"})
FLUSH_SECONDS = 0.5
QUIET_SECONDS = 60.0


class _OnceAMinute(logging.Filter):
    """OpenTelemetry's own lines (the exporter failing, retrying, the queue dropping
    spans) at most once a minute across the workers of one `serve`, which share a file
    saying when one of them last logged (in TODO_RUN_DIR; without it, per process). The
    line that gets through says how many this process held back."""

    def __init__(self, shared: Path | None) -> None:
        self._said = shared / "telemetry-logged" if shared is not None else None
        self._lock = threading.Lock()
        self._quiet_until = 0.0
        self._held_back = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("opentelemetry"):
            return True
        with self._lock:
            now = time.time()
            if now < self._quiet_until or not self._take_the_minute(now):
                self._held_back += 1
                return False
            if self._held_back:
                record.held_back = self._held_back
                self._held_back = 0
            return True

    def _take_the_minute(self, now: float) -> bool:
        """Whether no process logged within the minute; if none did, this one has."""
        if self._said is None:
            self._quiet_until = now + QUIET_SECONDS
            return True
        descriptor = os.open(self._said, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            last = float(os.read(descriptor, 64) or 0)
            if now - last < QUIET_SECONDS:
                self._quiet_until = last + QUIET_SECONDS
                return False
            os.pwrite(descriptor, f"{now:<20.6f}".encode(), 0)
            self._quiet_until = now + QUIET_SECONDS
            return True
        finally:
            os.close(descriptor)


class Tracing(Listener):
    def __init__(self, names: dict[str, str]) -> None:
        resource = Resource.create(
            {SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or "todo-service"}
        )
        # Shut down by `close`, within its bound; the SDK's own at exit has none.
        self._provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        shared = os.environ.get("TODO_RUN_DIR")
        quiet = _OnceAMinute(Path(shared) if shared else None)
        for handler in logging.getLogger().handlers:
            handler.addFilter(quiet)
        self._tracer = self._provider.get_tracer("todo-service")
        self._names = names

    def request_started(self, scope: MutableMapping[str, Any]) -> Any:
        carrier: dict[str, str] = {}
        for name, value in scope["headers"]:
            if name in _PROPAGATED:
                key = name.decode("latin-1")
                # Two lines of a trace context are no trace context (W3C): a new trace.
                carrier[key] = "" if key in carrier else value.decode("latin-1")
        method = scope["method"] if scope["method"] in METHODS else "_OTHER"
        parent = propagate.extract(carrier) if carrier else None
        span = self._tracer.start_span(
            "HTTP" if method == "_OTHER" else method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.scheme": scope["scheme"]},
        )
        # Only a sampled span is made current: nothing under an unsampled one is recorded,
        # and attaching costs every request.
        attached = None
        if span.is_recording():
            attached = context.attach(trace.set_span_in_context(span, parent))
        logged = logs.trace_id.set(format(span.get_span_context().trace_id, "032x"))
        return span, attached, logged

    def request_finished(
        self, started: Any, method: str, route: str | None, status: int, seconds: float
    ) -> None:
        span, attached, logged = started
        if span.is_recording():
            if route is not None:
                span.update_name(f"{method if method in METHODS else 'HTTP'} {route}")
                span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_attribute("error.type", str(status))
                span.set_status(Status(StatusCode.ERROR))
        span.end()
        if attached is not None:
            context.detach(attached)
        logs.trace_id.reset(logged)

    def statement_started(self, statement: str) -> Any:
        if not trace.get_current_span().is_recording():
            return None
        name = self._names.get(statement, "statement")
        # Under the request's span, but never current itself: a stream's statement lives
        # across the yields of a generator, where a context must not be attached.
        return self._tracer.start_span(
            name,
            kind=SpanKind.CLIENT,
            attributes={
                "db.system.name": "postgresql",
                "db.operation.name": name,
                "db.query.text": statement,
            },
        )

    def statement_finished(self, started: Any, seconds: float, failed: bool) -> None:
        if started is None:
            return
        if failed:
            started.set_status(Status(StatusCode.ERROR))
        started.end()

    def close(self) -> None:
        # The spans held are sent if the collector takes them within FLUSH_SECONDS. One
        # that is down (the exporter retries for up to its timeout, 10 s) or one that
        # never answers does not hold the worker: the thread still sending is a daemon,
        # and ends with the process.
        flushing = threading.Thread(target=self._provider.shutdown, name="traces", daemon=True)
        flushing.start()
        flushing.join(FLUSH_SECONDS)
