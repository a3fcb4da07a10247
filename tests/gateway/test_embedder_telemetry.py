"""The gateway's embedder calls: batch sizes and durations measured, and the request's trace sent to Triton."""

from __future__ import annotations

import threading
import time

import numpy as np
from prometheus_client import REGISTRY

from audiosearch.common.tracing import configure_tracing, tracer
from audiosearch.gateway.backends.embedder import EmbedderClient, ServedModel
from audiosearch.v1 import audiosearch_pb2 as pb


class FakeTriton:
    """Answers infer like Triton would (unit vectors, flat tags) and keeps the headers of every call."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()

    def infer(self, model_name, inputs, outputs=None, client_timeout=None, headers=None, priority=0):
        batch = inputs[0].shape()[0]
        with self._lock:
            self.headers.append(dict(headers or {}))
        embedding = np.zeros((batch, 4), np.float32)
        embedding[:, 0] = 1.0
        tags = np.full((batch, 527), 0.5, np.float32)
        return type("Result", (), {"as_numpy": lambda _self, name: embedding if name == "embedding" else tags})()

    def close(self) -> None:
        pass


def client_with_fake_triton(max_batch_size: int) -> tuple[EmbedderClient, FakeTriton]:
    client = EmbedderClient("127.0.0.1:1", timeout_seconds=5)
    client._client.close()
    fake = FakeTriton()
    client._client = fake
    identity = pb.ModelIdentity(name="panns_cnn14", version="test", embedding_dim=4, sample_rate_hz=32000)
    client._served = ServedModel(identity, max_batch_size, waveform_datatype="FP16")
    client._served_read_at = time.monotonic()
    return client, fake


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def test_every_triton_request_carries_the_trace_of_the_request_that_embeds() -> None:
    configure_tracing("tests")
    client, fake = client_with_fake_triton(max_batch_size=4)
    try:
        with tracer.start_as_current_span("ingest") as span:
            client.embed(np.zeros((10, 64), np.float32))
    finally:
        client.close()
    trace_id = f"{span.get_span_context().trace_id:032x}"
    assert len(fake.headers) == 3
    assert all(headers["traceparent"].split("-")[1] == trace_id for headers in fake.headers)


def test_batch_sizes_and_durations_of_triton_requests_are_measured() -> None:
    client, _ = client_with_fake_triton(max_batch_size=4)
    before = (sample("audiosearch_embed_batch_size_count"), sample("audiosearch_embed_batch_size_sum"),
              sample("audiosearch_embed_request_duration_seconds_count"))
    try:
        client.embed(np.zeros((10, 64), np.float32))
    finally:
        client.close()
    after = (sample("audiosearch_embed_batch_size_count"), sample("audiosearch_embed_batch_size_sum"),
             sample("audiosearch_embed_request_duration_seconds_count"))
    assert (after[0] - before[0], after[1] - before[1], after[2] - before[2]) == (3, 10, 3)
