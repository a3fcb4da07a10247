"""The Milvus store, on Milvus Lite and on a real Milvus server."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient
from pymilvus.client.prepare import Prepare

from audiosearch.common.errors import FailedPrecondition, NotFound
from audiosearch.search import store as store_module
from audiosearch.search.store import MilvusStore, Segment
from tests.search.builders import (
    DIM,
    brute_force_top_k,
    new_audio_id,
    new_collection_name,
    segments_for,
    unit_vectors,
)


def test_ensure_collection_creates_once_then_reports_it_exists(store: MilvusStore) -> None:
    name = new_collection_name()
    try:
        assert store.ensure_collection(name, DIM) is True
        assert store.ensure_collection(name, DIM) is False
        assert store.dimension(name) == DIM
    finally:
        store.drop_collection(name)


def test_ensure_collection_refuses_another_dimension(store: MilvusStore, collection: str) -> None:
    with pytest.raises(FailedPrecondition) as raised:
        store.ensure_collection(collection, DIM * 2)
    assert raised.value.reason == "DIMENSION_MISMATCH"
    assert raised.value.metadata == {
        "collection": collection, "existing": str(DIM), "requested": str(DIM * 2)}


def test_new_collection_gets_the_configured_index(store: MilvusStore, collection: str) -> None:
    expected = "FLAT" if store.config.is_lite else "HNSW"
    assert store._layout(collection).index_type == expected


def test_search_right_after_upsert_finds_the_segment(store: MilvusStore, collection: str) -> None:
    vector = unit_vectors(1, seed=1)[0]
    store.upsert(collection, [Segment(42, new_audio_id(), 2.0, 3.0, vector)])

    [hits] = store.search(collection, vector[None, :], top_k=1)

    assert [hit.segment_id for hit in hits] == [42]
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert (hits[0].start_s, hits[0].end_s) == (2.0, 3.0)


def test_search_ranks_like_brute_force_inner_product(store: MilvusStore, collection: str) -> None:
    vectors = unit_vectors(300, seed=2)
    segments = segments_for(vectors, [new_audio_id() for _ in range(10)], first_id=1000)
    store.upsert(collection, segments)
    queries = unit_vectors(5, seed=3)

    results = store.search(collection, queries, top_k=10)

    assert len(results) == len(queries)
    for query, hits in zip(queries, results, strict=True):
        expected = brute_force_top_k(vectors, query, 10)
        assert [hit.segment_id - 1000 for hit in hits] == expected
        np.testing.assert_allclose([hit.score for hit in hits], vectors[expected] @ query, atol=1e-4)


def test_every_query_vector_finds_itself_first(store: MilvusStore, collection: str) -> None:
    vectors = unit_vectors(200, seed=4)
    store.upsert(collection, segments_for(vectors, [new_audio_id()]))

    results = store.search(collection, vectors, top_k=3)

    assert [hits[0].segment_id for hits in results] == list(range(1, 201))
    assert all(hits[0].score == pytest.approx(1.0, abs=1e-4) for hits in results)


def test_query_rows_of_another_float_type_search_as_float32(store: MilvusStore, collection: str) -> None:
    vectors = unit_vectors(50, seed=6)
    store.upsert(collection, segments_for(vectors, [new_audio_id()]))

    as_float64 = store.search(collection, vectors[:4].astype(np.float64), top_k=5)
    as_float32 = store.search(collection, vectors[:4], top_k=5)

    assert [[hit.segment_id for hit in hits] for hits in as_float64] == [
        [hit.segment_id for hit in hits] for hits in as_float32
    ]
    assert [hits[0].segment_id for hits in as_float64] == [1, 2, 3, 4]


def test_query_bytes_make_the_placeholder_pymilvus_makes_of_numpy_rows() -> None:
    queries = unit_vectors(3, seed=7)

    from_bytes = Prepare._prepare_placeholder_str(store_module.query_bytes(queries), False, DataType.FLOAT_VECTOR)

    assert from_bytes == Prepare._prepare_placeholder_str(list(queries))


def test_search_hits_carry_the_segment_fields(store: MilvusStore, collection: str) -> None:
    audio_id = new_audio_id()
    vector = unit_vectors(1, seed=5)[0]
    store.upsert(collection, [Segment(7, audio_id, 1.5, 2.5, vector)])

    [[hit]] = store.search(collection, vector[None, :], top_k=1)

    assert (hit.segment_id, hit.audio_id, hit.start_s, hit.end_s) == (7, audio_id, 1.5, 2.5)


def test_upsert_replaces_the_segment_with_the_same_id(store: MilvusStore, collection: str) -> None:
    first, second = unit_vectors(2, seed=6)
    old_audio, new_audio = new_audio_id(), new_audio_id()
    store.upsert(collection, [Segment(1, old_audio, 0.0, 1.0, first)])
    store.upsert(collection, [Segment(1, new_audio, 5.0, 6.0, second)])

    [[hit]] = store.search(collection, second[None, :], top_k=5)

    assert (hit.segment_id, hit.audio_id, hit.start_s) == (1, new_audio, 5.0)
    assert hit.score == pytest.approx(1.0, abs=1e-4)
    assert store.count(collection) == 1
    assert store.count(collection, old_audio) == 0


def test_upsert_keeps_the_last_of_an_id_repeated_in_one_batch(store: MilvusStore, collection: str) -> None:
    first, second = unit_vectors(2, seed=7)
    audio_id = new_audio_id()

    twice = [Segment(3, audio_id, 0.0, 1.0, first), Segment(3, audio_id, 1.0, 2.0, second)]

    written = store.upsert(collection, twice)

    assert written == 1
    assert store.count(collection) == 1
    [[hit]] = store.search(collection, second[None, :], top_k=5)
    assert (hit.segment_id, hit.start_s) == (3, 1.0)


def test_search_among_given_recordings_only(store: MilvusStore, collection: str) -> None:
    audio_ids = [new_audio_id() for _ in range(4)]
    vectors = unit_vectors(40, seed=8)
    store.upsert(collection, segments_for(vectors, audio_ids))
    wanted = audio_ids[1:3]

    [hits] = store.search(collection, vectors[:1], top_k=40, audio_ids=wanted)

    assert len(hits) == 20
    assert {hit.audio_id for hit in hits} == set(wanted)


def test_search_among_recordings_without_vectors_finds_nothing(store: MilvusStore, collection: str) -> None:
    vectors = unit_vectors(5, seed=9)
    store.upsert(collection, segments_for(vectors, [new_audio_id()]))

    assert store.search(collection, vectors[:2], top_k=3, audio_ids=[new_audio_id()]) == [[], []]


def test_delete_audio_removes_its_segments_from_search_and_count(store: MilvusStore, collection: str) -> None:
    kept, deleted = new_audio_id(), new_audio_id()
    vectors = unit_vectors(10, seed=10)
    store.upsert(collection, segments_for(vectors, [kept, deleted]))

    store.delete_audio(collection, [deleted])

    assert store.count(collection) == 5
    assert store.count(collection, deleted) == 0
    results = store.search(collection, vectors, top_k=10)
    assert {hit.audio_id for hits in results for hit in hits} == {kept}


def test_delete_audio_is_idempotent(store: MilvusStore, collection: str) -> None:
    audio_id = new_audio_id()
    store.upsert(collection, segments_for(unit_vectors(3, seed=11), [audio_id]))

    store.delete_audio(collection, [audio_id])
    store.delete_audio(collection, [audio_id, new_audio_id()])

    assert store.count(collection) == 0


def test_concurrent_writes_to_two_collections_all_land(store: MilvusStore, collection: str) -> None:
    """On Milvus Lite the writes queue and go in groups (group_commit.py); every acknowledged one is stored."""
    other = new_collection_name()
    store.ensure_collection(other, DIM)
    try:
        recordings = [(collection if index % 3 else other, new_audio_id(), index) for index in range(24)]
        doomed = new_audio_id()
        store.upsert(collection, segments_for(unit_vectors(3, seed=99), [doomed], first_id=90_000))

        def write(index: int) -> None:
            if index == len(recordings):
                store.delete_audio(collection, [doomed])
                return
            name, audio_id, number = recordings[index]
            store.upsert(name, segments_for(unit_vectors(3, seed=number), [audio_id], first_id=1 + 3 * number))

        with ThreadPoolExecutor(12) as pool:
            list(pool.map(write, range(len(recordings) + 1)))

        for name, audio_id, _ in recordings:
            assert store.count(name, audio_id) == 3
        assert store.count(collection, doomed) == 0
        assert store.count(collection) + store.count(other) == 3 * len(recordings)
        vectors = unit_vectors(3, seed=5)
        [hits] = store.search(recordings[5][0], vectors[:1], top_k=1)
        assert hits[0].audio_id == recordings[5][1]
    finally:
        store.drop_collection(other)


_READER = """
import sys
from audiosearch.search.store import MilvusStore, StoreConfig
store = MilvusStore(StoreConfig(uri=sys.argv[1]))
print("ready", flush=True)
for line in sys.stdin:
    collection, audio_id = line.split()
    print(store.count(collection, audio_id), flush=True)
