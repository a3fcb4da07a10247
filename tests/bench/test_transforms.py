"""bench.transforms: each transform does what its name says, and the same seed makes the same query."""

from __future__ import annotations

import numpy as np
import pytest

from bench import transforms

RATE = 44_100
TONE_HZ = 1_000.0
SEMITONE = 2 ** (1 / 12)
# rubberband's defaults (crisp transients) reset phases where they see onsets, which bends a pure tone's measured
# frequency by up to about 0.6 %: well inside this, and well outside a 5 % tempo's or a semitone's 5.9 %.
RUBBERBAND_PITCH_TOLERANCE = 0.01


def tone(seconds: float = 2.0, frequency: float = TONE_HZ) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * frequency * np.arange(round(seconds * RATE)) / RATE)).astype(np.float32)


def frequency_of(samples: np.ndarray) -> float:
    """The strongest frequency of the middle half (zero-padded FFT, about 0.03 Hz per bin)."""
    middle = samples[len(samples) // 4 : 3 * len(samples) // 4]
    size = 32 * len(middle)
    spectrum = np.abs(np.fft.rfft(middle * np.hanning(len(middle)), size))
    return float(np.argmax(spectrum)) * RATE / size


def with_sign(name: str, sign: int) -> transforms.Transformed:
    """The transform from the first seed whose stream draws `sign`."""
    for seed in range(100):
        if transforms.drawn_sign(np.random.default_rng(seed)) == sign:
            return transforms.apply(name, tone(), RATE, np.random.default_rng(seed))
    raise AssertionError("no seed draws that sign")


def test_speed_up_3_percent_is_3_percent_shorter_and_3_percent_higher() -> None:
    faster = with_sign("speed", +1)
    assert faster.variant == "+3%"
    assert faster.time_scale == pytest.approx(1.03)
    assert len(faster.samples) == pytest.approx(len(tone()) / 1.03, abs=2)
    assert frequency_of(faster.samples) == pytest.approx(TONE_HZ * 1.03, rel=1e-3)


def test_speed_down_3_percent_is_longer_and_lower() -> None:
    slower = with_sign("speed", -1)
    assert slower.time_scale == pytest.approx(0.97)
    assert len(slower.samples) == pytest.approx(len(tone()) / 0.97, abs=2)
    assert frequency_of(slower.samples) == pytest.approx(TONE_HZ * 0.97, rel=1e-3)


@pytest.mark.parametrize("sign", [+1, -1])
def test_tempo_changes_the_length_5_percent_and_keeps_the_pitch(sign: int) -> None:
    changed = with_sign("tempo", sign)
    assert changed.time_scale == pytest.approx(1 + sign * 0.05)
    assert len(changed.samples) == pytest.approx(len(tone()) / (1 + sign * 0.05), abs=2)
    assert frequency_of(changed.samples) == pytest.approx(TONE_HZ, rel=RUBBERBAND_PITCH_TOLERANCE)


@pytest.mark.parametrize("sign", [+1, -1])
def test_pitch_moves_a_tone_one_semitone_and_keeps_the_length(sign: int) -> None:
    changed = with_sign("pitch", sign)
    assert changed.variant == f"{sign:+d} st"
    assert changed.time_scale == 1.0
    assert len(changed.samples) == len(tone())
    assert frequency_of(changed.samples) == pytest.approx(TONE_HZ * SEMITONE**sign, rel=RUBBERBAND_PITCH_TOLERANCE)


def test_rubberband_takes_a_sound_shorter_than_its_frames() -> None:
    click = np.zeros(200, np.float32)
    click[0] = 1.0
    assert len(transforms.rubberband(click, RATE, tempo=1.05)) == round(200 / 1.05)


def test_rubberband_keeps_the_timing_of_a_click() -> None:
    clicks = np.zeros(3 * RATE, np.float32)
    clicks[RATE] = 1.0
    stretched = transforms.rubberband(clicks, RATE, tempo=1.05)
    assert np.argmax(np.abs(stretched)) / RATE == pytest.approx(1.0 / 1.05, abs=0.005)


def test_room_impulse_response_decays_60_db_in_about_0_6_seconds() -> None:
    """Schroeder's backward integration of the tail; the slope from -5 to -35 dB, extended to 60 dB (T30)."""
    response = transforms.room_impulse_response(RATE, np.random.default_rng(0))
    tail = response[1:].astype(np.float64)
    decay = 10 * np.log10(np.cumsum(np.square(tail)[::-1])[::-1] / np.sum(np.square(tail)))
    fitted = (decay <= -5) & (decay >= -35)
    slope_db_per_second = np.polyfit(np.flatnonzero(fitted) / RATE, decay[fitted], 1)[0]
    assert -60 / slope_db_per_second == pytest.approx(0.6, rel=0.05)


def test_room_keeps_the_direct_sound_beside_an_equal_energy_tail() -> None:
    response = transforms.room_impulse_response(RATE, np.random.default_rng(0))
    assert response[0] == 1.0
    assert np.sum(np.square(response[1:], dtype=np.float64)) == pytest.approx(1.0, rel=1e-3)


def test_reverb_keeps_the_length_and_the_level() -> None:
    dry = tone()
    wet = transforms.apply("reverb", dry, RATE, np.random.default_rng(0)).samples
    assert len(wet) == len(dry)
    assert transforms.rms(wet) == pytest.approx(transforms.rms(dry), rel=1e-3)
    assert not np.allclose(wet, dry, atol=0.01)


def test_heavy_noise_is_at_0_db_snr() -> None:
    clean = tone()
    noisy = transforms.apply("noise-0dB", clean, RATE, np.random.default_rng(0)).samples
    snr_db = 20 * np.log10(transforms.rms(clean) / transforms.rms(noisy - clean))
    assert snr_db == pytest.approx(0.0, abs=0.01)


def test_excerpt_is_one_second_from_where_it_says() -> None:
    ramp = np.arange(5 * RATE, dtype=np.float32)
    part = transforms.apply("excerpt-1s", ramp, RATE, np.random.default_rng(3))
    assert len(part.samples) == RATE
    assert part.samples[0] == ramp[round(part.start_seconds * RATE)]


def test_excerpt_of_a_sound_under_a_second_is_the_whole_sound() -> None:
    short = tone(0.4)
    part = transforms.apply("excerpt-1s", short, RATE, np.random.default_rng(3))
    assert part.start_seconds == 0.0
    assert np.array_equal(part.samples, short)


def test_chain_is_2_percent_faster_coded_and_noisy() -> None:
    chained = transforms.apply("chain", tone(), RATE, np.random.default_rng(0))
    assert chained.time_scale == pytest.approx(1.02)
    # mp3 adds its encoder delay and pads to whole frames: under three frames of 1152 samples.
    assert 0 <= len(chained.samples) - len(tone()) / 1.02 <= 3 * 1152
    assert frequency_of(chained.samples) == pytest.approx(TONE_HZ * 1.02, rel=1e-3)


@pytest.mark.parametrize("name", transforms.NAMES)
def test_each_transform_is_reproducible_from_its_seed(name: str) -> None:
    noise = np.random.default_rng(99).standard_normal(3 * RATE).astype(np.float32) * 0.1
    first = transforms.apply(name, noise, RATE, np.random.default_rng([0, 8, 5]))
    again = transforms.apply(name, noise, RATE, np.random.default_rng([0, 8, 5]))
    assert np.array_equal(first.samples, again.samples)
    assert (first.variant, first.start_seconds, first.time_scale) == (
        again.variant, again.start_seconds, again.time_scale)


def test_the_sign_is_drawn_both_ways_across_queries() -> None:
    variants = {transforms.apply("speed", tone(0.1), RATE, np.random.default_rng(seed)).variant
                for seed in range(20)}
    assert variants == {"+3%", "-3%"}
