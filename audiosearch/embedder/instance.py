"""What a Triton model instance needs to build its engine, carried as model config `parameters`.

The launcher writes them into the generated `config.pbtxt`; each model instance reads them back in
`initialize`. Triton parameters are strings, so this is the one place that converts both ways. The public ones
(identity, dimension, sample rate, untrained) are what clients read with `get_model_config`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from audiosearch.embedder.engine import Precision, RuntimeOptions, WeightsSource
from audiosearch.embedder.identity import ModelIdentity

_INTERNAL_PREFIX = "engine."


@dataclass(frozen=True)
class InstancePlan:
    """Everything but the device, which Triton assigns per instance (KIND_CPU or a GPU id)."""

    checkpoint_path: str = ""
    checkpoint_sha256: str = ""
    untrained_seed: int = -1
    precision: Precision = "float32"
    num_threads: int = 0
    channels_last: bool = False
    compile: bool = False
    batch_samples: int = 64 * 32000
    max_samples: int = 60 * 32000
    centering_components: int = 4

    def weights(self) -> WeightsSource:
        if self.untrained_seed >= 0:
            return WeightsSource(untrained_seed=self.untrained_seed)
        # The launcher verified the file; pinning its sha256 makes the instance load exactly that file.
        return WeightsSource(Path(self.checkpoint_path), expected_sha256=self.checkpoint_sha256 or None)

    def runtime(self, device: str) -> RuntimeOptions:
        return RuntimeOptions(
            device=device,
            precision=self.precision,
            num_threads=self.num_threads,
            channels_last=self.channels_last,
            compile=self.compile,
            batch_samples=self.batch_samples,
            max_samples=self.max_samples,
            centering_components=self.centering_components,
        )

    def to_parameters(self, identity: ModelIdentity) -> dict[str, str]:
        internal = {f"{_INTERNAL_PREFIX}{key}": _to_string(value) for key, value in asdict(self).items()}
        return {**identity.triton_parameters(), **internal}

    @classmethod
    def from_parameters(cls, parameters: dict[str, str]) -> InstancePlan:
        values: dict[str, object] = {}
        for field in fields(cls):
            raw = parameters.get(f"{_INTERNAL_PREFIX}{field.name}")
            if raw is not None:
                values[field.name] = _from_string(raw, type(field.default))
        return cls(**values)  # type: ignore[arg-type]


def _to_string(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _from_string(raw: str, kind: type) -> object:
    if kind is bool:
        return raw.lower() == "true"
    return kind(raw)


def parameters_from_model_config(model_config: dict) -> dict[str, str]:
    """{'parameters': {'key': {'string_value': 'v'}}} (Triton's JSON model config) -> {'key': 'v'}."""
    return {key: value.get("string_value", "") for key, value in model_config.get("parameters", {}).items()}


def device_for_instance(kind: str, device_id: str) -> str:
    """Triton's `model_instance_kind` / `model_instance_device_id` -> a torch device."""
    return f"cuda:{device_id}" if kind.upper() == "GPU" else "cpu"
