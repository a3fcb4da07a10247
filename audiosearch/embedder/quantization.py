"""int8 Cnn14 for CPUs: the backbone quantized statically, calibrated on the centering probe set levelled as the
gateway levels its windows.

Convolutions, batch norms and the fully connected layers run in int8 (weights per output channel, activations per
tensor with ranges observed on a fixed calibration set); the log-mel front end stays float32. On a CPU with
AVX512-VNNI the int8 model runs several times float32's speed (docs/benchmarks.md, bench.throughput). Its vectors
are not float32's: the recipe's hash is part of the model identity, so an int8 collection never mixes with a
float32 one.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from audiosearch.common.loudness import NOISE_FLOOR_DB, TARGET_RMS, normalise_loudness
from audiosearch.embedder.centering import RECIPE_SEED, RECIPE_VERSION, probe_signals
from audiosearch.embedder.cnn14 import SAMPLE_RATE, Cnn14, Cnn14Output

RECIPE_VERSION_INT8 = "int8-v2"
BACKEND = "x86"  # fbgemm's and oneDNN's kernels, chosen per op by torch
CALIBRATION_BATCH = 16


class _Backbone(nn.Module):
    """Cnn14's backbone as a traceable module: log-mel -> (relu(fc1) embedding, tag probabilities)."""

    def __init__(self, model: Cnn14) -> None:
        super().__init__()
        self.model = model

    def forward(self, logmel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model.backbone(logmel)
        return out.embedding, out.clipwise


def recipe_tag() -> str:
    """Short hash naming the quantization recipe: version, backend and calibration set (the centering probes, and
    the level and noise floor they are brought to)."""
    spec = {
        "version": RECIPE_VERSION_INT8,
        "backend": BACKEND,
        "calibration": [RECIPE_VERSION, RECIPE_SEED],
        "level": [TARGET_RMS, NOISE_FLOOR_DB],
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]


def calibration_waveforms() -> np.ndarray:
    """The windows the ranges are observed on: the probe set, levelled as the gateway levels what it sends ((n,
    samples) float32 at 32 kHz, always the same). Activation ranges follow the input's level, so they are observed at
    the level of the windows served: ranges from unlevelled probes cost int8 much of its accuracy."""
    return normalise_loudness(np.stack([signal for _, signal in probe_signals(SAMPLE_RATE)]))


def quantize_backbone(model: Cnn14) -> Callable[[torch.Tensor], Cnn14Output]:
    """An int8 copy of `model`'s backbone (float32 log-mel in, float32 outputs). The float backbone's layers are
    taken out of `model`, which keeps only its log-mel front end: two copies would hold twice the memory."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = BACKEND
    with torch.inference_mode():
        logmel = model.logmel(torch.from_numpy(calibration_waveforms()))
    with warnings.catch_warnings():
        # torch 2.x announces FX quantization's move to torchao on every call; the pinned torch still ships it.
        warnings.simplefilter("ignore")
        observed = prepare_fx(
            _Backbone(model).eval(), get_default_qconfig_mapping(BACKEND), (logmel[:1],)
        )
        with torch.no_grad():
            for start in range(0, len(logmel), CALIBRATION_BATCH):
                observed(logmel[start : start + CALIBRATION_BATCH])
        quantized = convert_fx(observed)
    del observed
    model.release_backbone()

    def backbone(logmel: torch.Tensor) -> Cnn14Output:
        embedding, clipwise = quantized(logmel)
        return Cnn14Output(embedding=embedding, clipwise=clipwise)

    return backbone
