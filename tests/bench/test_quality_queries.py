"""bench.quality's queries: where each came from in its recording, and at what time scale, is recorded right."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile
from scipy.signal import correlate

from bench import transforms
from bench.quality import WORK_RATE, Sound, Transformer, make_cases

EXCERPT_SECONDS = (5.0, 10.0)


def noise_sound(name: str, seconds: float, seed: int) -> Sound:
    """Noise is unlike itself anywhere else: a match of a stretch of it says where the stretch came from."""
    samples = (0.1 * np.random.default_rng(seed).standard_normal(round(seconds * WORK_RATE))).astype(np.float32)
    return Sound(name, b"", samples)


RECORDING = noise_sound("track.ogg", 25.0, 1)
HELD_BACK = [noise_sound("other.ogg", 20.0, 2)]


def decoded(audio: bytes) -> np.ndarray:
    samples, rate = soundfile.read(io.BytesIO(audio), dtype="float32")
    assert rate == WORK_RATE
    return samples


def found_at(stretch: np.ndarray, recording: np.ndarray) -> float:
    """Where `stretch` matches `recording` best (s), by cross-correlation."""
    correlation = correlate(recording, stretch, mode="valid", method="fft")
    return float(np.argmax(correlation)) / WORK_RATE


@pytest.mark.parametrize("transform", ["gain", "crop", "excerpt-1s", "reverb", "noise-0dB"])
def test_an_excerpt_query_records_where_it_sits_in_the_recording(transform: str) -> None:
    transformer = Transformer(HELD_BACK, 10.0, EXCERPT_SECONDS)
    case = transformer.make(transform, RECORDING, "id", np.random.default_rng([0, 3, 7]))
    query = decoded(case.audio)
    assert case.truth_offset is not None
    assert case.time_scale == 1.0
    assert found_at(query[: WORK_RATE // 2], RECORDING.samples) == pytest.approx(case.truth_offset, abs=1e-3)


def test_an_offset_query_records_where_the_excerpt_sits_under_the_bed() -> None:
    case = Transformer(HELD_BACK, 10.0, EXCERPT_SECONDS).make("offset", RECORDING, "id", np.random.default_rng(5))
    query = decoded(case.audio)
    assert case.truth_offset is not None
    # Every quarter second of the query that matches the recording (the excerpt; the bed 20 dB lower does not)
    # holds recording time truth + query time.
    quarter = WORK_RATE // 4
    matched = 0
    for begin in range(0, len(query) - quarter, quarter):
        stretch = query[begin : begin + quarter]
        correlation = correlate(RECORDING.samples, stretch, mode="valid", method="fft")
        if correlation.max() < 0.9 * float(np.dot(stretch, stretch)):
            continue
        matched += 1
        assert np.argmax(correlation) / WORK_RATE == pytest.approx(case.truth_offset + begin / WORK_RATE, abs=1e-3)
    assert matched >= 4 * EXCERPT_SECONDS[0] - 2


@pytest.mark.parametrize("transform", ["speed", "chain"])
def test_a_faster_or_slower_query_records_its_time_scale(transform: str) -> None:
    case = Transformer(HELD_BACK, 10.0, EXCERPT_SECONDS).make(transform, RECORDING, "id", np.random.default_rng(4))
    assert case.truth_offset is not None
    assert case.time_scale in (pytest.approx(0.97), pytest.approx(1.02), pytest.approx(1.03))
    # Played back at the recording's pace, query time t holds recording time truth + t * scale.
    restored = transforms.change_speed(decoded(case.audio), 1 / case.time_scale)
    query_seconds = 2.0
    stretch = restored[round(query_seconds * case.time_scale * WORK_RATE):][: WORK_RATE // 2]
    assert found_at(stretch, RECORDING.samples) == pytest.approx(
        case.truth_offset + query_seconds * case.time_scale, abs=0.03)


def test_whole_sound_queries_check_the_alignment_only_where_the_content_moves() -> None:
    transformer = Transformer(HELD_BACK, 10.0)
    cases = {name: transformer.make(name, RECORDING, "id", np.random.default_rng(6))
             for name in ("gain", "speed", "crop", "excerpt-1s")}
    assert cases["gain"].truth_offset is None
    assert cases["speed"].truth_offset is None
    for name in ("crop", "excerpt-1s"):
        query = decoded(cases[name].audio)
        assert found_at(query[: WORK_RATE // 2], RECORDING.samples) == pytest.approx(cases[name].truth_offset,
                                                                                      abs=1e-3)


def test_with_excerpts_every_query_and_held_back_one_is_a_5_to_10_second_excerpt() -> None:
    cases = make_cases([RECORDING], HELD_BACK, {RECORDING.name: "id"}, Transformer(HELD_BACK, 10.0, EXCERPT_SECONDS),
                       queries_per_transform=1, seed=0)
    low, high = EXCERPT_SECONDS
    for case in cases:
        if case.transform in ("crop", "offset", "excerpt-1s"):  # cut shorter, or set in a longer bed
            continue
        # Speed +3 % shortens the excerpt by 3 %, tempo -5 % lengthens it by 1/0.95; mp3 adds under 0.1 s.
        assert low / 1.03 - 0.01 <= case.seconds <= high / 0.95 + 0.1, case
    assert {case.transform for case in cases if not case.expected} == {"clean", "mp3"}
