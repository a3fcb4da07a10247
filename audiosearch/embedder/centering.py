"""Embedding centering: remove the direction that every Cnn14 embedding shares.

Raw Cnn14 embeddings (post-ReLU, all non-negative; untrained ones even more so) point mostly along one common
direction, so unrelated sounds have cosines of 0.9 and more. At model load a fixed, seeded set of synthetic
signals (noises of several colours, tones, chirps, clicks, modulated and decaying sounds) is embedded; with their
mean `mu` and their top principal directions `P`, the output is `normalize(e - mu - P(e - mu))`. A few principal
directions go as well as the mean because the shared direction is not one vector but a small subspace
(`python -m bench.embedder_engine separation` measures the separation). The recipe is deterministic and
versioned; its hash is part of the model identity, so a change of recipe is a change of model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

RECIPE_VERSION = "centering-v1"
RECIPE_SEED = 1234
PROBE_SECONDS = 2.0
NOISE_COLOURS = {"white": 0.0, "pink": 1.0, "brown": 2.0, "blue": -1.0}
LEVELS_DBFS = (-6.0, -26.0)
TONE_HZ = (110.0, 440.0, 1000.0, 3000.0, 8000.0)


def _rms_normalise(signal: np.ndarray, dbfs: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(signal)))) or 1.0
    return signal * (10.0 ** (dbfs / 20.0) / rms)


def _coloured_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1]
    return np.fft.irfft(spectrum / freqs ** (exponent / 2.0), n)


def _band_noise(rng: np.random.Generator, n: int, sr: int, low: float, high: float) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    spectrum[(freqs < low) | (freqs > high)] = 0.0
    return np.fft.irfft(spectrum, n)


def _harmonic(t: np.ndarray, f0: float, partials: int, sr: int) -> np.ndarray:
    out = np.zeros_like(t)
    for k in range(1, partials + 1):
        if k * f0 < sr / 2:
            out += np.sin(2 * np.pi * k * f0 * t) / k
    return out


def _chirp(t: np.ndarray, f_start: float, f_end: float) -> np.ndarray:
    ratio = f_end / f_start
    duration = t[-1] + (t[1] - t[0])
    phase = 2 * np.pi * f_start * duration / np.log(ratio) * (ratio ** (t / duration) - 1.0)
    return np.sin(phase)


def _clicks(n: int, sr: int, rate_hz: float) -> np.ndarray:
    out = np.zeros(n)
    out[:: max(1, int(sr / rate_hz))] = 1.0
    return out


def _bursts(rng: np.random.Generator, n: int, sr: int, count: int, decay_s: float) -> np.ndarray:
    out = np.zeros(n)
    envelope = np.exp(-np.arange(int(decay_s * 6 * sr)) / (decay_s * sr))
    for start in rng.integers(0, n, size=count):
        end = min(n, start + envelope.size)
        out[start:end] += rng.standard_normal(end - start) * envelope[: end - start]
    return out


def probe_signals(sample_rate: int) -> Iterator[tuple[str, np.ndarray]]:
    """The fixed synthetic probe set: (name, float32 waveform of PROBE_SECONDS) pairs, always the same."""
    rng = np.random.default_rng(RECIPE_SEED)
    n = int(PROBE_SECONDS * sample_rate)
    t = np.arange(n) / sample_rate
    signals: list[tuple[str, np.ndarray]] = []
    for colour, exponent in NOISE_COLOURS.items():
        signals += [(f"noise-{colour}", _coloured_noise(rng, n, exponent))]
    for low, high in ((50, 400), (300, 2000), (1500, 6000), (5000, 14000)):
        signals += [(f"band-{low}-{high}", _band_noise(rng, n, sample_rate, low, high))]
    signals += [(f"tone-{hz:g}", np.sin(2 * np.pi * hz * t)) for hz in TONE_HZ]
    signals += [(f"harmonic-{f0:g}", _harmonic(t, f0, 12, sample_rate)) for f0 in (98.0, 262.0, 784.0)]
    signals += [("chirp-up", _chirp(t, 60.0, 12000.0)), ("chirp-down", _chirp(t, 9000.0, 150.0))]
    signals += [(f"clicks-{rate:g}", _clicks(n, sample_rate, rate)) for rate in (4.0, 30.0, 200.0)]
    signals += [("am-noise-6hz", rng.standard_normal(n) * (0.5 + 0.5 * np.sin(2 * np.pi * 6 * t)))]
    signals += [("am-tone-25hz", np.sin(2 * np.pi * 700 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 25 * t)))]
    signals += [("fm-vibrato", np.sin(2 * np.pi * 600 * t + 8 * np.sin(2 * np.pi * 5 * t)))]
    signals += [("bursts-short", _bursts(rng, n, sample_rate, 6, 0.02))]
    signals += [("bursts-long", _bursts(rng, n, sample_rate, 2, 0.25))]
    signals += [("square-220", np.sign(np.sin(2 * np.pi * 220 * t)))]
    signals += [("tone-in-noise", np.sin(2 * np.pi * 1500 * t) + 0.3 * rng.standard_normal(n))]
    for name, signal in signals:
        for level in LEVELS_DBFS:
            yield f"{name}@{level:g}dB", _rms_normalise(signal, level).astype(np.float32)


def recipe_tag(remove_components: int) -> str:
    """Short hash naming the centering recipe (probe set, seed, version, removed components)."""
    spec = {
        "version": RECIPE_VERSION,
        "seed": RECIPE_SEED,
        "seconds": PROBE_SECONDS,
        "colours": NOISE_COLOURS,
        "levels": LEVELS_DBFS,
        "tones": TONE_HZ,
        "remove_components": remove_components,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Centering:
    """e -> normalize(P(e - mean)), P projecting out `components` (k, dim) orthonormal rows (k may be 0)."""

    mean: torch.Tensor
    components: torch.Tensor
    tag: str

    def to(self, device: torch.device | str) -> Centering:
        return Centering(self.mean.to(device), self.components.to(device), self.tag)

    def __call__(self, embeddings: torch.Tensor) -> torch.Tensor:
        centred = embeddings.float() - self.mean
        if self.components.numel():
            centred = centred - (centred @ self.components.T) @ self.components
        return F.normalize(centred, dim=1)


def fit_centering(
    embed_raw: Callable[[np.ndarray], torch.Tensor], sample_rate: int, remove_components: int = 0
) -> Centering:
    """Embed the probe set with `embed_raw` ((n, samples) -> raw (n, dim)) and fit the centering."""
    waveforms = np.stack([signal for _, signal in probe_signals(sample_rate)])
    raw = embed_raw(waveforms).double().cpu()
    mean = raw.mean(dim=0)
    components = torch.zeros((0, raw.shape[1]), dtype=torch.float64)
    if remove_components:
        _, _, vh = torch.linalg.svd(raw - mean, full_matrices=False)
        components = vh[:remove_components]
    return Centering(mean.float(), components.float(), recipe_tag(remove_components))
