"""Landmark extraction: what a copy of a sound keeps of its landmarks, and what an unrelated sound shares."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter, resample_poly, sosfilt

from audiosearch.gateway.audio.fingerprints import (
    Landmarks,
    extract_landmarks,
    landmarks_from_message,
    landmarks_message,
    query_landmarks,
)
from audiosearch.search.landmark_vote import vote

RATE = 32_000


def chirps(seconds: float, seed: int) -> np.ndarray:
    """Tone bursts at random times and pitches, spread over the spectrum, like a busy sound effect."""
    rng = np.random.default_rng(seed)
    audio = 0.001 * rng.standard_normal(round(seconds * RATE))
    for _ in range(int(seconds * 12)):
        start = int(rng.integers(0, len(audio) - RATE // 5))
        length = int(rng.integers(RATE // 50, RATE // 5))
        time = np.arange(length) / RATE
        pitch = rng.uniform(100, 12_000)
        audio[start : start + length] += rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * pitch * time) * np.hanning(length)
    return audio.astype(np.float32)


def aligned(query: Landmarks, stored: Landmarks) -> tuple[int, int]:
    """(landmarks that line up, offset in ms) of the query against one stored recording."""
    times_by_hash: dict[int, list[int]] = {}
    for hash_value, time_ms in zip(stored.hashes.tolist(), stored.times_ms.tolist(), strict=True):
        times_by_hash.setdefault(hash_value, []).append(time_ms)
    hits = [("stored", h, reference, t) for h, t in zip(query.hashes.tolist(), query.times_ms.tolist(), strict=True)
            for reference in times_by_hash.get(h, ())]
    votes = vote(hits)
    return (votes[0].landmarks, votes[0].offset_ms) if votes else (0, 0)


@pytest.fixture(scope="module")
def recording() -> np.ndarray:
    return chirps(20.0, seed=1)


def test_landmarks_are_hashes_with_times_in_order(recording: np.ndarray) -> None:
    landmarks = extract_landmarks(recording, RATE)

    assert landmarks.hashes.dtype == np.uint32
    assert landmarks.times_ms.dtype == np.int32
    assert 50 * 20 < len(landmarks) < 1000 * 20
    assert np.all(np.diff(landmarks.times_ms) >= 0)
    assert landmarks.times_ms[-1] <= 20_000
    carried = landmarks_from_message(landmarks_message(landmarks))
    assert np.array_equal(carried.hashes, landmarks.hashes)
    assert np.array_equal(carried.times_ms, landmarks.times_ms)


def test_gain_changes_nothing(recording: np.ndarray) -> None:
    original, quieter = extract_landmarks(recording, RATE), extract_landmarks(recording * 0.3, RATE)

    assert np.array_equal(original.hashes, quieter.hashes)


@pytest.mark.parametrize("start_seconds", [3.0, 7.37])
def test_an_excerpt_lines_up_at_its_offset(recording: np.ndarray, start_seconds: float) -> None:
    excerpt = recording[round(start_seconds * RATE) : round((start_seconds + 5.0) * RATE)]

    count, offset_ms = aligned(extract_landmarks(excerpt, RATE), extract_landmarks(recording, RATE))

    assert count >= 50
    assert abs(offset_ms - start_seconds * 1000) <= 20


def test_a_telephone_band_copy_keeps_its_middle_band(recording: np.ndarray) -> None:
    telephone = sosfilt(butter(4, [300, 3400], btype="bandpass", fs=RATE, output="sos"), recording)
    narrow = resample_poly(resample_poly(recording, 1, 4), 4, 1)  # an 8 kHz round trip

    stored = extract_landmarks(recording, RATE)
    for copy in (telephone, narrow):
        count, offset_ms = aligned(extract_landmarks(copy.astype(np.float32), RATE), stored)
        assert count >= 30
        assert abs(offset_ms) <= 20


def test_noise_and_a_second_sound_leave_enough_landmarks(recording: np.ndarray) -> None:
    rng = np.random.default_rng(2)
    level = np.sqrt(np.mean(recording**2))
    noisy = recording + 0.1 * level * rng.standard_normal(len(recording)).astype(np.float32)  # 20 dB SNR
    mixed = recording + 0.3 * chirps(20.0, seed=3)

    stored = extract_landmarks(recording, RATE)
    for copy in (noisy, mixed):
        count, _ = aligned(extract_landmarks(copy, RATE), stored)
        assert count >= 30


def test_an_unrelated_sound_lines_up_with_few(recording: np.ndarray) -> None:
    count, _ = aligned(extract_landmarks(chirps(10.0, seed=9), RATE), extract_landmarks(recording, RATE))

    assert count < 6


def test_a_click_has_landmarks_and_silence_none() -> None:
    click = np.zeros(RATE // 20, dtype=np.float32)
    click[100:140] = np.hanning(40)

    assert len(extract_landmarks(click, RATE)) > 0
    for silence in (np.zeros(0, np.float32), np.zeros(10, np.float32), np.zeros(RATE, np.float32)):
        assert len(extract_landmarks(silence, RATE)) == 0


def test_a_short_sound_inside_a_query_gets_the_landmarks_it_was_stored_with() -> None:
    rng = np.random.default_rng(4)
    blip = chirps(0.3, seed=5)
    bed = 0.05 * chirps(6.0, seed=6) + 0.001 * rng.standard_normal(6 * RATE).astype(np.float32)
    query = bed.copy()
    start = round(2.345 * RATE)
    query[start : start + len(blip)] += blip

    stored = extract_landmarks(blip, RATE)
    plain = aligned(extract_landmarks(query, RATE), stored)
    with_event = aligned(query_landmarks(query, RATE, [(2.345, 2.345 + 0.3)]), stored)

    assert with_event[0] > plain[0]
    assert with_event[1] == pytest.approx(-2345, abs=20)
    assert len(query_landmarks(query, RATE, [])) == len(extract_landmarks(query, RATE))


def test_a_short_sound_whose_event_span_a_bed_stretched_is_also_taken_over_its_loud_core() -> None:
    blip = chirps(0.3, seed=5)
    blip[: RATE // 100] = 0.0  # 10 ms of silence first: the core starts where the sound does
    bed = 0.02 * chirps(6.0, seed=6)
    query = bed.copy()
    start = round(2.345 * RATE)
    query[start : start + len(blip)] += blip
    stored = extract_landmarks(blip, RATE)
    stretched = [(1.2, 3.4)]  # the span a loud bed let reach on, a second either side

    span_alone = aligned(extract_landmarks(query[round(1.2 * RATE) : round(3.4 * RATE)], RATE), stored)
    with_core = aligned(query_landmarks(query, RATE, stretched), stored)

    assert with_core[0] > span_alone[0]
    assert with_core[1] == pytest.approx(-2345, abs=20)
