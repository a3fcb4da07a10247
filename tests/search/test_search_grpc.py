"""The search service over gRPC, in-process on a free port, through the generated stub; on both backends."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import numpy as np
import pytest

from audiosearch.common.errors import reason_of
from audiosearch.search.v1 import search_pb2 as pb
from audiosearch.search.v1.search_pb2_grpc import VectorSearchServiceStub
from tests.search.builders import (
    DIM,
    as_bytes,
    brute_force_top_k,
    new_audio_id,
    new_collection_name,
    segment_to_proto,
    segments_for,
    unit_vectors,
)


@pytest.fixture
def name(search: VectorSearchServiceStub) -> Iterator[str]:
    """A fresh DIM-dimensional collection, dropped afterwards."""
    collection = new_collection_name("g")
    search.EnsureCollection(pb.EnsureCollectionRequest(collection=collection, dimension=DIM))
    yield collection
    search.DropCollection(pb.DropCollectionRequest(collection=collection))


@pytest.fixture(scope="module")
def shared_name(search: VectorSearchServiceStub) -> Iterator[str]:
    """One collection for the tests that only send requests it must refuse."""
    collection = new_collection_name("g")
    search.EnsureCollection(pb.EnsureCollectionRequest(collection=collection, dimension=DIM))
    yield collection
    search.DropCollection(pb.DropCollectionRequest(collection=collection))


def upsert(search: VectorSearchServiceStub, collection: str, vectors: np.ndarray, audio_ids: list[str],
           first_id: int = 1) -> int:
    segments = [segment_to_proto(segment) for segment in segments_for(vectors, audio_ids, first_id)]
    response = search.UpsertSegments(pb.UpsertSegmentsRequest(collection=collection, segments=segments))
    return response.upserted_count


def search_hits(search: VectorSearchServiceStub, collection: str, queries: np.ndarray, top_k: int,
                audio_ids: list[str] | None = None) -> list[list[pb.SegmentHit]]:
    vectors = [as_bytes(query) for query in queries]
    response = search.SearchSegments(pb.SearchSegmentsRequest(
        collection=collection, vectors=vectors, top_k=top_k, audio_ids=audio_ids or []))
    return [list(result.hits) for result in response.results]


def count(search: VectorSearchServiceStub, collection: str, audio_id: str = "") -> int:
    return search.CountSegments(pb.CountSegmentsRequest(collection=collection, audio_id=audio_id)).count


def failure(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value


def one_vector_search(collection: str, vector: bytes, top_k: int = 1) -> pb.SearchSegmentsRequest:
    return pb.SearchSegmentsRequest(collection=collection, vectors=[vector], top_k=top_k)


def failure_of_search(search: VectorSearchServiceStub, collection: str, vector: bytes,
                      top_k: int = 1) -> grpc.RpcError:
    return failure(lambda: search.SearchSegments(one_vector_search(collection, vector, top_k)))


def test_search_right_after_upsert_finds_each_segment_first(search: VectorSearchServiceStub,
                                                             name: str) -> None:
    vectors = unit_vectors(100, seed=21)
    audio_id = new_audio_id()

    assert upsert(search, name, vectors, [audio_id]) == 100
    results = search_hits(search, name, vectors, top_k=3)

    assert [hits[0].segment_id for hits in results] == list(range(1, 101))
    assert all(hits[0].score == pytest.approx(1.0, abs=1e-4) for hits in results)
    assert all(hits[0].audio_id == audio_id for hits in results)
    assert all(len(hits) == 3 for hits in results)


def test_search_ranks_like_brute_force_inner_product(search: VectorSearchServiceStub, name: str) -> None:
    vectors = unit_vectors(300, seed=22)
    upsert(search, name, vectors, [new_audio_id() for _ in range(5)])
    queries = unit_vectors(4, seed=23)

    results = search_hits(search, name, queries, top_k=8)

    for query, hits in zip(queries, results, strict=True):
        expected = brute_force_top_k(vectors, query, 8)
        assert [hit.segment_id - 1 for hit in hits] == expected
        np.testing.assert_allclose([hit.score for hit in hits], vectors[expected] @ query, atol=1e-4)


def test_hits_carry_recording_and_time_range(search: VectorSearchServiceStub, name: str) -> None:
    vector = unit_vectors(1, seed=24)[0]
    audio_id = new_audio_id()
    search.UpsertSegments(pb.UpsertSegmentsRequest(collection=name, segments=[pb.SegmentVector(
        segment_id=9, audio_id=audio_id, start_seconds=4.5, end_seconds=5.5, vector=as_bytes(vector))]))

    [[hit]] = search_hits(search, name, vector[None, :], top_k=1)

    assert (hit.segment_id, hit.audio_id, hit.start_seconds, hit.end_seconds) == (9, audio_id, 4.5, 5.5)


def test_upsert_is_idempotent_by_segment_id(search: VectorSearchServiceStub, name: str) -> None:
    vectors = unit_vectors(10, seed=25)
    audio_id = new_audio_id()

    upsert(search, name, vectors, [audio_id])
    upsert(search, name, vectors, [audio_id])

    assert count(search, name) == 10
    assert [hits[0].segment_id for hits in search_hits(search, name, vectors, top_k=1)] == list(range(1, 11))


def test_search_among_given_recordings_only(search: VectorSearchServiceStub, name: str) -> None:
    audio_ids = [new_audio_id() for _ in range(3)]
    vectors = unit_vectors(30, seed=26)
    upsert(search, name, vectors, audio_ids)

    [hits] = search_hits(search, name, vectors[:1], top_k=30, audio_ids=[audio_ids[2]])

    assert len(hits) == 10
    assert {hit.audio_id for hit in hits} == {audio_ids[2]}


def test_delete_audio_removes_it_from_search_and_count(search: VectorSearchServiceStub, name: str) -> None:
    kept, deleted = new_audio_id(), new_audio_id()
    vectors = unit_vectors(20, seed=27)
    upsert(search, name, vectors, [kept, deleted])

    search.DeleteAudio(pb.DeleteAudioRequest(collection=name, audio_ids=[deleted]))

    assert count(search, name, deleted) == 0
    assert count(search, name, kept) == 10
    assert count(search, name) == 10
    hits = [hit for result in search_hits(search, name, vectors, top_k=20) for hit in result]
    assert {hit.audio_id for hit in hits} == {kept}
    search.DeleteAudio(pb.DeleteAudioRequest(collection=name, audio_ids=[deleted]))  # idempotent


def test_list_audio_ids_lists_each_recording_once(search: VectorSearchServiceStub, name: str) -> None:
    audio_ids = sorted(new_audio_id() for _ in range(4))
    upsert(search, name, unit_vectors(12, seed=28), audio_ids)

    response = search.ListAudioIds(pb.ListAudioIdsRequest(collection=name))

    assert sorted(response.audio_ids) == audio_ids


def test_get_segment_vectors_returns_the_stored_bytes(search: VectorSearchServiceStub, name: str) -> None:
    wanted, other = new_audio_id(), new_audio_id()
    vectors = unit_vectors(6, seed=29)
    upsert(search, name, vectors, [wanted, other])

    response = search.GetSegmentVectors(pb.GetSegmentVectorsRequest(collection=name, audio_ids=[wanted]))

    segments = sorted(response.segments, key=lambda segment: segment.segment_id)
    assert [(s.segment_id, s.audio_id, s.start_seconds) for s in segments] == [
        (1, wanted, 0.0), (3, wanted, 2.0), (5, wanted, 4.0)]
    assert [s.vector for s in segments] == [as_bytes(vectors[i]) for i in (0, 2, 4)]


def test_ensure_collection_twice_is_fine_and_another_dimension_is_refused(
    search: VectorSearchServiceStub,
) -> None:
    collection = new_collection_name("g")
    try:
        first = search.EnsureCollection(pb.EnsureCollectionRequest(collection=collection, dimension=DIM))
        second = search.EnsureCollection(pb.EnsureCollectionRequest(collection=collection, dimension=DIM))
        error = failure(lambda: search.EnsureCollection(
            pb.EnsureCollectionRequest(collection=collection, dimension=DIM + 1)))
    finally:
        search.DropCollection(pb.DropCollectionRequest(collection=collection))

    assert (first.created, second.created) == (True, False)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(error) == "DIMENSION_MISMATCH"


def test_drop_collection_is_idempotent(search: VectorSearchServiceStub) -> None:
    collection = new_collection_name("g")
    search.EnsureCollection(pb.EnsureCollectionRequest(collection=collection, dimension=DIM))

    search.DropCollection(pb.DropCollectionRequest(collection=collection))
    search.DropCollection(pb.DropCollectionRequest(collection=collection))

    error = failure(lambda: count(search, collection))
    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_unknown_collection_is_not_found_with_its_reason(search: VectorSearchServiceStub) -> None:
    collection = new_collection_name("missing")
    vector = as_bytes(unit_vectors(1)[0])
    segment = pb.SegmentVector(segment_id=1, audio_id=new_audio_id(), end_seconds=1, vector=vector)
    ids = [new_audio_id()]
    calls = [
        lambda: search.SearchSegments(one_vector_search(collection, vector)),
        lambda: search.UpsertSegments(pb.UpsertSegmentsRequest(collection=collection, segments=[segment])),
        lambda: search.DeleteAudio(pb.DeleteAudioRequest(collection=collection, audio_ids=ids)),
        lambda: search.CountSegments(pb.CountSegmentsRequest(collection=collection)),
        lambda: search.ListAudioIds(pb.ListAudioIdsRequest(collection=collection)),
        lambda: search.GetSegmentVectors(pb.GetSegmentVectorsRequest(collection=collection, audio_ids=ids)),
    ]
    for call in calls:
        error = failure(call)
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert reason_of(error) == "COLLECTION_NOT_FOUND"


@pytest.mark.parametrize("vector", [b"", bytes(DIM * 4 - 4), bytes(DIM * 8), bytes(DIM * 4 + 1)])
def test_query_vector_of_the_wrong_length_is_invalid(
    search: VectorSearchServiceStub, shared_name: str, vector: bytes
) -> None:
    error = failure_of_search(search, shared_name, vector)

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(error) == "INVALID_FIELD"


def test_upserted_vector_of_the_wrong_length_is_invalid_and_nothing_is_written(
    search: VectorSearchServiceStub, name: str
) -> None:
    good = segment_to_proto(segments_for(unit_vectors(1), [new_audio_id()])[0])
    bad = pb.SegmentVector(segment_id=2, audio_id=new_audio_id(), start_seconds=0, end_seconds=1,
                           vector=as_bytes(unit_vectors(1, dim=DIM - 1)[0]))
    request = pb.UpsertSegmentsRequest(collection=name, segments=[good, bad])

    error = failure(lambda: search.UpsertSegments(request))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(error) == "INVALID_FIELD"
    assert "segments[1].vector" in (error.details() or "")
    assert count(search, name) == 0


def test_non_finite_vector_is_invalid(search: VectorSearchServiceStub, shared_name: str) -> None:
    vector = unit_vectors(1)[0].copy()
    vector[3] = np.nan

    error = failure_of_search(search, shared_name, as_bytes(vector))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(error) == "INVALID_FIELD"


@pytest.mark.parametrize("top_k", [0, -1, 16_385])
def test_top_k_out_of_range_is_invalid(search: VectorSearchServiceStub, shared_name: str, top_k: int) -> None:
    error = failure_of_search(search, shared_name, as_bytes(unit_vectors(1)[0]), top_k)

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(error) == "INVALID_FIELD"


@pytest.mark.parametrize("collection", ["", "Upper", "1starts_with_digit", "has-dash", "x" * 64, 'q"uote'])
def test_bad_collection_name_is_invalid(search: VectorSearchServiceStub, collection: str) -> None:
    request = pb.EnsureCollectionRequest(collection=collection, dimension=8)

    error = failure(lambda: search.EnsureCollection(request))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(error) == "INVALID_FIELD"


@pytest.mark.parametrize("audio_id", ['a" or audio_id != "', "with space", "x" * 65, ""])
def test_audio_id_that_could_escape_the_filter_is_invalid(
    search: VectorSearchServiceStub, shared_name: str, audio_id: str
) -> None:
    request = pb.DeleteAudioRequest(collection=shared_name, audio_ids=[audio_id])

    error = failure(lambda: search.DeleteAudio(request))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(error) == "INVALID_FIELD"
