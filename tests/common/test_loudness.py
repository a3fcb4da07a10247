"""Window levelling: one loudness, one fixed noise floor, and values the float16 wire carries."""

import numpy as np
import pytest

from audiosearch.common.loudness import NOISE_FLOOR_DB, TARGET_RMS, normalise_loudness

RATE = 32_000


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(int(seconds * RATE)).astype(np.float32) * 0.1


def test_loudness_normalisation_makes_gain_irrelevant():
    windows = noise(2.0)[None, :]
    assert np.allclose(normalise_loudness(windows), normalise_loudness(windows * 0.05), atol=1e-5)


def test_levelled_windows_fit_the_embedders_float16_wire():
    spike = np.zeros((1, 64000), np.float32)
    spike[0, 123] = 1.0  # the most a window's peak can exceed its RMS

    levelled = normalise_loudness(spike)

    assert np.isfinite(levelled.astype(np.float16)).all()
    np.testing.assert_allclose(levelled.astype(np.float16), levelled, rtol=1e-3, atol=1e-4)


def test_every_window_gets_the_same_faint_noise_floor():
    silent = np.zeros((2, 2 * RATE), np.float32)
    floor = normalise_loudness(silent)
    assert np.array_equal(floor[0], floor[1])
    level = np.sqrt(np.mean(np.square(floor[0], dtype=np.float64)))
    assert 20 * np.log10(level / TARGET_RMS) == pytest.approx(NOISE_FLOOR_DB, abs=0.1)
    loud = normalise_loudness(noise(2.0)[None, :])
    assert np.sqrt(np.mean(np.square(loud, dtype=np.float64))) == pytest.approx(TARGET_RMS, rel=0.01)
