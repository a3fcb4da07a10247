"""Levelling the windows the embedder sees: one loudness for every window, over one fixed noise floor.

The gateway levels every window it sends; the embedder's int8 backbone is calibrated on windows levelled the same
way, so its activation ranges are those of the windows it serves.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

TARGET_RMS = 0.1  # -20 dBFS: each window is brought to one loudness, so a gain change cannot move a vector
# Every window gets the same faint noise floor, 40 dB under its loudness: digital silence, codec padding and
# empty bands (telephone or 8 kHz audio) then all read as the same floor instead of log-mel values near
# -100 dB that dominate the vector. Fixed noise, so equal windows still give equal vectors.
NOISE_FLOOR_DB = -40.0
_FLOOR_SEED = 20_240_601


def normalise_loudness(windows: np.ndarray) -> np.ndarray:
    """Each window at TARGET_RMS, over the fixed noise floor (NOISE_FLOOR_DB under it)."""
    rms = np.sqrt(np.mean(np.square(windows, dtype=np.float64), axis=1, keepdims=True))
    levelled = windows * (TARGET_RMS / np.maximum(rms, 1e-8))
    return (levelled + _noise_floor(windows.shape[1])).astype(np.float32)


@lru_cache(maxsize=8)
def _noise_floor(length: int) -> np.ndarray:
    noise = np.random.default_rng(_FLOOR_SEED).standard_normal(length)
    floor = noise * (TARGET_RMS * 10 ** (NOISE_FLOOR_DB / 20) / np.sqrt(np.mean(np.square(noise))))
    floor.setflags(write=False)
    return floor
