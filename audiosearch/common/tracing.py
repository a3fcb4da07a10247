"""OpenTelemetry tracing: one trace per request, gateway -> embedder / search / catalog, W3C `traceparent` on the
wire as gRPC metadata.

Spans are always made, so every log line of a request carries its trace id (audiosearch/common/logs.py) and the
services it calls join the same trace. They leave the process only when an OTLP endpoint is configured, with the
OpenTelemetry SDK's own variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) turns
the OTLP/gRPC exporter on unless `OTEL_TRACES_EXPORTER=none`; `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
`OTEL_TRACES_SAMPLER` (default: parent-based, always on), `OTEL_EXPORTER_OTLP_HEADERS` etc. as the SDK documents.

Hand-written interceptors rather than opentelemetry-instrumentation-grpc: the server span has to see the status the
error mapping sets by aborting, and the Triton call (tritonclient, its own channel) needs the header by hand anyway.
"""

from __future__ import annotations

import collections
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from audiosearch.common.interception import CallInterceptor, reporting_code, split_method

log = logging.getLogger(__name__)

# A proxy: it follows whatever provider configure_tracing (or a test) installs later.
tracer = trace.get_tracer("audiosearch")

_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def export_enabled(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(environ.get(name) for name in _ENDPOINT_VARIABLES)


def configure_tracing(service: str) -> TracerProvider:
    """Installs the SDK's tracer provider once per process (later calls return it), exporting if configured."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    attributes = {"service.namespace": "audiosearch"}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = service
    provider = TracerProvider(resource=Resource.create(attributes))
    if export_enabled():
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        log.info("exporting traces", extra={"otlp_endpoint": next(
            os.environ[name] for name in _ENDPOINT_VARIABLES if os.environ.get(name))})
    trace.set_tracer_provider(provider)
    return trace.get_tracer_provider()  # type: ignore[return-value]


def trace_headers(context: Context | None = None) -> dict[str, str]:
    """`traceparent` (and `tracestate`) of the current span, for a call made outside the intercepted channels."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=context)
    return carrier


def _rpc_attributes(method: str) -> dict[str, str]:
    service, name = split_method(method)
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


def _end_with_code(span: trace.Span, code: grpc.StatusCode) -> None:
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code != grpc.StatusCode.OK:
        span.set_status(Status(StatusCode.ERROR, code.name))


class ServerTracingInterceptor(CallInterceptor):
    """A SERVER span per application RPC, child of the caller's `traceparent` when it sent one."""

    @contextmanager
    def around(self, method: str, context: grpc.ServicerContext) -> Iterator[None]:
        carrier = {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
        with tracer.start_as_current_span(
            method.lstrip("/"), context=propagate.extract(carrier), kind=SpanKind.SERVER,
            attributes=_rpc_attributes(method), record_exception=False, set_status_on_exception=False,
        ) as span, reporting_code(context, lambda code: _end_with_code(span, code)):
            yield


class _CallDetails(
    collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready",
                                            "compression")),
    grpc.ClientCallDetails,
):
    pass


class ClientTracingInterceptor(
    grpc.UnaryUnaryClientInterceptor, grpc.StreamUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor, grpc.StreamStreamClientInterceptor,
):
    """A CLIENT span per outgoing call, its `traceparent` sent as metadata; ends when the call completes."""

    def _call(self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, request: Any) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        span = tracer.start_span(method.lstrip("/"), kind=SpanKind.CLIENT, attributes=_rpc_attributes(method))
        headers = trace_headers(trace.set_span_in_context(span))
        metadata = [*(details.metadata or ()), *headers.items()]
        traced = _CallDetails(details.method, details.timeout, metadata, details.credentials,
                              getattr(details, "wait_for_ready", None), getattr(details, "compression", None))
        try:
            outcome = continuation(traced, request)
        except BaseException:
            _end_with_code(span, grpc.StatusCode.UNKNOWN)
            span.end()
            raise

        def finish(call: Any) -> None:
            _end_with_code(span, call.code() or grpc.StatusCode.UNKNOWN)
            span.end()

        outcome.add_done_callback(finish)
        return outcome

    def intercept_unary_unary(self, continuation: Callable[..., Any], client_call_details: grpc.ClientCallDetails,
                              request: Any) -> Any:
        return self._call(continuation, client_call_details, request)

    def intercept_stream_unary(self, continuation: Callable[..., Any], client_call_details: grpc.ClientCallDetails,
                               request_iterator: Any) -> Any:
        return self._call(continuation, client_call_details, request_iterator)

    def intercept_unary_stream(self, continuation: Callable[..., Any], client_call_details: grpc.ClientCallDetails,
                               request: Any) -> Any:
        return self._call(continuation, client_call_details, request)

    def intercept_stream_stream(self, continuation: Callable[..., Any], client_call_details: grpc.ClientCallDetails,
                                request_iterator: Any) -> Any:
        return self._call(continuation, client_call_details, request_iterator)
