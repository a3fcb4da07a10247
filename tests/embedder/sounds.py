"""Small synthetic sounds for embedder tests, unlike the centering probe set (no pure noises or tones)."""

from __future__ import annotations

import numpy as np

RATE = 32000


def _time(seconds: float) -> np.ndarray:
    return np.arange(int(seconds * RATE)) / RATE


def plucked_string(seconds: float = 2.0, f0: float = 196.0) -> np.ndarray:
    t = _time(seconds)
    tone = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8))
    return (0.3 * tone * np.exp(-3 * (t % 0.5))).astype(np.float32)


def rain(seconds: float = 2.0, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    drops = np.zeros(int(seconds * RATE))
    drops[rng.integers(0, drops.size, 300)] = rng.uniform(0.2, 1.0, 300)
    kernel = np.exp(-np.arange(200) / 30.0) * np.sin(np.arange(200) * 0.9)
    return (0.3 * np.convolve(drops, kernel, mode="same")).astype(np.float32)


def siren(seconds: float = 2.0) -> np.ndarray:
    t = _time(seconds)
    phase = 2 * np.pi * 900 * t + 100 * np.sin(2 * np.pi * 1.5 * t)
    return (0.2 * np.sin(phase)).astype(np.float32)
