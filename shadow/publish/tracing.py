"""OpenTelemetry for the shadow side: one span per published comparison, in the trace
of the client request that produced it (W3C `traceparent` taken from the request).

The proxy does not create a server span per request (that would put span work on the
user path); it only keeps the `traceparent`/`tracestate` header values of matched reads,
which travel with the read and its outcomes (JobInfo.trace) and are parsed only here,
where a span is started (`request_context`), off the request path.
Tracing is off (a no-op tracer) unless an OTLP endpoint or an exporter is given. The tracer provider is private to the
sidecar, never the process-global one, so several sidecars (tests) do not interfere.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

TRACE_HEADERS = ("traceparent", "tracestate")
_PROPAGATOR = TraceContextTextMapPropagator()


def request_context(trace_headers: Iterable[tuple[str, str]]) -> Context | None:
    """The client's trace context from its `traceparent`/`tracestate` (name, value)
    pairs, or None when it sent none."""
    carrier = dict(trace_headers)
    return _PROPAGATOR.extract(carrier=carrier) if carrier else None


class Tracing:
    """Owns the tracer; `close()` flushes and shuts the exporter down."""

    def __init__(self, otlp_endpoint: str | None = None, exporter: SpanExporter | None = None) -> None:
        self._provider: TracerProvider | None = None
        if otlp_endpoint is None and exporter is None:
            self.tracer: trace.Tracer = trace.NoOpTracer()
            return
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        self._provider = TracerProvider(resource=Resource.create({"service.name": "shadow"}))
        if exporter is not None:  # tests: an InMemorySpanExporter, exported at once
            self._provider.add_span_processor(SimpleSpanProcessor(exporter))
        if otlp_endpoint is not None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            endpoint = otlp_endpoint if otlp_endpoint.endswith("/v1/traces") \
                else otlp_endpoint.rstrip("/") + "/v1/traces"
            self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        self.tracer = self._provider.get_tracer("shadow")

    @property
    def enabled(self) -> bool:
        return self._provider is not None

    def close(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()
