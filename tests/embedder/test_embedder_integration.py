"""The real tritonserver started by the launcher: the contract the gateway relies on, end to end."""

from __future__ import annotations

import signal
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from audiosearch.common.allocator import JEMALLOC_LIBRARY, find_jemalloc
from audiosearch.embedder.engine import Embedder, RuntimeOptions, WeightsSource
from audiosearch.embedder.launch import EmbedderHandle, start_embedder
from devtools.support.processes import process_tree
from tests.embedder.sounds import plucked_string, rain, siren

MODEL = "panns_cnn14"


def infer(address: str, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    client = triton.InferenceServerClient(address)
    try:
        waveform = triton.InferInput("waveform", list(windows.shape), "FP16")
        waveform.set_data_from_numpy(np.ascontiguousarray(windows, dtype=np.float16))
        outputs = [triton.InferRequestedOutput("embedding"), triton.InferRequestedOutput("tags")]
        result = client.infer(MODEL, [waveform], outputs=outputs, client_timeout=120)
        return result.as_numpy("embedding"), result.as_numpy("tags")
    finally:
        client.close()


def windows() -> np.ndarray:
    return np.stack([plucked_string(), rain(), siren()])


def test_a_batch_of_three_windows_gives_unit_embeddings_and_tag_probabilities(embedder_address: str) -> None:
    embeddings, tags = infer(embedder_address, windows())

    assert embeddings.shape == (3, 2048)
    assert tags.shape == (3, 527)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert ((tags >= 0) & (tags <= 1)).all()


def test_the_server_is_deterministic_and_agrees_with_the_engine(embedder_address: str) -> None:
    first, _ = infer(embedder_address, windows())
    second, _ = infer(embedder_address, windows())
    engine = Embedder.load(WeightsSource(untrained_seed=0), RuntimeOptions())
    local = engine.embed(windows().astype(np.float16)).embeddings

    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, local, atol=1e-5)


def test_the_model_config_carries_the_identity(embedder_address: str) -> None:
    client = triton.InferenceServerClient(embedder_address)
    config = client.get_model_config(MODEL, as_json=True)["config"]
    client.close()
    parameters = {key: value.get("string_value", "") for key, value in config["parameters"].items()}

    assert parameters["model_identity"].startswith("panns_cnn14:untrained-seed0:center=")
    assert parameters["model_identity"] == f"{parameters['model_name']}:{parameters['model_version']}"
    assert parameters["embedding_dim"] == "2048"
    assert parameters["sample_rate"] == "32000"
    assert parameters["untrained"] == "true"
    assert config["max_batch_size"] == 64


def test_eight_concurrent_requests_all_succeed(embedder_address: str) -> None:
    batches = [windows()[: 1 + i % 3] * (0.5 + i / 10) for i in range(8)]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda batch: infer(embedder_address, batch), batches))

    assert [embeddings.shape for embeddings, _ in results] == [(1 + i % 3, 2048) for i in range(8)]


def test_a_short_sound_is_accepted(embedder_address: str) -> None:
    embeddings, _ = infer(embedder_address, rain()[None, :800])

    assert np.isfinite(embeddings).all()


def test_a_non_finite_waveform_is_rejected_with_a_message(embedder_address: str) -> None:
    broken = windows()[:1].copy()
    broken[0, 10] = np.inf

    with pytest.raises(InferenceServerException, match="invalid waveform: waveform contains NaN or infinite"):
        infer(embedder_address, broken)


def test_sigterm_stops_the_server_cleanly(tmp_path: Path) -> None:
    handle: EmbedderHandle = start_embedder(tmp_path / "embedder", untrained=True, seed=1)
    try:
        infer(handle.grpc_address, windows()[:1])
        handle.process.send_signal(signal.SIGTERM)
        code = handle.process.wait(60)
    finally:
        handle.stop()

    assert code == 0
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", handle.grpc_port)) != 0
    assert "tritonserver exited" in handle.log_path.read_text()


@pytest.mark.skipif(find_jemalloc() is None, reason="libjemalloc2 is not installed on this machine")
def test_tritonserver_runs_on_jemalloc_and_the_model_stub_on_glibc(embedder_server: EmbedderHandle) -> None:
    mapped = {}
    for pid in process_tree(embedder_server.process.pid)[1:]:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
        mapped[name] = JEMALLOC_LIBRARY in Path(f"/proc/{pid}/maps").read_text()
    assert mapped.get("tritonserver") is True
    assert mapped.get("triton_python_b") is False  # the comm name is cut at 15 characters
