"""Observability of the running suite: every service's /metrics moves with real traffic (Triton's too), and a
client's trace id shows up in the log lines of every service its request reaches."""

from __future__ import annotations

import json
import re
import secrets
import time
import urllib.request
from collections.abc import Callable

import grpc
import pytest

from audiosearch.gateway.audio.segments import query_segments
from audiosearch.v1 import audiosearch_pb2 as pb
from devtools.suite import RunningSuite
from devtools.support import sounds
from devtools.support.gateway import ensure_collection, ingest, search, stub
from tests.deploy.test_monitoring import used_series

COLLECTION = "observability"
GATEWAY = "audiosearch.v1.AudioSearchService"
SEARCH = "audiosearch.search.v1.VectorSearchService"
CATALOG = "audiosearch.catalog.v1.CatalogService"
Samples = list[tuple[str, dict[str, str], float]]
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@pytest.fixture(scope="module")
def client(gateway_address):
    client = stub(gateway_address)
    ensure_collection(client, COLLECTION)
    return client


def metrics_url(suite: RunningSuite, service: str) -> str:
    plan = next(plan for plan in suite.plans if plan.name == service)
    return f"http://127.0.0.1:{plan.env[f'{service.upper()}_METRICS_PORT']}/metrics"


def scrape(url: str) -> Samples:
    """Every sample of a text exposition, named as Prometheus stores it (no parser renaming counters)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples = []
    for line in text.splitlines():
        if (match := SAMPLE.match(line)) is not None:
            name, labels, number = match.groups()
            samples.append((name, dict(LABEL.findall(labels or "")), float(number)))
    return samples


def value(samples: Samples, name: str, /, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels` (0 when there is none)."""
    return sum(v for n, found, v in samples if n == name and labels.items() <= found.items())


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.2)


def test_every_services_metrics_move_with_an_ingest_and_a_search(suite, client) -> None:
    urls = {service: metrics_url(suite, service) for service in ("gateway", "search", "catalog", "embedder")}
    before = {service: scrape(url) for service, url in urls.items()}
    clip = sounds.synth("birds", seconds=5.0, seed=4242)
    data = sounds.to_bytes(clip)

    ingested = ingest(client, COLLECTION, "observed.wav", data)
    found = search(client, COLLECTION, data)

    assert not ingested.already_existed
    assert found.matches[0].audio.id == ingested.audio.id
    stored_windows = ingested.audio.segment_count
    # The search cuts the clip at the finer query hop (2 s windows every 0.25 s over 5 s: 13), plus one looped
    # window for each chirp that stands out of the rest.
    query_windows = len(query_segments(clip, sounds.RATE, 2.0, 2.0))
    assert stored_windows == 3
    assert query_windows > 13
    expected_inferences = stored_windows + query_windows

    def triton_delta(name: str) -> float:
        return (value(scrape(urls["embedder"]), name, model="panns_cnn14")
                - value(before["embedder"], name, model="panns_cnn14"))

    wait_for(lambda: triton_delta("nv_inference_count") >= expected_inferences)
    after = {service: scrape(url) for service, url in urls.items()}

    def delta(process: str, name: str, /, **labels: str) -> float:
        return value(after[process], name, **labels) - value(before[process], name, **labels)

    rpc = "audiosearch_rpc_total"
    assert delta("gateway", rpc, service=GATEWAY, method="IngestAudio", code="OK") == 1
    assert delta("gateway", rpc, service=GATEWAY, method="SearchAudio", code="OK") == 1
    assert delta("gateway", "audiosearch_rpc_duration_seconds_count", method="SearchAudio", code="OK") == 1
    assert delta("gateway", "audiosearch_ingest_audio_seconds_total") == pytest.approx(5.0, abs=0.01)
    assert delta("gateway", "audiosearch_ingests_total", outcome="created") == 1
    assert delta("gateway", "audiosearch_embed_batch_size_sum") == expected_inferences
    assert delta("gateway", "audiosearch_embed_request_duration_seconds_count") >= 2
    assert delta("gateway", "audiosearch_search_query_segments_sum") == query_windows
    assert value(after["gateway"], "audiosearch_ingests_in_progress") == 0
    assert value(after["gateway"], "audiosearch_ingest_slots") >= 1

    assert delta("search", rpc, service=SEARCH, method="UpsertSegments", code="OK") == 1
    assert delta("search", rpc, service=SEARCH, method="SearchSegments", code="OK") == 1
    assert delta("search", "audiosearch_milvus_request_duration_seconds_count", operation="search") >= 1
    assert delta("catalog", rpc, service=CATALOG, method="CreateAudio", code="OK") == 1
    assert delta("catalog", rpc, service=CATALOG, method="BatchGetAudio", code="OK") >= 1  # the reconciler too

    assert delta("embedder", "nv_inference_count", model="panns_cnn14") == expected_inferences
    assert delta("embedder", "nv_inference_request_success", model="panns_cnn14") >= 2
    assert delta("embedder", "nv_inference_queue_duration_us", model="panns_cnn14") > 0


def test_the_triton_series_the_dashboard_and_alerts_read_are_exported(suite) -> None:
    exported = {name for name, _, _ in scrape(metrics_url(suite, "embedder"))}
    triton_series = {name for name in used_series() if name.startswith("nv_")}
    assert triton_series
    assert triton_series <= exported, sorted(triton_series - exported)


def test_a_failed_call_is_counted_under_its_status_code(suite, client) -> None:
    url = metrics_url(suite, "gateway")
    labels = {"service": GATEWAY, "method": "SearchAudio", "code": "INVALID_ARGUMENT"}
    before = value(scrape(url), "audiosearch_rpc_total", **labels)
    with pytest.raises(grpc.RpcError) as failure:
        search(client, COLLECTION, b"this is not audio")
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert value(scrape(url), "audiosearch_rpc_total", **labels) == before + 1


def log_lines(suite: RunningSuite, service: str, trace_id: str) -> list[dict]:
    assert suite.log_dir is not None
    lines = []
    for text in (suite.log_dir / f"{service}.log").read_text(errors="replace").splitlines():
        if trace_id in text and text.startswith("{"):
            lines.append(json.loads(text))
    return lines


def test_a_clients_trace_id_reaches_the_log_lines_of_every_service_its_request_touches(suite, client) -> None:
    trace_id, parent_span_id = secrets.token_hex(16), secrets.token_hex(8)
    data = sounds.to_bytes(sounds.synth("morse", seconds=3.0, seed=77))
    client.SearchAudio(pb.SearchAudioRequest(collection=COLLECTION, audio_content=data), timeout=120,
                       metadata=[("traceparent", f"00-{trace_id}-{parent_span_id}-01")])

    def traced_access_lines(service: str) -> list[dict]:
        return [line for line in log_lines(suite, service, trace_id) if line["msg"] == "rpc"]

    wait_for(lambda: all(traced_access_lines(service) for service in ("gateway", "search", "catalog")))
    gateway = traced_access_lines("gateway")
    assert [line["method"] for line in gateway] == [f"/{GATEWAY}/SearchAudio"]
    assert gateway[0]["trace_id"] == trace_id
    assert gateway[0]["span_id"] != parent_span_id  # the gateway's own span, a child of the client's
    assert f"/{SEARCH}/SearchSegments" in {line["method"] for line in traced_access_lines("search")}
    assert traced_access_lines("catalog"), "the catalog calls of the request carry its trace"
