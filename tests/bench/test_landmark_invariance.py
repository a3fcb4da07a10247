"""bench.landmark_invariance: triplet hashes survive a uniform scaling of time and of frequency, and their vote on
(time scale, offset) finds the copy with its factor."""

from __future__ import annotations

import numpy as np
import pytest

from bench import landmark_invariance as study
from bench import transforms

RATE = study.RATE
SECONDS = 6.0
SEMITONE = 2 ** (1 / 12)
DESIGN = study.DESIGNS["f4p2"]


def notes(seed: int, count: int = 40) -> np.ndarray:
    """Decaying harmonic notes at random times and pitches (200-1600 Hz) over a faint noise floor."""
    rng = np.random.default_rng(seed)
    times = np.arange(round(SECONDS * RATE)) / RATE
    samples = 0.001 * rng.standard_normal(len(times))
    for _ in range(count):
        start, length, pitch = rng.uniform(0, SECONDS - 0.4), rng.uniform(0.1, 0.4), 200 * 2 ** rng.uniform(0, 3)
        inside = (times >= start) & (times < start + length)
        elapsed = times[inside] - start
        for harmonic in (1, 2, 3):
            samples[inside] += np.exp(-8 * elapsed) * np.sin(2 * np.pi * pitch * harmonic * elapsed) / harmonic
    return (0.3 * samples / np.abs(samples).max()).astype(np.float32)


@pytest.fixture(scope="module")
def catalog() -> tuple[list[np.ndarray], study.Index]:
    recordings = [notes(seed) for seed in range(12)]
    return recordings, study.Index([study.triplet_hashes(study.peaks_of(samples), DESIGN) for samples in recordings])


def aligned(index: study.Index, recordings: int, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return study.best_alignment(index.hits(study.triplet_hashes(study.peaks_of(query), DESIGN)), recordings,
                                study.SCALES)


@pytest.mark.parametrize(("name", "copy", "time_scale"), [
    ("unchanged", lambda samples: samples, 1.0),
    ("speed +3 %", lambda samples: transforms.change_speed(samples, 1.03), 1.03),
    ("speed -3 %", lambda samples: transforms.change_speed(samples, 0.97), 0.97),
    ("tempo +5 %", lambda samples: transforms.rubberband(samples, RATE, tempo=1.05), 1.05),
    ("tempo -5 %", lambda samples: transforms.rubberband(samples, RATE, tempo=0.95), 0.95),
    ("pitch +1 semitone", lambda samples: transforms.rubberband(samples, RATE, pitch=SEMITONE), 1.0),
])
def test_a_changed_copy_aligns_with_its_recording_at_its_time_scale(catalog, name, copy, time_scale) -> None:
    recordings, index = catalog
    counts, factors = aligned(index, len(recordings), copy(recordings[3]))
    others = np.delete(counts, 3)
    assert counts[3] >= 2 * max(int(others.max()), 5), name
    assert factors[3] == pytest.approx(time_scale, rel=0.01), name


def test_today_s_pairs_lose_a_speed_copy_that_the_triplets_keep(catalog) -> None:
    recordings, _ = catalog
    original, faster = recordings[3], transforms.change_speed(recordings[3], 1.03)

    def kept(hashes_of) -> float:
        return float(np.isin(hashes_of(faster).hashes, hashes_of(original).hashes).mean())

    pairs = kept(study.pair_hashes)
    triplets = kept(lambda samples: study.triplet_hashes(study.peaks_of(samples), DESIGN))
    assert triplets > 2 * pairs


def test_triplet_hashes_cannot_collide_with_pair_hashes(catalog) -> None:
    recordings, _ = catalog
    triplets = study.triplet_hashes(study.peaks_of(recordings[0]), DESIGN).hashes
    pairs = study.pair_hashes(recordings[0]).hashes
    assert len(triplets) > 0
    assert len(pairs) > 0
    assert np.all(triplets >= 1 << 31)
    assert np.all(pairs < 1 << 31)


def test_equal_counts_keep_the_scale_nearest_one() -> None:
    one_hit = (np.array([0]), np.array([7]), np.array([500]), np.array([500]))
    counts, factors = study.best_alignment(one_hit, 1, study.SCALES)
    assert counts[0] == 1
    assert factors[0] == 1.0
