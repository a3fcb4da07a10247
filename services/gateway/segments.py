"""Cutting decoded audio into the fixed-length windows the embedder sees."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TARGET_RMS = 0.1  # -20 dBFS: each window is brought to one loudness, so a gain change cannot move a vector
SILENCE_BELOW_LOUDEST_DB = 50.0


@dataclass(frozen=True)
class Segments:
    windows: np.ndarray  # float32 (n, window_samples)
    starts_seconds: np.ndarray  # float64 (n,)
    ends_seconds: np.ndarray  # float64 (n,)

    def __len__(self) -> int:
        return len(self.windows)


def cut_segments(samples: np.ndarray, sample_rate_hz: int, window_seconds: float, hop_seconds: float) -> Segments:
    """Overlapping windows covering the whole clip; a clip shorter than one window is looped to fill it.

    Windows much quieter than the loudest one are dropped (silence matches any silence), but never all.
    """
    window = round(window_seconds * sample_rate_hz)
    hop = round(hop_seconds * sample_rate_hz)
    duration = len(samples) / sample_rate_hz
    if len(samples) <= window:
        return Segments(_loop_to(samples, window)[None, :], np.array([0.0]), np.array([duration]))
    starts = list(range(0, len(samples) - window + 1, hop))
    if starts[-1] + window < len(samples):
        starts.append(len(samples) - window)
    windows = np.stack([samples[start : start + window] for start in starts])
    starts_seconds = np.array(starts, dtype=np.float64) / sample_rate_hz
    segments = Segments(windows, starts_seconds, starts_seconds + window_seconds)
    return _without_silent_windows(segments)


def normalise_loudness(windows: np.ndarray) -> np.ndarray:
    rms = np.sqrt(np.mean(np.square(windows, dtype=np.float64), axis=1, keepdims=True))
    return (windows * (TARGET_RMS / np.maximum(rms, 1e-8))).astype(np.float32)


def _loop_to(samples: np.ndarray, length: int) -> np.ndarray:
    # Looping rather than zero padding keeps a short sound's texture over the whole window, so the
    # same sound matches whether it arrives alone or inside a longer recording.
    repeats = -(-length // len(samples))
    return np.tile(samples, repeats)[:length].astype(np.float32, copy=False)


def _without_silent_windows(segments: Segments) -> Segments:
    rms = np.sqrt(np.mean(np.square(segments.windows, dtype=np.float64), axis=1))
    audible = rms >= rms.max() * 10 ** (-SILENCE_BELOW_LOUDEST_DB / 20)
    return Segments(segments.windows[audible], segments.starts_seconds[audible], segments.ends_seconds[audible])
