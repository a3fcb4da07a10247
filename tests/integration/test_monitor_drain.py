"""A gateway that is told to stop ends its monitors with where to resume; beyond its limit it refuses new ones.

A gateway of its own (the session's embedder, search and catalog behind it), so that stopping it touches no other
test; it allows one monitor at a time."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np
import pytest

from audiosearch.common.errors import error_info
from audiosearch.common.ports import free_ports
from audiosearch.v1 import audiosearch_pb2 as pb
from devtools.suite import RunningSuite, start_service, wait_healthy
from devtools.support import sounds
from devtools.support.gateway import ensure_collection, ingest, stub

COLLECTION = "monitor_drain"
RATE = 16_000
FED_SECONDS = 12.0  # two 5 s stretches searched, then the feed waits


@pytest.fixture
def spare_gateway(suite: RunningSuite, tmp_path: Path) -> Iterator[tuple[object, str]]:
    session = next(plan for plan in suite.plans if plan.name == "gateway")
    port, metrics_port = free_ports(2)
    plan = replace(session, health_address=f"127.0.0.1:{port}", env={
        **session.env, "GATEWAY_PORT": str(port), "GATEWAY_METRICS_PORT": str(metrics_port),
        "GATEWAY_MAX_CONCURRENT_MONITORS": "1", "GATEWAY_MONITOR_PROGRESS_SECONDS": "0.2",
        "GATEWAY_RECONCILE_INTERVAL_SECONDS": "3600", "GATEWAY_UPLOAD_IDLE_SECONDS": "120"})
    process = start_service(plan, tmp_path / "logs", detach=True)
    try:
        wait_healthy(plan, process, tmp_path / "logs", 120)
        yield process, plan.health_address
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)


def header() -> pb.MonitorAudioRequest:
    return pb.MonitorAudioRequest(header=pb.MonitorAudioHeader(
        collection=COLLECTION, feed_offset_seconds=600.0,
        raw_format=pb.RawAudioFormat(sample_rate_hz=RATE, channels=1, sample_format=pb.SAMPLE_FORMAT_S16LE)))


def test_sigterm_ends_a_monitor_with_the_second_to_resume_from(spare_gateway):
    process, address = spare_gateway
    client = stub(address)
    ensure_collection(client, COLLECTION)
    ingest(client, COLLECTION, "chirp.wav", sounds.to_bytes(sounds.synth("chirp", 4.0, seed=3)))
    noise = np.random.default_rng(1).standard_normal(int(FED_SECONDS * RATE)) * 3000
    release = threading.Event()

    def feed() -> Iterator[pb.MonitorAudioRequest]:
        yield header()
        yield pb.MonitorAudioRequest(chunk=noise.astype("<i2").tobytes())
        release.wait(120)  # a live feed with nothing more yet

    responses = client.MonitorAudio(feed(), timeout=300)
    try:
        for response in responses:
            if response.WhichOneof("event") == "progress" and response.progress.audio_seconds >= 610.0:
                break
        with pytest.raises(grpc.RpcError) as refused:
            list(client.MonitorAudio(iter([header()]), timeout=30))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_info(refused.value).reason == "OVERLOADED"

        process.send_signal(signal.SIGTERM)
        with pytest.raises(grpc.RpcError) as stopped:
            list(responses)
    finally:
        release.set()
    assert stopped.value.code() == grpc.StatusCode.UNAVAILABLE, stopped.value.details()
    info = error_info(stopped.value)
    assert info.reason == "SHUTTING_DOWN"
    # Searched up to feed second 610 (600 before this stream, 10 in it): resume the overlap (5 s) before.
    assert float(info.metadata["resume_from_seconds"]) == pytest.approx(605.0)
    assert process.wait(60) == 0
