"""The Python-backend model outside Triton, with a stand-in for the stub's `triton_python_backend_utils`."""

from __future__ import annotations

import importlib
import json
import sys
import types
from dataclasses import dataclass, field

import numpy as np
import pytest

from audiosearch.embedder.engine import WeightsSource, identity_for
from audiosearch.embedder.instance import InstancePlan
from tests.embedder.sounds import rain, siren


@dataclass
class FakeTensor:
    name: str
    array: np.ndarray

    def as_numpy(self) -> np.ndarray:
        return self.array


@dataclass
class FakeResponse:
    output_tensors: list[FakeTensor]
    error: object = None
    outputs: dict[str, np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        self.outputs = {tensor.name: tensor.array for tensor in self.output_tensors}


@dataclass
class FakeRequest:
    waveform: np.ndarray


def fake_backend_utils() -> types.ModuleType:
    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor = FakeTensor  # type: ignore[attr-defined]
    module.InferenceResponse = FakeResponse  # type: ignore[attr-defined]
    module.TritonError = str  # type: ignore[attr-defined]
    module.get_input_tensor_by_name = lambda request, name: FakeTensor(name, request.waveform)  # type: ignore[attr-defined]
    return module


@pytest.fixture
def model_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake_backend_utils())
    monkeypatch.delitem(sys.modules, "audiosearch.embedder.triton_model", raising=False)
    module = importlib.import_module("audiosearch.embedder.triton_model")
    monkeypatch.setattr(module, "configure_logging", lambda *_args: None)  # keep pytest's log handlers
    return module


def initialize_args(announced_identity: str | None = None) -> dict[str, str]:
    identity = identity_for(WeightsSource(untrained_seed=0), None, 4, "float32")
    plan = InstancePlan(untrained_seed=0, num_threads=2, centering_components=4)
    parameters = plan.to_parameters(identity)
    if announced_identity is not None:
        parameters["model_identity"] = announced_identity
    config = {"parameters": {key: {"string_value": value} for key, value in parameters.items()}}
    return {
        "model_config": json.dumps(config),
        "model_instance_kind": "CPU",
        "model_instance_device_id": "0",
        "model_instance_name": "panns_cnn14_0_0",
    }


def test_an_instance_refuses_a_config_announcing_another_identity(model_module: types.ModuleType) -> None:
    model = model_module.TritonPythonModel()

    with pytest.raises(RuntimeError, match="model identity mismatch"):
        model.initialize(initialize_args("panns_cnn14:sha256=0123456789abcdef:center=00000000"))


def test_execute_answers_every_request_in_order(model_module: types.ModuleType) -> None:
    model = model_module.TritonPythonModel()
    model.initialize(initialize_args())
    broken = rain()[None].copy()
    broken[0, 0] = np.nan

    responses = model.execute(
        [FakeRequest(np.stack([rain(), siren()])), FakeRequest(broken), FakeRequest(siren()[None])]
    )

    assert responses[0].error is None
    assert responses[0].outputs["embedding"].shape == (2, 2048)
    assert responses[0].outputs["tags"].shape == (2, 527)
    assert "invalid waveform" in str(responses[1].error)
    np.testing.assert_allclose(
        responses[2].outputs["embedding"], responses[0].outputs["embedding"][1:], atol=1e-5
    )
