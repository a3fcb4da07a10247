"""bench.landmark_index's layout without a Milvus: a window's packed landmarks unpack to the stored times, and the
vote over candidate windows finds the recording an excerpt came from."""

import numpy as np

from bench.landmark_index import FRAME_MS, TIME_BITS, QueryCase, sparse, voted, window_rows


def landmarks(seed: int, seconds: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    times = np.sort(rng.integers(0, seconds * 1000 // FRAME_MS, 40 * seconds)).astype(np.int32) * FRAME_MS
    return rng.integers(0, 2**32, len(times), dtype=np.uint64).astype(np.uint32), times


def test_windows_pack_each_landmark_with_its_time_after_the_window_start() -> None:
    hashes, times = landmarks(1, 10)
    rows = window_rows(7, hashes, times, 4000)
    assert [row["start_ms"] for row in rows] == [0, 4000, 8000]
    unpacked = [(value >> TIME_BITS, row["start_ms"] + (value & (1 << TIME_BITS) - 1) * FRAME_MS)
                for row in rows for value in row["packed"]]
    assert unpacked == list(zip(hashes.tolist(), times.tolist(), strict=True))
    assert all(row["audio_id"] == 7 and set(row["hashes"]) <= set((hashes.astype(np.int64) % (2**32 - 1)).tolist())
               for row in rows)


def test_sparse_keys_stay_below_milvus_limit() -> None:
    assert sparse(np.array([2**32 - 1, 5, 5], dtype=np.int64)) == {0: 1.0, 5: 1.0}


def test_vote_over_candidate_windows_finds_the_excerpt() -> None:
    stored = {audio_id: landmarks(audio_id, 20) for audio_id in (1, 2, 3)}
    windows = [row for audio_id, (h, t) in stored.items() for row in window_rows(audio_id, h, t, 4000)]
    hashes, times = stored[2]
    inside = (times >= 6000) & (times < 11000)
    case = QueryCase(2, 6000, hashes[inside], times[inside] - 6000)
    entities = [{"audio_id": row["audio_id"], "start_ms": row["start_ms"], "packed": row["packed"]} for row in windows]
    assert voted(case, entities) == 2
    assert voted(case, [e for e in entities if e["audio_id"] != 2]) == -1  # random hashes: nothing shared
