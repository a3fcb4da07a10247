"""The per-RPC metrics every service gets from start_server: counts and latency by the final status code."""

from __future__ import annotations

import time
import urllib.request

import grpc
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from audiosearch.common.allocator import HEAP_STATS, MALLOC_VARIABLE, find_jemalloc, with_allocator
from audiosearch.common.metrics import HEAP_SERIES
from audiosearch.common.ports import free_port
from devtools.support.processes import run_python
from tests.common.probe_server import SERVICE, running_probe


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"service": SERVICE, **labels}) or 0.0


def calls(method: str, code: str) -> float:
    return sample("audiosearch_rpc_total", method=method, code=code)


def timed_calls(method: str, code: str) -> float:
    return sample("audiosearch_rpc_duration_seconds_count", method=method, code=code)


@pytest.fixture(scope="module")
def probe():
    port = free_port()
    with running_probe(metrics_port=port) as (running, probe), grpc.insecure_channel(running.address) as channel:
        yield channel, probe, port


def call(channel: grpc.Channel, method: str, payload: bytes = b"x") -> bytes:
    return channel.unary_unary(f"/{SERVICE}/{method}")(payload, timeout=10)


def test_a_successful_call_is_counted_and_timed_as_ok(probe) -> None:
    channel, _, _ = probe
    before = calls("Succeed", "OK"), timed_calls("Succeed", "OK")
    assert call(channel, "Succeed", b"hello") == b"hello"
    assert (calls("Succeed", "OK"), timed_calls("Succeed", "OK")) == (before[0] + 1, before[1] + 1)


@pytest.mark.parametrize(("method", "code"), [("Missing", "NOT_FOUND"), ("Crash", "INTERNAL")])
def test_a_failed_call_is_counted_under_the_code_the_client_receives(probe, method: str, code: str) -> None:
    channel, _, _ = probe
    before = calls(method, code)
    with pytest.raises(grpc.RpcError) as failure:
        call(channel, method)
    assert failure.value.code().name == code
    assert calls(method, code) == before + 1
    assert calls(method, "OK") == 0
    assert timed_calls(method, code) == before + 1


def test_a_client_streamed_call_is_counted(probe) -> None:
    channel, _, _ = probe
    before = calls("Upload", "OK")
    upload = channel.stream_unary(f"/{SERVICE}/Upload")
    assert upload(iter([b"ab", b"cde"]), timeout=10) == b"5"
    assert calls("Upload", "OK") == before + 1


def test_in_flight_counts_the_calls_being_handled(probe) -> None:
    channel, handler, _ = probe
    in_flight = lambda: sample("audiosearch_rpc_in_flight", method="Wait")  # noqa: E731
    future = channel.unary_unary(f"/{SERVICE}/Wait").future(b"", timeout=10)
    assert handler.entered.wait(5)
    assert in_flight() == 1
    handler.release.set()
    future.result()
    for _ in range(50):  # the interceptor leaves just after the response is sent
        if in_flight() == 0:
            break
        time.sleep(0.05)
    assert in_flight() == 0


def test_health_checks_are_not_counted(probe) -> None:
    channel, _, _ = probe
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert not [sample for metric in REGISTRY.collect() for sample in metric.samples
                if sample.labels.get("service", "").startswith("grpc.")]


def test_the_metrics_port_serves_the_rpc_series(probe) -> None:
    channel, _, port = probe
    call(channel, "Succeed")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        families = {family.name: family for family in text_string_to_metric_families(response.read().decode())}
    wanted = {"service": SERVICE, "method": "Succeed", "code": "OK"}
    (ok,) = [s for s in families["audiosearch_rpc"].samples if s.name == "audiosearch_rpc_total" and s.labels == wanted]
    assert ok.value >= 1
    assert any(s.name.endswith("_bucket") for s in families["audiosearch_rpc_duration_seconds"].samples)


SCRAPE_OWN_HEAP = """
import sys, urllib.request
from audiosearch.common.metrics import serve_metrics
server = serve_metrics("127.0.0.1", int(sys.argv[1]))
with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5) as response:
    print(response.read().decode())
server.shutdown()
"""


def heap_series(allocator: str) -> dict[str, float]:
    text = run_python(SCRAPE_OWN_HEAP, with_allocator({"PATH": "/usr/bin:/bin", MALLOC_VARIABLE: allocator}),
                      str(free_port()))
    return {sample.labels["kind"]: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == HEAP_SERIES}


@pytest.mark.skipif(find_jemalloc() is None, reason="libjemalloc2 is not installed on this machine")
def test_a_jemalloc_process_serves_its_heap_beside_its_rpc_series() -> None:
    heap = heap_series("jemalloc")
    assert set(heap) == set(HEAP_STATS)
    assert 0 < heap["allocated"] <= heap["active"] <= heap["resident"]


def test_a_process_on_glibc_serves_no_heap_series() -> None:
    assert heap_series("system") == {}
