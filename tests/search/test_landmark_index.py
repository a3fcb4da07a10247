"""The landmark index of the search service over gRPC: stored in windows of hashes, looked up by shared hashes,
voted by time offset; on both backends (Milvus Lite, and a Milvus server pair: vectors on `milvus-server`, landmarks
on `milvus-lite server`)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from audiosearch.common.errors import reason_of
from audiosearch.search.landmark_index import MAX_HASH_COUNT, MAX_PACKED, TIME_BITS, window_id, window_rows
from audiosearch.search.v1 import search_pb2 as pb
from audiosearch.search.v1.search_pb2_grpc import VectorSearchServiceStub
from tests.search.builders import DIM, new_audio_id, new_collection_name
from tests.search.test_search_grpc import failure

Landmarks = tuple[list[int], list[int]]  # hashes, times in ms
# One landmark every 0.1 s for 4 s, each its own hash.
LANDMARKS: Landmarks = (list(range(1000, 1040)), list(range(0, 4000, 100)))


@pytest.fixture
def name(search: VectorSearchServiceStub) -> Iterator[str]:
    collection = new_collection_name("l")
    search.EnsureCollection(pb.EnsureCollectionRequest(collection=collection, dimension=DIM))
    yield collection
    search.DropCollection(pb.DropCollectionRequest(collection=collection))


def store(search: VectorSearchServiceStub, collection: str, landmarks: Landmarks, duration_ms: int = 10_000,
          audio_id: str = "") -> str:
    audio_id = audio_id or new_audio_id()
    search.UpsertLandmarks(pb.UpsertLandmarksRequest(collection=collection, audio_id=audio_id, duration_ms=duration_ms,
                                                     landmarks=pb.Landmarks(hashes=landmarks[0],
                                                                            times_ms=landmarks[1])))
    return audio_id


def matches(search: VectorSearchServiceStub, collection: str, query: Landmarks, top_k: int = 10,
            excluded: str = "", audio_ids: tuple[str, ...] = ()) -> list[pb.LandmarkMatch]:
    return list(search.MatchLandmarks(pb.MatchLandmarksRequest(
        collection=collection, landmarks=pb.Landmarks(hashes=query[0], times_ms=query[1]), top_k=top_k,
        excluded_audio_id=excluded, audio_ids=audio_ids)).matches)


def shifted(landmarks: Landmarks, milliseconds: int, count: int | None = None) -> Landmarks:
    """The first `count` landmarks as a query that starts `milliseconds` into the recording would hold them."""
    pairs = [(h, t - milliseconds) for h, t in zip(*landmarks, strict=True) if t >= milliseconds][:count]
    return [h for h, _ in pairs], [t for _, t in pairs]


def stored(search: VectorSearchServiceStub, collection: str, audio_id: str, before_ms: int = 0) -> Landmarks:
    landmarks = search.GetLandmarks(pb.GetLandmarksRequest(collection=collection, audio_id=audio_id,
                                                           before_ms=before_ms)).landmarks
    return list(landmarks.hashes), list(landmarks.times_ms)


def test_landmarks_find_the_recording_they_line_up_with_and_its_offset(search: VectorSearchServiceStub,
                                                                       name: str) -> None:
    recording = store(search, name, LANDMARKS)
    other = store(search, name, (list(range(1000, 1010)), list(range(0, 10_000, 1000))))

    found = matches(search, name, shifted(LANDMARKS, 1500, count=20))

    assert found[0].audio_id == recording
    assert (found[0].landmarks, found[0].offset_ms) == (20, 1500)
    assert (found[0].query_start_ms, found[0].query_end_ms) == (0, 1900)
    assert all(m.landmarks < 3 for m in found if m.audio_id == other)  # shared hashes, no common offset


def test_a_match_counts_the_landmarks_that_could_have_lined_up_over_its_overlap(search: VectorSearchServiceStub,
                                                                               name: str) -> None:
    recording = store(search, name, LANDMARKS, duration_ms=4000)
    aligned = shifted(LANDMARKS, 1500, count=20)  # query 0-1.9 s = recording 1.5-3.4 s
    elsewhere_on_it = (list(range(5000, 5005)), list(range(100, 600, 100)))
    past_its_end = (list(range(6000, 6010)), list(range(3000, 4000, 100)))  # recording 4.5 s on
    query = (aligned[0] + elsewhere_on_it[0] + past_its_end[0], aligned[1] + elsewhere_on_it[1] + past_its_end[1])

    match = matches(search, name, query)[0]

    assert (match.audio_id, match.landmarks, match.offset_ms) == (recording, 20, 1500)
    assert match.overlap_landmarks == 25  # not the landmarks past the recording's end
    assert match.recording_overlap_landmarks == 20  # the recording's own from 1.5 to 3.4 s


def test_a_long_recording_is_found_at_its_offset_across_its_windows(search: VectorSearchServiceStub,
                                                                    name: str) -> None:
    rng = np.random.default_rng(5)
    times = np.sort(rng.integers(0, 60_000, 6000)) // 10 * 10
    hashes = rng.integers(0, 2**32 - 1, 6000, dtype=np.int64)
    recording = store(search, name, (hashes.tolist(), times.tolist()), duration_ms=60_000)
    store(search, name, (rng.integers(0, 2**32 - 1, 6000, dtype=np.int64).tolist(), times.tolist()))
    inside = (times >= 21_370) & (times < 26_370)  # 5 s across two stored windows, off their edges

    match = matches(search, name, (hashes[inside].tolist(), (times[inside] - 21_370).tolist()))[0]

    assert match.audio_id == recording
    assert match.offset_ms == 21_370
    assert match.landmarks == len(np.unique(hashes[inside]))


def test_matching_leaves_out_the_excluded_recording_and_keeps_to_the_allowed_ones(search: VectorSearchServiceStub,
                                                                                 name: str) -> None:
    first = store(search, name, LANDMARKS)
    second = store(search, name, LANDMARKS)

    assert {m.audio_id for m in matches(search, name, LANDMARKS)} == {first, second}
    assert [m.audio_id for m in matches(search, name, LANDMARKS, excluded=first)] == [second]
    assert [m.audio_id for m in matches(search, name, LANDMARKS, audio_ids=(first,))] == [first]
    assert matches(search, name, LANDMARKS, top_k=1)[0].audio_id in {first, second}


def test_the_first_landmarks_of_a_collection_may_arrive_at_once(search: VectorSearchServiceStub, name: str) -> None:
    with ThreadPoolExecutor(6) as pool:  # each finds no landmark collection yet and creates it
        recordings = list(pool.map(lambda _: store(search, name, LANDMARKS), range(6)))

    assert {m.audio_id for m in matches(search, name, LANDMARKS)} == set(recordings)


def test_a_hash_stored_more_than_64_times_is_left_out_of_a_match(search: VectorSearchServiceStub, name: str) -> None:
    """As the catalog's SQL vote did: a hash that many recordings hold lines up anywhere by chance. The count
    follows rewrites (no change) and deletes (one recording's landmarks fewer)."""
    recording = store(search, name, LANDMARKS)
    common = (LANDMARKS[0][:5], LANDMARKS[1][:5])  # hashes 1000-1004, at the recording's own times
    others = [store(search, name, common) for _ in range(MAX_HASH_COUNT - 1)]
    query = shifted(LANDMARKS, 0, count=20)

    def aligned() -> tuple[int, int]:
        found = matches(search, name, query, top_k=MAX_HASH_COUNT + 5)
        return next(m.landmarks for m in found if m.audio_id == recording), sum(m.audio_id in others for m in found)

    assert aligned()[0] == 20  # each common hash stored 64 times: still counted
    for audio_id in others[:3]:
        store(search, name, common, audio_id=audio_id)
    assert aligned()[0] == 20
    others.append(store(search, name, common))  # 65 times: hot
    assert aligned() == (15, 0)
    search.DeleteAudio(pb.DeleteAudioRequest(collection=name, audio_ids=[others.pop()]))
    assert aligned()[0] == 20


def test_hashes_of_landmarks_written_at_once_are_all_counted(search: VectorSearchServiceStub, name: str) -> None:
    recording = store(search, name, LANDMARKS)
    common = (LANDMARKS[0][:5], LANDMARKS[1][:5])
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _: store(search, name, common), range(MAX_HASH_COUNT)))  # 65 times in all: hot

    found = matches(search, name, shifted(LANDMARKS, 0, count=20), top_k=MAX_HASH_COUNT + 5)

    assert [(m.audio_id, m.landmarks) for m in found] == [(recording, 15)]


