import numpy as np
import pytest

from services.gateway.segments import cut_segments, normalise_loudness

RATE = 32_000


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(int(seconds * RATE)).astype(np.float32) * 0.1


def test_short_clip_is_one_window_looped_not_zero_padded():
    clip = noise(0.3)
    segments = cut_segments(clip, RATE, 2.0, 1.0)
    assert len(segments) == 1
    assert segments.windows.shape == (1, 2 * RATE)
    assert np.array_equal(segments.windows[0, len(clip) : 2 * len(clip)], clip)
    assert segments.ends_seconds[0] == pytest.approx(0.3)


def test_windows_overlap_by_hop_and_cover_the_tail():
    segments = cut_segments(noise(5.5), RATE, 2.0, 1.0)
    assert list(segments.starts_seconds) == [0.0, 1.0, 2.0, 3.0, 3.5]
    assert segments.ends_seconds[-1] == pytest.approx(5.5)


def test_silent_windows_are_dropped_but_never_all():
    clip = np.concatenate([noise(2.0), np.zeros(4 * RATE, np.float32)])
    segments = cut_segments(clip, RATE, 2.0, 1.0)
    assert list(segments.starts_seconds) == [0.0, 1.0]


def test_loudness_normalisation_makes_gain_irrelevant():
    windows = noise(2.0)[None, :]
    assert np.allclose(normalise_loudness(windows), normalise_loudness(windows * 0.05), atol=1e-5)
