"""What search promises about where a match sits, and calibration, through the public API.

A 5 s excerpt cut from anywhere in a 3-minute catalog recording finds that recording first, with the reference
range within one hop of the truth (checked here within 0.5 s); a query of two catalog sounds one after the other
returns both, each with its own query range; a calibrated collection answers "no match" for a sound it does not hold,
and a library of takes that share audio calibrates to thresholds that still let copies of its sounds through.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter, sosfilt

from audiosearch.v1 import audiosearch_pb2 as pb
from devtools.support import sounds
from devtools.support.gateway import ensure_collection, ingest, search

COLLECTION = "quality_library"
TAKES_COLLECTION = "quality_takes"
FAMILIES = 6
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
    assert own[0].decided_by != pb.MATCH_EVIDENCE_UNSPECIFIED  # the reply says why it is a match


@pytest.fixture(scope="module")
def takes(client):
    """A sound library with variants: six families of three takes that share audio (the second keeps the first's
    first half, the third its second half, each with audio of its own beside it) and six unrelated sounds; maps
    name -> (record, samples)."""
    ensure_collection(client, TAKES_COLLECTION)
    rng = np.random.default_rng(29)
    library: dict[str, np.ndarray] = {}
    for family in range(FAMILIES):
        kind = (1, 3)[family % 2]  # noise bands, hits: rich in landmarks, and nothing repeats within a take
        first = piece(rng, kind, seconds=4.0)
        half = len(first) // 2
        library[f"family{family}_take1"] = first
        library[f"family{family}_take2"] = np.concatenate([first[:half], piece(rng, kind, seconds=2.0)])
        library[f"family{family}_take3"] = np.concatenate([piece(rng, kind, seconds=1.0), first[half:]])
    for index in range(FAMILIES):
        library[f"single{index}"] = piece(rng, index, seconds=4.0)
    return {name: (ingest(client, TAKES_COLLECTION, f"{name}.wav", sounds.to_bytes(samples)).audio, samples)
            for name, samples in library.items()}


def test_a_library_of_takes_calibrates_to_thresholds_that_keep_copies_of_its_sounds(client, takes):
    record, samples = takes["family0_take1"]
    alike = search(client, TAKES_COLLECTION, sounds.to_bytes(samples), min_score=-1.0).matches
    siblings = max(match.landmarks for match in alike if match.audio.id != record.id)

    reply = client.CalibrateCollection(pb.CalibrateCollectionRequest(collection=TAKES_COLLECTION,
                                                                     target_false_positive_rate=0.01))

    # The takes find one another by the audio they share: set aside as variants, not counted as false positives.
    assert reply.variant_queries >= 2 * FAMILIES
    assert f"{reply.variant_queries} negatives found variants" in reply.collection.threshold_source
    assert reply.collection.landmark_share_threshold > 0
    # A 1.5 s copy under noise 20 dB down lines up fewer landmarks than the takes do with one another, where a
    # count threshold over every negative would have had to lie, yet it is a match, by its landmarks' share.
    copy = samples[int(1.2 * RATE) : int(2.7 * RATE)]
    copy = copy + np.random.default_rng(7).normal(0.0, 0.1 * np.std(copy), len(copy)).astype(np.float32)
    found = search(client, TAKES_COLLECTION, sounds.to_bytes(copy)).matches
    assert found[0].audio.id == record.id
    assert found[0].landmarks < siblings
    assert found[0].decided_by in (pb.MATCH_EVIDENCE_LANDMARKS, pb.MATCH_EVIDENCE_BOTH)
    assert found[0].landmark_share >= reply.collection.landmark_share_threshold
    held_out = sounds.synth("birds", 4.0, seed=99)
    assert list(search(client, TAKES_COLLECTION, sounds.to_bytes(held_out)).matches) == []
