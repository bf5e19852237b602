"""OpenTelemetry traces over OTLP/HTTP (OTEL_EXPORTER_OTLP_ENDPOINT): a server span per
request, continuing an incoming W3C `traceparent`, named by the route template it
matched; a client span per SQL statement under it, with the statement's text (values
are never in it: the driver puts them in after). Imported only when tracing is on.

The SDK reads the standard variables itself: OTEL_TRACES_SAMPLER and its argument
(sample a tenth with `parentbased_traceidratio` and `0.1`), OTEL_SERVICE_NAME,
OTEL_EXPORTER_OTLP_HEADERS and the batch processor's OTEL_BSP_*. Spans are sent from a
thread of each worker, in batches, and flushed when the worker stops."""

import os
from collections.abc import MutableMapping
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


class Tracing(Listener):
    def __init__(self, names: dict[str, str]) -> None:
        resource = Resource.create(
            {SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or "todo-service"}
        )
        self._provider = TracerProvider(resource=resource)
        self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
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
        self._provider.shutdown()
