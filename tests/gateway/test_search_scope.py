"""How a filtered search reaches the search service: as a filter over the labels stored with its rows; for a
collection whose rows hold no labels (written by an earlier version), as the ids the catalog lists, once the search
service has said so. Against in-memory fakes of the two services."""

from __future__ import annotations

from types import SimpleNamespace

import grpc
import numpy as np

from audiosearch.catalog.v1 import catalog_pb2 as cpb
from audiosearch.common.errors import FailedPrecondition
from audiosearch.gateway.query.search import Query
from audiosearch.search.v1 import search_pb2 as spb
from audiosearch.v1 import audiosearch_pb2 as pb

DIM = 8
COLLECTION = pb.Collection(name="library", segment_config=pb.SegmentConfig(window_seconds=2.0, hop_seconds=1.0))
VECTOR = np.full(DIM, DIM ** -0.5, dtype=np.float32)
RECORDINGS = {"drums": ["Drum"], "voice": ["Speech"]}


class FailedCall(grpc.RpcError, grpc.Call):
    """A failed call as grpc raises it, with the service's rich status."""

    def __init__(self, error: FailedPrecondition) -> None:
        self._status = error.to_status()

    def code(self) -> grpc.StatusCode:
        return self._status.code

    def details(self) -> str:
        return self._status.details

    def trailing_metadata(self):
        return self._status.trailing_metadata

    def initial_metadata(self):
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback) -> bool:
        return False


class FakeSearch:
    """One segment per recording, all with the same vector; filters by tag as the search service does, unless the
    collection's rows hold no labels."""

    def __init__(self, labelled: bool) -> None:
        self.labelled = labelled
        self.requests: list[spb.SearchSegmentsRequest] = []

    def SearchSegments(self, request: spb.SearchSegmentsRequest) -> spb.SearchSegmentsResponse:
        self.requests.append(request)
        has_filter = request.HasField("filter") and bool(request.filter.tags)
        if has_filter and not self.labelled:
            raise FailedCall(FailedPrecondition("no labels", reason="FILTER_UNSUPPORTED"))
        passing = [audio_id for audio_id, tags in RECORDINGS.items()
                   if (not request.audio_ids or audio_id in request.audio_ids)
                   and (not has_filter or set(request.filter.tags) <= set(tags))]
        return spb.SearchSegmentsResponse(results=[spb.QueryHits(hits=[
            spb.SegmentHit(segment_id=index, audio_id=audio_id, start_seconds=0.0, end_seconds=2.0, score=1.0)
            for index, audio_id in enumerate(passing)])])


class FakeCatalog:
    def __init__(self) -> None:
        self.listed = 0

    def ListAudio(self, request: cpb.ListAudioRequest) -> cpb.ListAudioResponse:
        self.listed += 1
        return cpb.ListAudioResponse(audios=[_record(audio_id) for audio_id, tags in RECORDINGS.items()
                                             if set(request.filter.tags) <= set(tags)])

    def BatchGetAudio(self, request: cpb.BatchGetAudioRequest) -> cpb.BatchGetAudioResponse:
        return cpb.BatchGetAudioResponse(audios=[_record(audio_id) for audio_id in request.audio_ids])


def _record(audio_id: str) -> pb.AudioRecord:
    return pb.AudioRecord(id=audio_id, status=pb.AUDIO_STATUS_READY, duration_seconds=2.0,
                          tags=[pb.Tag(label=tag) for tag in RECORDINGS[audio_id]])


def searched(labelled: bool, times: int = 1) -> tuple[list[list[str]], FakeSearch, FakeCatalog]:
    search, catalog = FakeSearch(labelled), FakeCatalog()
    query = Query(SimpleNamespace(search=search, catalog=catalog), pipeline=None, settings=None)
    embedded = SimpleNamespace(
        segments=SimpleNamespace(starts_seconds=np.array([0.0]), ends_seconds=np.array([2.0])),
        audio=SimpleNamespace(duration_seconds=2.0), embeddings=SimpleNamespace(vectors=VECTOR[None, :]))
    found = [[match.audio.id for match in query.match(COLLECTION, embedded, 10, -1.0, pb.AudioFilter(tags=["Drum"]))]
             for _ in range(times)]
    return found, search, catalog


def test_a_filter_travels_to_the_search_service_and_no_ids_do() -> None:
    found, search, catalog = searched(labelled=True)

    assert found == [["drums"]]
    assert [list(r.filter.tags) for r in search.requests] == [["Drum"]]
    assert [list(r.audio_ids) for r in search.requests] == [[]]
    assert catalog.listed == 0


def test_a_collection_without_labels_is_filtered_by_the_catalogs_ids_from_its_first_search_on() -> None:
    found, search, catalog = searched(labelled=False, times=2)

    assert found == [["drums"], ["drums"]]
    # The first search tries the filter once; after the refusal, both go with ids.
    assert [(r.HasField("filter"), list(r.audio_ids)) for r in search.requests] == [
        (True, []), (False, ["drums"]), (False, ["drums"])]
    assert catalog.listed == 2
