"""Tracing across services: the caller's trace continues in the callee, and log lines carry the trace id."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from audiosearch.common.channels import open_channel
from audiosearch.common.logs import JsonFormatter
from audiosearch.common.tracing import configure_tracing, export_enabled, trace_headers, tracer
from tests.common.probe_server import SERVICE, running_probe

ROOT = Path(__file__).resolve().parents[2]
SENT_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SENT_TRACEPARENT = f"00-{SENT_TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def spans():
    exporter = InMemorySpanExporter()
    configure_tracing("tests").add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


@pytest.fixture(scope="module")
def probe(spans):
    with running_probe() as (running, probe):
        yield running, probe


@pytest.fixture
def json_lines():
    """What the JSON formatter writes for every record while the test runs."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("probe"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def finished(exporter: InMemorySpanExporter, name: str, kind: SpanKind):
    for _ in range(100):  # the server span ends on the server's thread
        found = [s for s in exporter.get_finished_spans() if s.name == name and s.kind == kind]
        if found:
            return found[-1]
        time.sleep(0.02)
    raise AssertionError(f"no finished {kind} span {name}")


def test_a_call_through_an_internal_channel_continues_the_callers_trace(spans, probe) -> None:
    running, _ = probe
    with open_channel(running.address) as channel, tracer.start_as_current_span("caller") as caller:
        channel.unary_unary(f"/{SERVICE}/Succeed")(b"x", timeout=10)
    client = finished(spans, f"{SERVICE}/Succeed", SpanKind.CLIENT)
    server = finished(spans, f"{SERVICE}/Succeed", SpanKind.SERVER)
    trace_id = caller.get_span_context().trace_id
    assert client.context.trace_id == server.context.trace_id == trace_id
    assert client.parent.span_id == caller.get_span_context().span_id
    assert server.parent.span_id == client.context.span_id
    assert server.attributes["rpc.method"] == "Succeed"
    assert server.attributes["rpc.grpc.status_code"] == 0


def test_a_failed_call_marks_both_spans_with_the_status_the_client_receives(spans, probe) -> None:
    running, _ = probe
    with open_channel(running.address) as channel, pytest.raises(grpc.RpcError):
        channel.unary_unary(f"/{SERVICE}/Missing")(b"x", timeout=10)
    for kind in (SpanKind.CLIENT, SpanKind.SERVER):
        span = finished(spans, f"{SERVICE}/Missing", kind)
        assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
        assert span.status.status_code == StatusCode.ERROR


def test_every_log_line_of_a_request_carries_the_trace_id_the_client_sent(probe, json_lines) -> None:
    running, probe_service = probe
    probe_service.during_call = lambda: logging.getLogger("probe.handler").info("working")
    try:
        with grpc.insecure_channel(running.address) as channel:
            channel.unary_unary(f"/{SERVICE}/Succeed")(b"x", timeout=10, metadata=[("traceparent", SENT_TRACEPARENT)])
    finally:
        probe_service.during_call = lambda: None
    lines = json_lines()
    handler_line = next(line for line in lines if line["msg"] == "working")
    access_line = next(line for line in lines if line["msg"] == "rpc" and line["method"].endswith("/Succeed"))
    assert handler_line["trace_id"] == access_line["trace_id"] == SENT_TRACE_ID
    assert len(handler_line["span_id"]) == 16


def test_a_request_without_a_traceparent_starts_its_own_trace(probe, json_lines) -> None:
    running, _ = probe
    with grpc.insecure_channel(running.address) as channel:
        channel.unary_unary(f"/{SERVICE}/Succeed")(b"x", timeout=10)
    access_line = next(line for line in json_lines() if line["msg"] == "rpc")
    assert len(access_line["trace_id"]) == 32
    assert access_line["trace_id"] not in {SENT_TRACE_ID, "0" * 32}


def test_log_lines_outside_a_request_have_no_trace_id(json_lines) -> None:
    logging.getLogger("probe").info("idle")
    (line,) = json_lines()
    assert "trace_id" not in line


def test_trace_headers_carry_the_current_span(spans) -> None:
    with tracer.start_as_current_span("outgoing") as span:
        headers = trace_headers()
    context = span.get_span_context()
    assert headers["traceparent"].startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")
    assert trace_headers() == {}  # no span, nothing to propagate


@pytest.mark.parametrize(("environ", "enabled"), [
    ({}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317"}, True),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_TRACES_EXPORTER": "none"}, False),
])
def test_spans_leave_the_process_only_when_an_otlp_endpoint_is_set(environ, enabled) -> None:
    assert export_enabled(environ) is enabled


def test_configure_tracing_installs_one_provider_per_process(spans) -> None:
    assert configure_tracing("other") is configure_tracing("tests") is trace.get_tracer_provider()


def test_spans_are_exported_over_otlp_when_an_endpoint_is_set() -> None:
    """A service process with OTEL_EXPORTER_OTLP_ENDPOINT sends its spans to that collector (a fake one here)."""
    received: list = []

    class Collector(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):
            received.append(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Collector(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    script = (
        "from audiosearch.common.tracing import configure_tracing, tracer\n"
        "provider = configure_tracing('gateway')\n"
        "with tracer.start_as_current_span('exported'):\n"
        "    pass\n"
        "provider.shutdown()\n"
    )
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}", "OTEL_EXPORTER_OTLP_INSECURE": "true",
           "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    try:
        subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, check=True, timeout=60)
    finally:
        server.stop(0)
    spans = [(resource.resource, span) for request in received for resource in request.resource_spans
             for scope in resource.scope_spans for span in scope.spans]
    assert [span.name for _, span in spans] == ["exported"]
    attributes = {a.key: a.value.string_value for a in spans[0][0].attributes}
    assert attributes["service.name"] == "gateway"
