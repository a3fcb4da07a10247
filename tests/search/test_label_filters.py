"""Tag and metadata filters decided by the search service over the labels stored with its rows (segments and
landmark windows), on both backends; and a collection written before its rows held labels, which says so."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from pymilvus import DataType, MilvusClient

from audiosearch.common.errors import reason_of
from audiosearch.search.labels import both, label_filter, label_tokens
from audiosearch.search.store import StoreConfig
from audiosearch.search.v1 import search_pb2 as pb
from audiosearch.search.v1.search_pb2_grpc import VectorSearchServiceStub
from audiosearch.v1.audiosearch_pb2 import AudioFilter
from tests.search.builders import DIM, as_bytes, new_audio_id, new_collection_name, unit_vectors
from tests.search.test_search_grpc import failure

TRICKY = 'say "hi" \\ or ] and ) [x]'  # quotes, a backslash and brackets: nothing a filter may trip on
LABELS = {
    "drums": pb.AudioLabels(tags=["Drum", "Music"], metadata={"station": "fm1", "note": TRICKY}),
    "voice": pb.AudioLabels(tags=["Speech", "Music"], metadata={"station": "fm2"}),
    "bare": pb.AudioLabels(),
}


@pytest.fixture
def labelled(search: VectorSearchServiceStub) -> Iterator[tuple[str, dict[str, str], np.ndarray]]:
    """A collection of three recordings, one segment and one landmark window each, all with the same vector and
    landmarks, so that only their labels tell them apart."""
    collection = new_collection_name("f")
    search.EnsureCollection(pb.EnsureCollectionRequest(collection=collection, dimension=DIM))
    vector = unit_vectors(1, seed=3)[0]
    ids = {name: new_audio_id() for name in LABELS}
    search.UpsertSegments(pb.UpsertSegmentsRequest(collection=collection, segments=[
        pb.SegmentVector(segment_id=index + 1, audio_id=ids[name], start_seconds=0.0, end_seconds=1.0,
                         vector=as_bytes(vector), labels=labels)
        for index, (name, labels) in enumerate(LABELS.items())]))
    for name, labels in LABELS.items():
        search.UpsertLandmarks(pb.UpsertLandmarksRequest(
            collection=collection, audio_id=ids[name], duration_ms=4000, labels=labels,
            landmarks=pb.Landmarks(hashes=list(range(500, 530)), times_ms=list(range(0, 3000, 100)))))
    yield collection, ids, vector
    search.DropCollection(pb.DropCollectionRequest(collection=collection))


def found(search: VectorSearchServiceStub, collection: str, vector: np.ndarray, ids: dict[str, str],
          audio_filter: AudioFilter) -> tuple[set[str], set[str]]:
    """The recordings (by name) that the segment search and the landmark match return under the filter."""
    names = {audio_id: name for name, audio_id in ids.items()}
    segments = search.SearchSegments(pb.SearchSegmentsRequest(
        collection=collection, vectors=[as_bytes(vector)], top_k=10, filter=audio_filter)).results[0].hits
    landmarks = search.MatchLandmarks(pb.MatchLandmarksRequest(
        collection=collection, top_k=10, filter=audio_filter,
        landmarks=pb.Landmarks(hashes=list(range(500, 530)), times_ms=list(range(0, 3000, 100))))).matches
    return {names[hit.audio_id] for hit in segments}, {names[match.audio_id] for match in landmarks}


@pytest.mark.parametrize(("audio_filter", "expected"), [
    (AudioFilter(), {"drums", "voice", "bare"}),
    (AudioFilter(tags=["Music"]), {"drums", "voice"}),
    (AudioFilter(tags=["Music", "Speech"]), {"voice"}),
    (AudioFilter(tags=["music"]), set()),  # exact, as the catalog's filter
    (AudioFilter(metadata={"station": "fm1"}), {"drums"}),
    (AudioFilter(metadata={"note": TRICKY}), {"drums"}),
    (AudioFilter(tags=["Speech"], metadata={"station": "fm1"}), set()),
    (AudioFilter(metadata={"Drum": ""}), set()),  # a tag is not a metadata key
])
def test_segments_and_landmarks_keep_to_the_recordings_a_filter_passes(
    search: VectorSearchServiceStub, labelled: tuple[str, dict[str, str], np.ndarray], audio_filter: AudioFilter,
    expected: set[str],
) -> None:
    collection, ids, vector = labelled
    assert found(search, collection, vector, ids, audio_filter) == (expected, expected)


def test_a_filter_beyond_the_catalogs_limits_is_invalid(search: VectorSearchServiceStub,
                                                        labelled: tuple[str, dict[str, str], np.ndarray]) -> None:
    collection, _, vector = labelled
    error = failure(lambda: search.SearchSegments(pb.SearchSegmentsRequest(
        collection=collection, vectors=[as_bytes(vector)], top_k=10, filter=AudioFilter(tags=["t"] * 33)))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "filter.tags" in error.details()


def test_labels_beyond_the_catalogs_limits_are_invalid_and_write_nothing(
    search: VectorSearchServiceStub, labelled: tuple[str, dict[str, str], np.ndarray]
) -> None:
    collection, _, vector = labelled
    audio_id = new_audio_id()
    error = failure(lambda: search.UpsertSegments(pb.UpsertSegmentsRequest(collection=collection, segments=[
        pb.SegmentVector(segment_id=99, audio_id=audio_id, start_seconds=0.0, end_seconds=1.0,
                         vector=as_bytes(vector), labels=pb.AudioLabels(metadata={"": "no key"}))])))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "segments[0].labels.metadata" in error.details()
    assert search.CountSegments(pb.CountSegmentsRequest(collection=collection, audio_id=audio_id)).count == 0


def test_a_collection_written_before_labels_refuses_filters_and_serves_the_rest(
    search: VectorSearchServiceStub, milvus_uri: str
) -> None:
    collection = new_collection_name("legacy")
    milvus = MilvusClient(uri=milvus_uri)
    milvus_name = StoreConfig(uri=milvus_uri).collection_prefix + collection
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("segment_id", DataType.INT64, is_primary=True)
    schema.add_field("audio_id", DataType.VARCHAR, max_length=64)
    schema.add_field("start_s", DataType.FLOAT)
    schema.add_field("end_s", DataType.FLOAT)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    index_params = milvus.prepare_index_params()
    index_params.add_index(field_name="vector", index_type="FLAT", metric_type="IP")
    milvus.create_collection(milvus_name, schema=schema, index_params=index_params)
    try:
        vector = unit_vectors(1, seed=4)[0]
        audio_id = new_audio_id()
        search.UpsertSegments(pb.UpsertSegmentsRequest(collection=collection, segments=[
            pb.SegmentVector(segment_id=1, audio_id=audio_id, start_seconds=0.0, end_seconds=1.0,
                             vector=as_bytes(vector), labels=LABELS["drums"])]))

        hits = search.SearchSegments(pb.SearchSegmentsRequest(
            collection=collection, vectors=[as_bytes(vector)], top_k=5)).results[0].hits
        error = failure(lambda: search.SearchSegments(pb.SearchSegmentsRequest(
            collection=collection, vectors=[as_bytes(vector)], top_k=5, filter=AudioFilter(tags=["Drum"]))))

        assert [hit.audio_id for hit in hits] == [audio_id]
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert reason_of(error) == "FILTER_UNSUPPORTED"
    finally:
        search.DropCollection(pb.DropCollectionRequest(collection=collection))
        milvus.close()


def test_tokens_are_hexadecimal_and_tell_tags_from_metadata() -> None:
    tokens = label_tokens(["a"], {"a": ""})
    assert len(tokens) == 2
    assert all(set(token) <= set("0123456789abcdef") for token in tokens)
    assert label_tokens(["x", "x"], {}) == label_tokens(["x"], {})
    assert label_filter([], {}) == ""
    assert label_filter([TRICKY], {}).startswith("array_contains_all(labels, [\"")
    assert both("", "a == 1", "") == "a == 1"
    assert both("a == 1", "b == 2") == "(a == 1) and (b == 2)"
