import numpy as np
import pytest

from services.gateway.segments import NOISE_FLOOR_DB, TARGET_RMS, cut_segments, normalise_loudness

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


def test_a_short_sound_is_looped_from_its_audible_part_and_its_range_says_where_that_is():
    sound = noise(0.3)
    padded = np.concatenate([np.zeros(int(0.05 * RATE), np.float32), sound, np.zeros(int(0.1 * RATE), np.float32)])
    segments = cut_segments(padded, RATE, 2.0, 1.0)
    assert segments.starts_seconds[0] == pytest.approx(0.05, abs=0.01)
    assert segments.ends_seconds[0] == pytest.approx(0.35, abs=0.01)
    assert np.array_equal(segments.windows, cut_segments(sound, RATE, 2.0, 1.0).windows)


def test_codec_padding_does_not_change_a_short_sounds_window():
    sound = noise(0.4, seed=3)
    padded = np.concatenate([np.full(1105, 1e-6, np.float32), sound, np.zeros(600, np.float32)])
    alone, with_padding = (cut_segments(clip, RATE, 2.0, 1.0).windows for clip in (sound, padded))
    assert np.array_equal(alone, with_padding)


def test_every_window_gets_the_same_faint_noise_floor():
    silent = np.zeros((2, 2 * RATE), np.float32)
    floor = normalise_loudness(silent)
    assert np.array_equal(floor[0], floor[1])
    level = np.sqrt(np.mean(np.square(floor[0], dtype=np.float64)))
    assert 20 * np.log10(level / TARGET_RMS) == pytest.approx(NOISE_FLOOR_DB, abs=0.1)
    loud = normalise_loudness(noise(2.0)[None, :])
    assert np.sqrt(np.mean(np.square(loud, dtype=np.float64))) == pytest.approx(TARGET_RMS, rel=0.01)