"""


def test_another_process_reads_each_acknowledged_write_at_once(store: MilvusStore, collection: str) -> None:
    """Another replica of the search service (its own process and Milvus client) counts a recording right after
    this one's upsert, then right after its delete: a write returns only once reads see it, whatever the reads'
    consistency level (Bounded by default, which does not wait for a time tick)."""
    if store.config.is_lite:
        pytest.skip("Milvus Lite lives inside one process")
    reader = subprocess.Popen([sys.executable, "-c", _READER, store.config.uri], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    try:
        assert reader.stdin is not None
        assert reader.stdout is not None
        assert reader.stdout.readline().strip() == "ready"

        def counted(audio_id: str) -> int:
            reader.stdin.write(f"{collection} {audio_id}\n")
            reader.stdin.flush()
            return int(reader.stdout.readline())

        assert store.config.consistency == "Bounded"
        for round_number in range(5):
            audio_id = new_audio_id()
            store.upsert(collection, segments_for(unit_vectors(3, seed=round_number), [audio_id],
                                                  first_id=7_000 + 10 * round_number))
            assert counted(audio_id) == 3
            store.delete_audio(collection, [audio_id])
            assert counted(audio_id) == 0
    finally:
        reader.kill()
        reader.wait()


def test_count_counts_the_collection_or_one_recording(store: MilvusStore, collection: str) -> None:
    first, second = new_audio_id(), new_audio_id()
    store.upsert(collection, segments_for(unit_vectors(3, seed=12), [first]))
    store.upsert(collection, segments_for(unit_vectors(2, seed=13), [second], first_id=100))

    assert store.count(collection) == 5
    assert store.count(collection, first) == 3
    assert store.count(collection, second) == 2
    assert store.count(collection, new_audio_id()) == 0


def test_list_audio_ids_returns_each_recording_once(
    store: MilvusStore, collection: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "ITERATOR_BATCH", 7)  # several batches
    audio_ids = sorted(new_audio_id() for _ in range(6))
    store.upsert(collection, segments_for(unit_vectors(50, seed=14), audio_ids))

    assert store.list_audio_ids(collection) == audio_ids


def test_list_audio_ids_of_an_empty_collection_is_empty(store: MilvusStore, collection: str) -> None:
    assert store.list_audio_ids(collection) == []


def test_segments_of_returns_the_stored_vectors(store: MilvusStore, collection: str) -> None:
    wanted, other = new_audio_id(), new_audio_id()
    vectors = unit_vectors(8, seed=15)
    store.upsert(collection, segments_for(vectors, [wanted, other]))

    segments = sorted(store.segments_of(collection, [wanted]), key=lambda segment: segment.segment_id)

    assert [segment.segment_id for segment in segments] == [1, 3, 5, 7]
    assert all(segment.audio_id == wanted for segment in segments)
    assert [(segment.start_s, segment.end_s) for segment in segments] == [(0.0, 1.0), (2.0, 3.0), (4.0, 5.0),
                                                                           (6.0, 7.0)]
    np.testing.assert_array_equal(np.stack([segment.vector for segment in segments]), vectors[[0, 2, 4, 6]])


def test_unknown_collection_is_not_found(store: MilvusStore) -> None:
    name = new_collection_name("missing")
    for call in (
        lambda: store.dimension(name),
        lambda: store.count(name),
        lambda: store.search(name, unit_vectors(1), top_k=1),
        lambda: store.delete_audio(name, [new_audio_id()]),
        lambda: store.list_audio_ids(name),
    ):
        with pytest.raises(NotFound) as raised:
            call()
        assert raised.value.reason == "COLLECTION_NOT_FOUND"
        assert raised.value.metadata == {"collection": name}


def test_dropped_collection_is_gone_and_dropping_again_is_fine(store: MilvusStore) -> None:
    name = new_collection_name()
    store.ensure_collection(name, DIM)
    store.upsert(name, segments_for(unit_vectors(2), [new_audio_id()]))

    store.drop_collection(name)
    store.drop_collection(name)

    with pytest.raises(NotFound):
        store.count(name)
    assert store.ensure_collection(name, DIM * 2) is True
    store.drop_collection(name)


def test_a_released_collection_is_loaded_again_on_first_use(store: MilvusStore, collection: str) -> None:
    vector = unit_vectors(1, seed=16)[0]
    store.upsert(collection, [Segment(5, new_audio_id(), 0.0, 1.0, vector)])
    MilvusClient(uri=store.config.uri).release_collection(store.config.collection_prefix + collection)
    restarted = MilvusStore(store.config)

    [[hit]] = restarted.search(collection, vector[None, :], top_k=1)

    assert hit.segment_id == 5
    restarted.close()


def test_ping_answers_true_while_milvus_serves(store: MilvusStore) -> None:
    assert store.ping() is True
