"""The search service's settings, start-up and health, and its Milvus probe."""

from __future__ import annotations

import socket
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from audiosearch.common.errors import reason_of
from audiosearch.common.grpc_server import RunningServer
from audiosearch.common.settings import load_settings
from audiosearch.search.probe import DependencyProbe
from audiosearch.search.server import IndexType, SearchSettings, build_server, store_config
from audiosearch.search.store import StoreConfig
from audiosearch.search.v1 import search_pb2 as pb
from audiosearch.search.v1.search_pb2_grpc import VectorSearchServiceStub


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_settings_come_from_search_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEARCH_PORT", "6000")
    monkeypatch.setenv("SEARCH_MILVUS_URI", "http://milvus:19530")
    monkeypatch.setenv("SEARCH_INDEX_TYPE", "IVF_SQ8")
    monkeypatch.setenv("SEARCH_CONSISTENCY", "Strong")
    monkeypatch.setenv("SEARCH_VISIBLE_WRITES", "false")

    settings = load_settings(SearchSettings)

    assert (settings.port, settings.milvus_uri, settings.index_type, settings.consistency) == (
        6000, "http://milvus:19530", "IVF_SQ8", "Strong")
    assert store_config(settings).visible_writes is False


def test_defaults_are_a_lite_file_bounded_reads_visible_writes_and_port_50052(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SEARCH_PORT", "SEARCH_MILVUS_URI", "SEARCH_CONSISTENCY", "SEARCH_INDEX_TYPE",
                 "SEARCH_VISIBLE_WRITES"):
        monkeypatch.delenv(name, raising=False)

    settings = SearchSettings()

    assert (settings.port, settings.milvus_uri, settings.consistency) == (50052, "./var/milvus.db", "Bounded")
    assert settings.visible_writes is True
    assert store_config(settings).effective_index_type == "FLAT"


def test_the_services_defaults_are_the_stores_own(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SEARCH_MILVUS_TIMEOUT_SECONDS", "SEARCH_INDEX_TYPE", "SEARCH_HNSW_M", "SEARCH_HNSW_EF_CONSTRUCTION",
                 "SEARCH_SEARCH_EF", "SEARCH_IVF_NLIST", "SEARCH_IVF_NPROBE", "SEARCH_COLLECTION_PREFIX",
                 "SEARCH_CONSISTENCY"):
        monkeypatch.delenv(name, raising=False)

    configured = store_config(SearchSettings())

    assert configured == StoreConfig(uri=configured.uri, token=configured.token)
    assert configured.search_ef == 64


@pytest.mark.parametrize(("variable", "value"), [
    ("SEARCH_MILVUS_URI", "var/milvus"),
    ("SEARCH_INDEX_TYPE", "DISKANN"),
    ("SEARCH_CONSISTENCY", "Sometimes"),
    ("SEARCH_COLLECTION_PREFIX", "bad-prefix"),
    ("SEARCH_MILVUS_TIMEOUT_SECONDS", "0"),
])
def test_bad_setting_stops_start_up_with_its_name(monkeypatch: pytest.MonkeyPatch, variable: str,
                                                  value: str) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(SystemExit) as stopped:
        load_settings(SearchSettings)

    assert variable in str(stopped.value)


@pytest.mark.parametrize(("uri", "index_type", "expected"), [
    ("./var/milvus.db", "auto", "FLAT"),
    ("http://127.0.0.1:19530", "auto", "HNSW"),
    ("https://milvus.example:443", "auto", "HNSW"),
    ("http://127.0.0.1:19530", "IVF_FLAT", "IVF_FLAT"),
])
def test_auto_index_is_flat_on_lite_and_hnsw_on_a_server(uri: str, index_type: IndexType,
                                                         expected: str) -> None:
    settings = SearchSettings(milvus_uri=uri, index_type=index_type)
    assert store_config(settings).effective_index_type == expected


def test_unreachable_milvus_means_not_serving_and_quick_unavailable_errors() -> None:
    settings = SearchSettings(port=0, milvus_uri=f"http://127.0.0.1:{closed_port()}",
                              milvus_timeout_seconds=3, probe_interval_seconds=0.2)
    running = build_server(settings)
    try:
        with grpc.insecure_channel(running.address) as channel:
            time.sleep(0.5)
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as raised:
                VectorSearchServiceStub(channel).CountSegments(pb.CountSegmentsRequest(collection="anything"),
                                                               timeout=30)
            elapsed = time.monotonic() - started
    finally:
        running.stop(grace=1.0)

    assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert reason_of(raised.value) == "DEPENDENCY_UNAVAILABLE"
    assert elapsed < 5


def test_health_is_serving_while_milvus_answers(search_server: RunningServer) -> None:
    with grpc.insecure_channel(search_server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "audiosearch.search.v1.VectorSearchService"):
            status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.SERVING


def test_probe_reports_the_first_state_and_every_change_once() -> None:
    answers = iter([False, False, True, True, False])
    reported: list[bool] = []
    done = threading.Event()

    def check() -> bool:
        answer = next(answers, None)
        if answer is None:
            done.set()
            return False
        return answer

    probe = DependencyProbe("fake", check, reported.append, interval_s=0.01)
    probe.start()
    assert done.wait(5)
    probe.stop()

    assert reported == [False, True, False]


def test_probe_that_raises_reports_the_dependency_down() -> None:
    reported: list[bool] = []

    def check() -> bool:
        raise RuntimeError("boom")

    probe = DependencyProbe("fake", check, reported.append, interval_s=10)
    probe.start()
    probe.stop()

    assert reported == [False]
