"""The gateway's channels to the internal services: retries only for UNAVAILABLE and only for calls that are safe
to repeat, and a deadline on every call (against a real in-process server that fails or hangs on purpose)."""

from __future__ import annotations

import threading
import time
from concurrent import futures

import grpc
import pytest

from audiosearch.catalog.v1 import catalog_pb2 as cpb
from audiosearch.catalog.v1 import catalog_pb2_grpc
from audiosearch.gateway.backends.stubs import Backends


class Flaky(catalog_pb2_grpc.CatalogServiceServicer):
    """Answers UNAVAILABLE (or another code) and counts the attempts; GetAudio hangs."""

    def __init__(self) -> None:
        self.attempts: dict[str, int] = {}
        self.code = grpc.StatusCode.UNAVAILABLE
        self.release = threading.Event()

    def _fail(self, method: str, context: grpc.ServicerContext) -> None:
        self.attempts[method] = self.attempts.get(method, 0) + 1
        context.abort(self.code, "failing on purpose")

    def GetCollection(self, request, context):
        self._fail("GetCollection", context)

    def CreateAudio(self, request, context):
        self._fail("CreateAudio", context)

    def CreateCollection(self, request, context):
        self._fail("CreateCollection", context)

    def SetAudioStatus(self, request, context):
        self._fail("SetAudioStatus", context)

    def GetAudio(self, request, context):
        self.release.wait(10)
        return cpb.GetAudioResponse()


@pytest.fixture
def flaky():
    servicer = Flaky()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    catalog_pb2_grpc.add_CatalogServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    backends = Backends(f"127.0.0.1:{port}", f"127.0.0.1:{port}", timeout_seconds=1.0)
    try:
        yield servicer, backends
    finally:
        servicer.release.set()
        backends.close()
        server.stop(0)


def call(function, request) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as failure:
        function(request)
    return failure.value.code()


def test_idempotent_calls_are_retried_on_unavailable(flaky):
    servicer, backends = flaky
    assert call(backends.catalog.GetCollection, cpb.GetCollectionRequest(name="c")) == grpc.StatusCode.UNAVAILABLE
    assert call(backends.catalog.CreateAudio, cpb.CreateAudioRequest()) == grpc.StatusCode.UNAVAILABLE
    assert servicer.attempts == {"GetCollection": 4, "CreateAudio": 4}


def test_calls_unsafe_to_repeat_are_not_retried(flaky):
    servicer, backends = flaky
    call(backends.catalog.CreateCollection, cpb.CreateCollectionRequest())
    call(backends.catalog.SetAudioStatus, cpb.SetAudioStatusRequest())
    assert servicer.attempts == {"CreateCollection": 1, "SetAudioStatus": 1}


def test_other_failures_are_not_retried(flaky):
    servicer, backends = flaky
    servicer.code = grpc.StatusCode.INTERNAL
    assert call(backends.catalog.GetCollection, cpb.GetCollectionRequest(name="c")) == grpc.StatusCode.INTERNAL
    assert servicer.attempts == {"GetCollection": 1}


def test_every_call_has_a_deadline(flaky):
    _, backends = flaky
    started = time.monotonic()
    assert call(backends.catalog.GetAudio, cpb.GetAudioRequest()) == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 3.0


def test_a_dependency_that_is_down_fails_fast():
    backends = Backends("127.0.0.1:9", "127.0.0.1:9", timeout_seconds=30.0)
    try:
        started = time.monotonic()
        assert call(backends.catalog.GetCollection, cpb.GetCollectionRequest(name="c")) == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - started < 5.0
        assert backends.serving() == {"catalog": False, "search": False}
    finally:
        backends.close()
