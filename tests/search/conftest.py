"""The search service under test, on Milvus Lite (a file) and on a real Milvus server (`milvus-server`): the
store and gRPC suites run against both. One store and one in-process server per backend per session; tests
isolate themselves by unique collection names. The server backend uses the session's `milvus_server` fixture
(tests/conftest.py), which fails, never skips, when Milvus cannot start; its landmark index lives on the session's
`landmark_milvus_server` (Milvus 2.3 has no sparse vectors), while on Lite it shares the vectors' file."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from milvus_lite.server_manager import server_manager_instance

from audiosearch.common.grpc_server import RunningServer
from audiosearch.search.server import SearchSettings, build_server, route_pymilvus_logs
from audiosearch.search.store import MilvusStore, StoreConfig
from audiosearch.search.v1 import search_pb2_grpc
from tests.search.builders import DIM, new_collection_name

BACKENDS = ["lite", "server"]
HEALTHY_WITHIN_S = 30.0


@pytest.fixture(scope="session", params=BACKENDS)
def milvus_uri(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param != "lite":
        yield request.getfixturevalue("milvus_server")
        return
    path = str(tmp_path_factory.mktemp("milvus-lite") / "milvus.db")
    yield path
    # Stopped here rather than by Lite's own atexit hook, which logs to a stream pytest has closed by then.
    server_manager_instance.release_server(path)


@pytest.fixture(scope="session")
def landmark_milvus_uri(request: pytest.FixtureRequest, milvus_uri: str) -> str:
    """Where the search server keeps its landmark index: "" (the vectors' Milvus) on Lite."""
    return "" if milvus_uri.endswith(".db") else str(request.getfixturevalue("landmark_milvus_server"))


@pytest.fixture(scope="session")
def store(milvus_uri: str) -> Iterator[MilvusStore]:
    route_pymilvus_logs()
    milvus_store = MilvusStore(StoreConfig(uri=milvus_uri))
    yield milvus_store
    milvus_store.close()


@pytest.fixture
def collection(store: MilvusStore) -> Iterator[str]:
    """A fresh collection of DIM-dimensional vectors, dropped afterwards."""
    name = new_collection_name()
    store.ensure_collection(name, DIM)
    yield name
    store.drop_collection(name)


def wait_serving(address: str, timeout_s: float = HEALTHY_WITHIN_S) -> None:
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            status = health.Check(health_pb2.HealthCheckRequest(), timeout=2).status
            if status == health_pb2.HealthCheckResponse.SERVING:
                return
            time.sleep(0.1)
    raise AssertionError(f"search server at {address} not SERVING after {timeout_s} s")


@pytest.fixture(scope="session")
def search_server(milvus_uri: str, landmark_milvus_uri: str) -> Iterator[RunningServer]:
    settings = SearchSettings(host="127.0.0.1", port=0, milvus_uri=milvus_uri, landmark_milvus_uri=landmark_milvus_uri,
                              probe_interval_seconds=0.5)
    running = build_server(settings)
    wait_serving(running.address)
    yield running
    running.stop(grace=1.0)


@pytest.fixture(scope="session")
def search(search_server: RunningServer) -> Iterator[search_pb2_grpc.VectorSearchServiceStub]:
    with grpc.insecure_channel(search_server.address) as channel:
        yield search_pb2_grpc.VectorSearchServiceStub(channel)