def test_a_short_sound_is_found_among_long_windows_that_share_more_hashes_by_chance(
    search: VectorSearchServiceStub, name: str
) -> None:
    """A query window of a short sound over a busy bed shares 30 hashes with the sound's stored window (of 30) and
    60 with each of 24 long windows (of 1,200): counted as they are, the long windows would fill the candidates."""
    rng = np.random.default_rng(7)
    bed = rng.choice(np.arange(100_000, 200_000), size=1200, replace=False)
    short_hashes = list(range(1000, 1030))
    short = store(search, name, (short_hashes, list(range(0, 3000, 100))), duration_ms=3000)
    for copy in range(24):
        chance = rng.choice(bed, size=60, replace=False)
        own = np.arange(300_000 + copy * 2000, 300_000 + copy * 2000 + 1140)
        hashes = np.concatenate([chance, own])
        store(search, name, (hashes.tolist(), rng.integers(0, 4000, len(hashes)).tolist()), duration_ms=4000)
    query_hashes = short_hashes + bed.tolist()
    query_times = [1000 + 100 * i for i in range(30)] + rng.integers(0, 4000, len(bed)).tolist()

    found = matches(search, name, (query_hashes, query_times), top_k=1)

    assert [(m.audio_id, m.landmarks, m.offset_ms) for m in found] == [(short, 30, -1000)]


