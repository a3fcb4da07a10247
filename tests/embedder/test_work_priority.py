"""Triton's priority levels on the real tritonserver (Python backend): the served config carries them, a request
at the interactive level overtakes the bulk requests queued before it, and the gateway's chunked background
embedding gives the vectors one request gives."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as triton

from audiosearch.embedder.launch import EmbedderHandle, start_embedder
from audiosearch.gateway.backends.admission import BackgroundLimits, Work
from audiosearch.gateway.backends.embedder import EmbedderClient
from tests.embedder.sounds import plucked_string, rain, siren

BATCH = 4  # the model's max_batch_size here: each request below is a whole batch, so none is merged with another
QUEUED = 6


@pytest.fixture(scope="module")
def one_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbedderHandle]:
    # One instance: every request waits for the one before it, so the order requests finish in is the queue's.
    handle = start_embedder(tmp_path_factory.mktemp("priority"), untrained=True, seed=0,
                            env={"EMBEDDER_PRECISION": "float32", "EMBEDDER_INSTANCE_COUNT": "1",
                                 "EMBEDDER_NUM_THREADS": "1", "EMBEDDER_MAX_BATCH_SIZE": str(BATCH),
                                 "EMBEDDER_WAVEFORM_DTYPE": "float32"})
    try:
        yield handle
    finally:
        handle.stop()


def windows(count: int) -> np.ndarray:
    sounds = [plucked_string(), rain(), siren()]
    return np.stack([sounds[index % len(sounds)] * (1.0 - index / (2 * count)) for index in range(count)]
                    ).astype(np.float32)


def test_the_served_config_has_a_level_per_kind_of_work(one_instance):
    client = triton.InferenceServerClient(one_instance.grpc_address)
    batching = client.get_model_config("panns_cnn14").config.dynamic_batching
    assert batching.priority_levels == len(Work)
    assert batching.default_priority_level == Work.INTERACTIVE


def test_an_interactive_request_overtakes_the_bulk_requests_queued_before_it(one_instance):
    client = triton.InferenceServerClient(one_instance.grpc_address)
    finished: list[str] = []
    lock = threading.Lock()
    done = threading.Semaphore(0)
    batch = windows(BATCH)

    def send(name: str, work: Work) -> None:
        waveform = triton.InferInput("waveform", list(batch.shape), "FP32")
        waveform.set_data_from_numpy(batch)

        def on_done(result, error) -> None:
            with lock:
                finished.append(name if error is None else f"{name}: {error}")
            done.release()

        client.async_infer("panns_cnn14", [waveform], on_done, outputs=[triton.InferRequestedOutput("embedding")],
                           priority=int(work), client_timeout=300)

    for index in range(QUEUED):
        send(f"bulk-{index}", Work.BULK)
    send("interactive", Work.INTERACTIVE)
    for _ in range(QUEUED + 1):
        assert done.acquire(timeout=300)
    assert sorted(finished) == sorted([f"bulk-{index}" for index in range(QUEUED)] + ["interactive"])
    # In arrival order it would finish last; by priority it follows the one or two bulk requests already running
    # or picked when it arrived.
    assert finished.index("interactive") <= 2, finished
    assert finished[-1].startswith("bulk-")


def test_chunked_background_embedding_gives_the_vectors_of_one_request(one_instance):
    client = EmbedderClient(one_instance.grpc_address, 120.0, 4, background=BackgroundLimits(chunk_windows=3))
    try:
        assert client.served_model().priority_levels == len(Work)
        clip = windows(BATCH)
        whole = client.embed(clip, Work.INTERACTIVE)
        chunked = client.embed(clip, Work.MONITOR)
        longer = client.embed(np.concatenate([clip, clip[:2]]), Work.INTERACTIVE)  # over one batch: chunked too
    finally:
        client.close()
    np.testing.assert_allclose(chunked.vectors, whole.vectors, atol=1e-4)
    np.testing.assert_allclose(chunked.tag_probabilities, whole.tag_probabilities, atol=1e-4)
    np.testing.assert_allclose(longer.vectors[:BATCH], whole.vectors, atol=1e-4)
