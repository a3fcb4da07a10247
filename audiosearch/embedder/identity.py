"""The model identity: what a collection is bound to, so vectors of different models never mix."""

from __future__ import annotations

from dataclasses import dataclass

from audiosearch.embedder.cnn14 import CLASSES_NUM, EMBEDDING_DIM, SAMPLE_RATE

MODEL_NAME = "panns_cnn14"
TRITON_MODEL_NAME = "panns_cnn14"
WAVEFORM_INPUT = "waveform"  # the served model's one input


@dataclass(frozen=True)
class ModelIdentity:
    """`panns_cnn14:sha256=<16 hex>:center=<8 hex>` or `panns_cnn14:untrained-seed<N>:center=<8 hex>`, with
    `:int8-<8 hex>` after the weights when the backbone runs quantized."""

    checkpoint_sha256: str | None
    seed: int | None
    centering_tag: str
    quantization_tag: str | None = None
    embedding_dim: int = EMBEDDING_DIM
    sample_rate: int = SAMPLE_RATE
    tag_count: int = CLASSES_NUM

    def __post_init__(self) -> None:
        if (self.checkpoint_sha256 is None) == (self.seed is None):
            raise ValueError("a model identity names either a checkpoint sha256 or an untrained seed")

    @property
    def untrained(self) -> bool:
        return self.checkpoint_sha256 is None

    @property
    def weights(self) -> str:
        if self.checkpoint_sha256 is None:
            return f"untrained-seed{self.seed}"
        return f"sha256={self.checkpoint_sha256[:16]}"

    @property
    def version(self) -> str:
        quantized = f":int8-{self.quantization_tag}" if self.quantization_tag else ""
        return f"{self.weights}{quantized}:center={self.centering_tag}"

    def __str__(self) -> str:
        return f"{MODEL_NAME}:{self.version}"

    def triton_parameters(self) -> dict[str, str]:
        """The public config parameters clients read with `get_model_config` (all strings in Triton)."""
        parameters = {
            "model_identity": str(self),
            "model_name": MODEL_NAME,
            "model_version": self.version,
            "embedding_dim": str(self.embedding_dim),
            "sample_rate": str(self.sample_rate),
            "tag_count": str(self.tag_count),
            "untrained": "true" if self.untrained else "false",
        }
        if self.checkpoint_sha256:
            parameters["checkpoint_sha256"] = self.checkpoint_sha256
        return parameters
