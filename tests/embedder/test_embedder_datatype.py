"""The gateway sends windows in the datatype the served model config declares, and keeps embedding while a rolling
update changes it: real tritonservers, one declaring FP16 (the session's embedder) and one FP32."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as triton
from prometheus_client import REGISTRY
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from audiosearch.common.channels import CHANNEL_OPTIONS
from audiosearch.common.errors import Unavailable
from audiosearch.common.loudness import normalise_loudness
from audiosearch.embedder.launch import EmbedderHandle, start_embedder
from audiosearch.gateway.backends.embedder import MODEL_NAME, EmbedderClient, waveform_datatype
from tests.embedder.sounds import plucked_string, rain, siren


@pytest.fixture(scope="module")
def float32_embedder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbedderHandle]:
    handle = start_embedder(tmp_path_factory.mktemp("float32-embedder"), untrained=True, seed=0,
                            env={"EMBEDDER_PRECISION": "float32", "EMBEDDER_WAVEFORM_DTYPE": "float32"})
    try:
        yield handle
    finally:
        handle.stop()


def windows() -> np.ndarray:
    return normalise_loudness(np.stack([plucked_string(), rain(), siren()]))


def embed_with(address: str, sent: np.ndarray) -> np.ndarray:
    client = EmbedderClient(address, timeout_seconds=120)
    try:
        return client.embed(sent).vectors
    finally:
        client.close()


def cosines(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return np.sum(left * right, axis=1)


def test_the_gateway_reads_each_embedders_waveform_datatype(embedder_address: str,
                                                            float32_embedder: EmbedderHandle) -> None:
    for address, expected in ((embedder_address, "FP16"), (float32_embedder.grpc_address, "FP32")):
        client = EmbedderClient(address, timeout_seconds=120)
        try:
            assert client.served_model().waveform_datatype == expected
        finally:
            client.close()


def test_both_datatypes_embed_the_gateways_windows_alike(embedder_address: str,
                                                         float32_embedder: EmbedderHandle) -> None:
    half = embed_with(embedder_address, windows())
    full = embed_with(float32_embedder.grpc_address, windows())

    assert cosines(half, full).min() > 0.9999


def test_a_fleet_mid_rollout_between_datatypes_embeds_every_request(embedder_address: str,
                                                                    float32_embedder: EmbedderHandle) -> None:
    # Both servers behind one target, as pods behind a headless service: the channel round-robins over them.
    fleet = f"ipv4:{embedder_address},{float32_embedder.grpc_address}"
    expected = embed_with(float32_embedder.grpc_address, windows())

    refused_before = refusals_counted()
    client = EmbedderClient(fleet, timeout_seconds=120)
    try:
        results = [client.embed(windows()).vectors for _ in range(8)]
    finally:
        client.close()

    assert all(cosines(vectors, expected).min() > 0.9999 for vectors in results)
    assert refusals_counted() > refused_before
    # Without the gateway's fallback the FP32 pod refuses its share of the FP16 requests.
    outcomes = fp16_only_outcomes(fleet, attempts=8)
    assert set(outcomes) == {"OK", "StatusCode.INVALID_ARGUMENT"}


def refusals_counted() -> float:
    return REGISTRY.get_sample_value("audiosearch_embed_datatype_refusals_total") or 0.0


def fp16_only_outcomes(target: str, attempts: int) -> list[str]:
    client = triton.InferenceServerClient(target, channel_args=CHANNEL_OPTIONS)
    outcomes = []
    try:
        for _ in range(attempts):
            waveform = triton.InferInput("waveform", [3, windows().shape[1]], "FP16")
            waveform.set_data_from_numpy(windows().astype(np.float16))
            try:
                client.infer(MODEL_NAME, [waveform], client_timeout=120)
                outcomes.append("OK")
            except InferenceServerException as error:
                outcomes.append(str(error.status()))
    finally:
        client.close()
    return outcomes


def test_a_request_the_embedder_refuses_in_both_datatypes_reports_the_first_refusal(
        float32_embedder: EmbedderHandle) -> None:
    client = EmbedderClient(float32_embedder.grpc_address, timeout_seconds=120)
    try:
        with pytest.raises(Unavailable, match=r"the embedder failed: .*unexpected shape"):
            client.embed(np.zeros((1, 2, 16000), np.float32))  # a 3-d tensor is refused whatever its datatype
    finally:
        client.close()


@pytest.mark.parametrize(("declared", "expected"), [
    (model_config_pb2.DataType.TYPE_FP16, "FP16"),
    (model_config_pb2.DataType.TYPE_FP32, "FP32"),
])
def test_the_waveform_datatype_comes_from_the_config(declared: int, expected: str) -> None:
    config = model_config_pb2.ModelConfig(input=[model_config_pb2.ModelInput(name="waveform", data_type=declared)])

    assert waveform_datatype(config) == expected


@pytest.mark.parametrize("config", [
    model_config_pb2.ModelConfig(input=[model_config_pb2.ModelInput(
        name="waveform", data_type=model_config_pb2.DataType.TYPE_INT16)]),
    model_config_pb2.ModelConfig(input=[model_config_pb2.ModelInput(
        name="audio", data_type=model_config_pb2.DataType.TYPE_FP32)]),
])
def test_an_embedder_without_a_float_waveform_input_is_unavailable(config: model_config_pb2.ModelConfig) -> None:
    with pytest.raises(Unavailable, match="the gateway sends FP16 or FP32"):
        waveform_datatype(config)