def test_stored_landmarks_read_back_by_time_and_before_a_time(search: VectorSearchServiceStub, name: str) -> None:
    recording = store(search, name, ([5, 3, 4, 9], [200, 0, 100, 4100]))

    assert stored(search, name, recording) == ([3, 4, 5, 9], [0, 100, 200, 4100])
    assert stored(search, name, recording, before_ms=150) == ([3, 4], [0, 100])
    assert stored(search, name, new_audio_id()) == ([], [])


def test_writing_the_same_landmarks_again_changes_nothing(search: VectorSearchServiceStub, name: str) -> None:
    recording = store(search, name, LANDMARKS)
    store(search, name, LANDMARKS, audio_id=recording)

    assert stored(search, name, recording) == (sorted(LANDMARKS[0]), LANDMARKS[1])
    assert [m.audio_id for m in matches(search, name, LANDMARKS)] == [recording]


def test_a_window_of_more_landmarks_than_a_row_holds_is_kept_whole(search: VectorSearchServiceStub,
                                                                   name: str) -> None:
    count = MAX_PACKED + 500
    hashes = list(range(10_000, 10_000 + count))
    times = sorted(np.random.default_rng(3).integers(0, 3000, count).tolist())
    recording = store(search, name, (hashes, times))

    assert sorted(zip(*stored(search, name, recording), strict=True)) == sorted(zip(hashes, times, strict=True))
    assert matches(search, name, (hashes, times))[0].landmarks == count


def test_deleting_a_recording_removes_its_landmarks(search: VectorSearchServiceStub, name: str) -> None:
    kept = store(search, name, LANDMARKS)
    deleted = store(search, name, LANDMARKS)
    listed = search.ListAudioIds(pb.ListAudioIdsRequest(collection=name)).audio_ids
    assert set(listed) == {kept, deleted}  # recordings with landmarks and no vectors are listed (reconciliation)

    search.DeleteAudio(pb.DeleteAudioRequest(collection=name, audio_ids=[deleted]))

    assert [m.audio_id for m in matches(search, name, LANDMARKS)] == [kept]
    assert stored(search, name, deleted) == ([], [])
    assert list(search.ListAudioIds(pb.ListAudioIdsRequest(collection=name)).audio_ids) == [kept]


def test_a_dropped_collection_keeps_no_landmarks(search: VectorSearchServiceStub) -> None:
    collection = new_collection_name("l")
    search.EnsureCollection(pb.EnsureCollectionRequest(collection=collection, dimension=DIM))
    store(search, collection, LANDMARKS)
    search.DropCollection(pb.DropCollectionRequest(collection=collection))
    search.EnsureCollection(pb.EnsureCollectionRequest(collection=collection, dimension=DIM))
    try:
        assert matches(search, collection, LANDMARKS) == []
    finally:
        search.DropCollection(pb.DropCollectionRequest(collection=collection))


def test_a_collection_without_landmarks_matches_nothing(search: VectorSearchServiceStub, name: str) -> None:
    assert matches(search, name, LANDMARKS) == []
    assert matches(search, name, ([], [])) == []


@pytest.mark.parametrize(("landmarks", "duration_ms", "field"), [
    (([1, 2], [0]), 1000, "landmarks"),
    (([1], [-5]), 1000, "landmarks.times_ms"),
    (([1], [0]), 0, "duration_ms"),
])
def test_malformed_landmarks_are_invalid_and_leave_nothing(search: VectorSearchServiceStub, name: str,
                                                           landmarks: Landmarks, duration_ms: int, field: str) -> None:
    audio_id = new_audio_id()

    error = failure(lambda: store(search, name, landmarks, duration_ms=duration_ms, audio_id=audio_id))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(error) == "INVALID_FIELD"
    assert field in (error.details() or "")
    assert stored(search, name, audio_id) == ([], [])


def test_landmarks_of_a_collection_that_does_not_exist_are_not_found(search: VectorSearchServiceStub) -> None:
    missing = new_collection_name("missing")

    for call in (lambda: store(search, missing, LANDMARKS), lambda: matches(search, missing, LANDMARKS)):
        error = failure(call)
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert reason_of(error) == "COLLECTION_NOT_FOUND"


def test_a_top_k_out_of_range_is_invalid(search: VectorSearchServiceStub, name: str) -> None:
    error = failure(lambda: matches(search, name, LANDMARKS, top_k=5000))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_rows_pack_each_landmark_with_its_time_after_the_window_start() -> None:
    rows = window_rows("a1", 9000, np.array([7, 2**32 - 1, 7]), np.array([10, 4010, 8999]), window_ms=4000)

    assert [row["start_ms"] for row in rows] == [0, 4000, 8000]
    assert [[(p >> TIME_BITS, p & (1 << TIME_BITS) - 1) for p in row["packed"]] for row in rows] == [
        [(7, 10)], [(2**32 - 1, 10)], [(7, 999)]]
    assert rows[0]["window_id"] == window_id("a1", 0, 0) != window_id("a2", 0, 0)
    assert all(set(row["hashes"].values()) == {1.0} for row in rows)
