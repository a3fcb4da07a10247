"""What search promises about where a match sits, and calibration, through the public API.

A 5 s excerpt cut from anywhere in a 3-minute catalog recording finds that recording first, with the reference
range within one hop of the truth (checked here within 0.5 s); a query of two catalog sounds one after the other
returns both, each with its own query range; a calibrated collection answers "no match" for a sound it does not hold.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter, sosfilt

from audiosearch.v1 import audiosearch_pb2 as pb
from devtools.support import sounds
from devtools.support.gateway import ensure_collection, ingest, search

COLLECTION = "quality_library"
RATE = sounds.RATE
PIECE_SECONDS = 5.0
PIECES = 36  # 3 minutes
# Stricter than the promised one hop (2 s by default): queries are cut every 0.25 s, so some query window lies
# within 0.125 s of a stored one.
TOLERANCE_SECONDS = 0.5


def piece(rng: np.random.Generator, kind: int, seconds: float = PIECE_SECONDS) -> np.ndarray:
    """A distinct synthetic sound: every call draws its own frequencies and rhythms."""
    t = np.arange(int(seconds * RATE)) / RATE
    if kind == 0:  # harmonic tone with vibrato
        f0, rate = rng.uniform(110, 600), rng.uniform(3, 8)
        phase = 2 * np.pi * f0 * t + rng.uniform(2, 10) * np.sin(2 * np.pi * rate * t)
        signal = sum(np.sin(k * phase) / k for k in range(1, 6))
    elif kind == 1:  # band of noise, pulsing
        spectrum = np.fft.rfft(rng.standard_normal(len(t)))
        freqs = np.fft.rfftfreq(len(t), 1 / RATE)
        low = rng.uniform(200, 4000)
        spectrum[(freqs < low) | (freqs > low * rng.uniform(1.3, 3.0))] = 0
        signal = np.fft.irfft(spectrum, len(t)) * (0.6 + 0.4 * np.sign(np.sin(2 * np.pi * rng.uniform(1, 4) * t)))
    elif kind == 2:  # chirps up or down, repeated
        period = rng.uniform(0.4, 1.5)
        local = t % period
        f_start, f_end = rng.uniform(300, 3000), rng.uniform(300, 6000)
        signal = np.sin(2 * np.pi * (f_start * local + (f_end - f_start) * local**2 / (2 * period)))
    elif kind == 3:  # decaying hits at irregular times
        signal = np.zeros_like(t)
        tone = rng.uniform(100, 2000)
        for start in np.sort(rng.uniform(0, seconds - 0.3, int(rng.integers(4, 12)))):
            n = int(0.3 * RATE)
            index = int(start * RATE)
            hit = (np.sin(2 * np.pi * tone * t[:n]) + 0.5 * rng.standard_normal(n)) * np.exp(-t[:n] * 20)
            signal[index : index + n] += hit
    elif kind == 4:  # chord, changing
        chord = rng.uniform(150, 900, 3)
        step = rng.uniform(0.5, 1.5)
        shift = 2 ** (np.floor(t / step) % 3 / 12 * rng.integers(2, 6))
        signal = sum(np.sin(2 * np.pi * f * shift * t) for f in chord)
    else:  # amplitude-modulated tone
        signal = np.sin(2 * np.pi * rng.uniform(500, 5000) * t) * (np.sin(2 * np.pi * rng.uniform(2, 30) * t) > 0)
    return (0.4 * signal / np.max(np.abs(signal))).astype(np.float32)


@pytest.fixture(scope="module")
def library(client):
    """A 3-minute recording of 36 distinct pieces, and six short sounds; maps name -> (record, samples)."""
    ensure_collection(client, COLLECTION)
    rng = np.random.default_rng(2024)
    long_recording = np.concatenate([piece(rng, index % 6) for index in range(PIECES)])
    shorts = {f"short_{index}": piece(rng, index, seconds=3.0) for index in range(6)}
    library = {"long": (ingest(client, COLLECTION, "long.wav", sounds.to_bytes(long_recording)).audio,
                        long_recording)}
    for name, samples in shorts.items():
        library[name] = (ingest(client, COLLECTION, f"{name}.wav", sounds.to_bytes(samples)).audio, samples)
    return library


@pytest.mark.parametrize("start", [
    0.0,
    # With untrained weights the embedding alone places this one at a same-kind piece elsewhere in the recording
    # (random Cnn14 features are not shift-invariant: the query window 0.05 s from the stored window at 48 s scores
    # below 0.6 against it, 0.98 against an unrelated window at 168 s); its landmarks find it.
    47.3,
    101.65, 133.3, 174.9,
])
def test_a_five_second_excerpt_finds_the_long_recording_where_it_was_cut(client, library, start):
    record, samples = library["long"]
    excerpt = samples[int(start * RATE) : int((start + 5.0) * RATE)]
    top = search(client, COLLECTION, sounds.to_bytes(excerpt), min_score=-1.0).matches[0]
    assert top.audio.id == record.id
    assert top.reference_range.start_seconds == pytest.approx(start, abs=TOLERANCE_SECONDS)
    assert top.reference_range.end_seconds == pytest.approx(start + 5.0, abs=TOLERANCE_SECONDS)


def test_two_sounds_back_to_back_each_come_back_with_their_own_query_range(client, library):
    (first, first_samples), (second, second_samples) = library["short_1"], library["short_4"]
    query = np.concatenate([first_samples, second_samples])
    matches = {match.audio.id: match for match in search(client, COLLECTION, sounds.to_bytes(query)).matches}
    assert {first.id, second.id} <= set(matches)
    split = len(first_samples) / RATE
    for record, (start, end) in ((first, (0.0, split)), (second, (split, len(query) / RATE))):
        found = matches[record.id].query_range
        assert found.start_seconds == pytest.approx(start, abs=TOLERANCE_SECONDS)
        assert found.end_seconds == pytest.approx(end, abs=TOLERANCE_SECONDS)


@pytest.mark.parametrize("start", [47.3, 120.0])
def test_a_telephone_band_copy_of_an_excerpt_is_found_by_its_landmarks_to_the_frame(client, library, start):
    record, samples = library["long"]
    excerpt = samples[int(start * RATE) : int((start + 5.0) * RATE)]
    telephone = sosfilt(butter(4, [300, 3400], btype="bandpass", fs=RATE, output="sos"), excerpt).astype(np.float32)
    threshold = client.GetCollection(pb.GetCollectionRequest(name=COLLECTION)).collection.landmark_threshold

    top = search(client, COLLECTION, sounds.to_bytes(telephone)).matches[0]

    assert top.audio.id == record.id
    assert top.landmarks >= threshold > 0
    assert top.reference_range.start_seconds - top.query_range.start_seconds == pytest.approx(start, abs=0.03)


def test_a_collection_without_landmarks_searches_by_the_embeddings_alone(client, library):
    collection = ensure_collection(client, "quality_no_landmarks", disable_landmarks=True)
    _, samples = library["short_3"]
    stored = ingest(client, "quality_no_landmarks", "short_3.wav", sounds.to_bytes(samples)).audio

    matches = search(client, "quality_no_landmarks", sounds.to_bytes(samples)).matches

    assert collection.landmark_threshold == 0
    assert [(m.audio.id, m.landmarks) for m in matches] == [(stored.id, 0)]


def test_calibration_sets_a_threshold_under_which_a_sound_not_held_finds_nothing(client, library):
    reply = client.CalibrateCollection(pb.CalibrateCollectionRequest(collection=COLLECTION,
                                                                     target_false_positive_rate=0.05))
    assert reply.collection.threshold_source != "default"
    assert reply.collection.landmark_threshold >= 6
    assert reply.negative_queries == len(library)
    held_out = sounds.synth("birds", 4.0, seed=99)
    result = search(client, COLLECTION, sounds.to_bytes(held_out))
    assert result.score_threshold == pytest.approx(reply.collection.score_threshold)
    assert list(result.matches) == []
    own = search(client, COLLECTION, sounds.to_bytes(library["short_2"][1])).matches
    assert own[0].audio.id == library["short_2"][0].id
