"""Work classes: the Triton priority and the chunking each kind of work gets, and the gateway's admission of
background chunks (no servers: a stand-in Triton client)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest
from tritonclient.grpc import model_config_pb2

from audiosearch.gateway.backends import embedder as embedder_module
from audiosearch.gateway.backends.admission import Admission, BackgroundLimits, Work
from audiosearch.gateway.backends.embedder import EmbedderClient
from audiosearch.gateway.settings import GatewaySettings

WINDOW = 64_000


class FakeTriton:
    """Answers every infer with window i's embedding filled with its first sample, and records what was sent."""

    def __init__(self, priority_levels: int) -> None:
        self.priority_levels = priority_levels
        self.sent: list[tuple[int, int]] = []  # (windows, priority)
        self._lock = threading.Lock()

    def get_model_config(self, name, client_timeout):
        config = model_config_pb2.ModelConfig(name=name, max_batch_size=64)
        config.input.add(name="waveform", data_type=model_config_pb2.TYPE_FP32, dims=[-1])
        config.dynamic_batching.priority_levels = self.priority_levels
        for key, value in {"model_version": "v", "embedding_dim": "4", "sample_rate": "32000"}.items():
            config.parameters[key].string_value = value
        return SimpleNamespace(config=config)

    def infer(self, model, inputs, outputs, client_timeout, headers, priority):
        count = inputs[0].shape()[0]
        with self._lock:
            self.sent.append((count, priority))
        first = np.frombuffer(inputs[0]._raw_content, np.float32).reshape(count, -1)[:, 0]
        embedding = np.repeat(first[:, None], 4, axis=1).astype(np.float32)
        return SimpleNamespace(as_numpy=lambda name: embedding if name == "embedding"
                               else np.zeros((count, 527), np.float32))

    def close(self) -> None:
        pass


def client(monkeypatch: pytest.MonkeyPatch, priority_levels: int = 3, chunk_windows: int = 8) -> tuple:
    triton = FakeTriton(priority_levels)
    monkeypatch.setattr(embedder_module, "triton_client", lambda url, tls: triton)
    return EmbedderClient("triton:8001", 10.0, 4, background=BackgroundLimits(chunk_windows, 2, 5.0)), triton


def windows(count: int) -> np.ndarray:
    return np.repeat(np.arange(count, dtype=np.float32)[:, None], WINDOW, axis=1) / 1000


def test_a_short_interactive_query_is_one_request_at_the_highest_priority(monkeypatch):
    embedder, triton = client(monkeypatch)
    embedder.embed(windows(13), Work.INTERACTIVE)
    assert triton.sent == [(13, 1)]


@pytest.mark.parametrize(("work", "level"), [(Work.MONITOR, 2), (Work.BULK, 3)])
def test_background_work_goes_in_chunks_at_its_own_priority_and_in_order(monkeypatch, work, level):
    embedder, triton = client(monkeypatch)
    embedded = embedder.embed(windows(20), work)
    assert sorted(triton.sent) == [(4, level), (8, level), (8, level)]
    np.testing.assert_allclose(embedded.vectors[:, 0], np.arange(20) / 1000)


def test_an_interactive_query_longer_than_a_batch_is_chunked_at_the_interactive_priority(monkeypatch):
    embedder, triton = client(monkeypatch, chunk_windows=16)
    embedded = embedder.embed(windows(100), Work.INTERACTIVE)
    assert sorted(triton.sent) == [(4, 1)] + [(16, 1)] * 6
    np.testing.assert_allclose(embedded.vectors[:, 0], np.arange(100) / 1000)


def test_an_embedder_without_priority_levels_gets_requests_without_a_priority(monkeypatch):
    embedder, triton = client(monkeypatch, priority_levels=0)
    embedder.embed(windows(3), Work.INTERACTIVE)
    embedder.embed(windows(3), Work.BULK)
    assert triton.sent == [(3, 0), (3, 0)]


def test_the_settings_carry_the_background_limits():
    limits = GatewaySettings(embed_background_chunk_windows=4, embed_background_parallel_requests=3,
                             embed_background_max_wait_seconds=1.5).embed_background()
    assert limits == BackgroundLimits(4, 3, 1.5)


def enter_in_thread(admission: Admission, work: Work, admitted: list[Work]) -> threading.Thread:
    def enter() -> None:
        admission.enter_background(work)
        admitted.append(work)

    thread = threading.Thread(target=enter, daemon=True)
    thread.start()
    return thread


def wait_for_waiting(admission: Admission, count: int) -> None:
    for _ in range(2000):
        with admission._condition:
            if len(admission._waiting) == count:
                return
        threading.Event().wait(0.005)
    raise AssertionError(f"{count} waiting tickets never showed")


def test_a_short_interactive_request_takes_a_place_from_background_chunks():
    admission = Admission(parallel=2, max_wait_seconds=3600)
    admitted: list[Work] = []
    admission.enter_background(Work.MONITOR)
    with admission.interactive():
        thread = enter_in_thread(admission, Work.MONITOR, admitted)
        wait_for_waiting(admission, 1)
        assert admitted == []
    thread.join(10)
    assert admitted == [Work.MONITOR]


def test_a_chunk_that_waited_its_limit_starts_beside_interactive_requests():
    admission = Admission(parallel=2, max_wait_seconds=0.0)
    with admission.interactive(), admission.interactive():
        assert admission.enter_background(Work.BULK) >= 0.0


def test_waiting_chunks_are_admitted_by_class_then_arrival_within_the_parallel_limit():
    admission = Admission(parallel=1, max_wait_seconds=3600)
    admission.enter_background(Work.BULK)  # holds the only slot
    admitted: list[Work] = []
    threads = []
    for count, work in enumerate([Work.BULK, Work.MONITOR, Work.INTERACTIVE], start=1):
        threads.append(enter_in_thread(admission, work, admitted))
        wait_for_waiting(admission, count)
    assert admitted == []
    for expected in ([Work.INTERACTIVE], [Work.INTERACTIVE, Work.MONITOR],
                     [Work.INTERACTIVE, Work.MONITOR, Work.BULK]):
        admission.leave_background()
        wait_for_waiting(admission, 3 - len(expected))
        for _ in range(2000):
            if len(admitted) == len(expected):
                break
            threading.Event().wait(0.005)
        assert admitted == expected
    for thread in threads:
        thread.join(10)
