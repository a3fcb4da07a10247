"""The reconciler and the ingest rollback against in-memory catalog and search fakes: who may remove what, when."""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest

from audiosearch.catalog.v1 import catalog_pb2 as cpb
from audiosearch.common.errors import Aborted
from audiosearch.gateway.audio.decoding import DecodedAudio
from audiosearch.gateway.audio.pipeline import EmbeddedAudio
from audiosearch.gateway.audio.segments import Segments
from audiosearch.gateway.backends.admission import Work
from audiosearch.gateway.backends.embedder import Embeddings
from audiosearch.gateway.ingest.reconciler import Reconciler
from audiosearch.gateway.ingest.writer import Records
from audiosearch.gateway.settings import GatewaySettings
from audiosearch.search.v1 import search_pb2 as spb
from audiosearch.v1 import audiosearch_pb2 as pb

PENDING, READY, DELETING = pb.AUDIO_STATUS_PENDING, pb.AUDIO_STATUS_READY, pb.AUDIO_STATUS_DELETING
COLLECTION = "library"
LONG_AGO = 1_000_000


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        super().__init__(code.name)
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._code.name


class FakeCatalog:
    def __init__(self, events: list[tuple]) -> None:
        self.records: dict[str, pb.AudioRecord] = {}
        self.events = events
        self.listed_as: dict[str, int] = {}  # a stale listing: id -> the status ListAudio still reports

    def add(self, audio_id: str, status: int, updated: float = LONG_AGO) -> None:
        record = pb.AudioRecord(id=audio_id, collection=COLLECTION, name=f"{audio_id}.wav", status=status)
        record.update_time.FromSeconds(int(updated))
        self.records[audio_id] = record

    def ListCollections(self, request):
        return cpb.ListCollectionsResponse(collections=[pb.Collection(name=COLLECTION)])

    def ListAudio(self, request):
        listed = [pb.AudioRecord(id=r.id, status=self.listed_as.get(r.id, r.status), update_time=r.update_time)
                  for r in self.records.values()]
        return cpb.ListAudioResponse(audios=[r for r in listed if not request.status or r.status == request.status])

    def BatchGetAudio(self, request):
        return cpb.BatchGetAudioResponse(audios=[self.records[i] for i in request.audio_ids if i in self.records])

    def GetAudio(self, request):
        if request.audio_id not in self.records:
            raise FakeRpcError(grpc.StatusCode.NOT_FOUND)
        return cpb.GetAudioResponse(audio=self.records[request.audio_id])

    def CreateAudio(self, request):
        audio = pb.AudioRecord()
        audio.CopyFrom(request.audio)
        audio.id, audio.status = "new", PENDING
        self.records["new"] = audio
        segments = [cpb.Segment(segment_id=index + 1, index=segment.index, range=segment.range)
                    for index, segment in enumerate(request.segments)]
        return cpb.CreateAudioResponse(audio=audio, segments=segments, created=True)

    def SetAudioStatus(self, request):
        self.events.append(("catalog.SetAudioStatus", request.audio_id, request.status, request.expected_status))
        record = self.records.get(request.audio_id)
        if record is None:
            raise FakeRpcError(grpc.StatusCode.NOT_FOUND)
        if request.expected_status and record.status != request.expected_status:
            raise FakeRpcError(grpc.StatusCode.FAILED_PRECONDITION)
        record.status = request.status
        record.update_time.FromSeconds(int(time.time()))
        return cpb.SetAudioStatusResponse(audio=record)

    def DeleteAudio(self, request):
        self.events.append(("catalog.DeleteAudio", request.audio_id))
        self.records.pop(request.audio_id, None)
        return cpb.DeleteAudioResponse()


class FakeSearch:
    def __init__(self, events: list[tuple]) -> None:
        self.vectors: dict[str, int] = {}
        self.events = events
        self.down = False
        self.on_upsert = None

    def ListAudioIds(self, request):
        return spb.ListAudioIdsResponse(audio_ids=sorted(self.vectors))

    def CountSegments(self, request):
        return spb.CountSegmentsResponse(count=self.vectors.get(request.audio_id, 0))

    def UpsertSegments(self, request):
        if self.on_upsert:
            self.on_upsert()
        for segment in request.segments:
            self.vectors[segment.audio_id] = self.vectors.get(segment.audio_id, 0) + 1
        return spb.UpsertSegmentsResponse(upserted_count=len(request.segments))

    def DeleteAudio(self, request):
        self.events.append(("search.DeleteAudio", *request.audio_ids))
        if self.down:
            raise FakeRpcError(grpc.StatusCode.UNAVAILABLE)
        for audio_id in request.audio_ids:
            self.vectors.pop(audio_id, None)
        return spb.DeleteAudioResponse()


class FakeBackends:
    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.catalog = FakeCatalog(self.events)
        self.search = FakeSearch(self.events)


class OneWindowPipeline:
    def __init__(self) -> None:
        self.works: list[Work] = []

    def decode(self, data, sample_rate_hz, max_duration_seconds=None):
        return DecodedAudio(np.zeros(32_000, np.float32), 32_000, 44_100, 1, "wav/pcm_16")

    def embed(self, audio, segment_config, cut, work=Work.INTERACTIVE):
        self.works.append(work)
        segments = Segments(np.zeros((1, 64_000), np.float32), np.array([0.0]), np.array([2.0]))
        return EmbeddedAudio(audio, segments, Embeddings(np.ones((1, 4), np.float32), np.zeros((1, 527), np.float32)))


@pytest.fixture
def backends():
    return FakeBackends()


def reconciler(backends, grace_seconds=10.0, orphan_interval_seconds=600.0):
    records = Records(backends, OneWindowPipeline(), GatewaySettings())
    return Reconciler(backends, records, 1.0, grace_seconds, orphan_interval_seconds)


def test_a_stale_pending_record_is_claimed_then_its_vectors_then_its_row_removed(backends):
    backends.catalog.add("a", PENDING)
    backends.search.vectors["a"] = 2
    assert reconciler(backends).run_once() == 1
    assert backends.events == [("catalog.SetAudioStatus", "a", DELETING, PENDING), ("search.DeleteAudio", "a"),
                               ("catalog.DeleteAudio", "a")]
    assert not backends.catalog.records
    assert not backends.search.vectors


def test_an_ingest_that_became_ready_after_the_listing_keeps_its_record_and_vectors(backends):
    backends.catalog.add("a", READY)
    backends.catalog.listed_as["a"] = PENDING
    backends.search.vectors["a"] = 2
    assert reconciler(backends).run_once() == 0
    assert backends.catalog.records["a"].status == READY
    assert backends.search.vectors == {"a": 2}


def test_a_pending_record_younger_than_the_grace_is_left_alone(backends):
    backends.catalog.add("a", PENDING, updated=time.time())
    assert reconciler(backends).run_once() == 0
    assert backends.catalog.records["a"].status == PENDING


def test_a_stale_deleting_record_finishes_its_delete(backends):
    backends.catalog.add("a", DELETING)
    backends.search.vectors["a"] = 1
    assert reconciler(backends).run_once() == 1
    assert not backends.catalog.records
    assert not backends.search.vectors


def test_the_search_service_down_ends_the_pass_and_a_later_pass_finishes(backends):
    backends.catalog.add("a", PENDING)
    backends.search.vectors["a"] = 1
    backends.search.down = True
    repairer = reconciler(backends, grace_seconds=0.0)
    with pytest.raises(grpc.RpcError):
        repairer.run_once()
    assert backends.catalog.records["a"].status == DELETING
    backends.search.down = False
    assert repairer.run_once() == 1
    assert not backends.catalog.records
    assert not backends.search.vectors


def test_vectors_whose_record_is_gone_are_swept(backends):
    backends.catalog.add("kept", READY)
    backends.search.vectors.update({"kept": 2, "gone": 3})
    assert reconciler(backends, orphan_interval_seconds=0.001).run_once() == 1
    assert backends.search.vectors == {"kept": 2}


def ingest(backends, pipeline: OneWindowPipeline | None = None):
    records = Records(backends, pipeline or OneWindowPipeline(), GatewaySettings())
    collection = pb.Collection(name=COLLECTION, model=pb.ModelIdentity(sample_rate_hz=32_000),
                               segment_config=pb.SegmentConfig(window_seconds=2.0, hop_seconds=1.0))
    return records.ingest(collection, pb.IngestAudioHeader(collection=COLLECTION, name="x.wav"), b"bytes")


def test_an_ingest_is_pending_then_has_its_vectors_then_is_ready(backends):
    backends.catalog.FindAudioBySha256 = lambda request: (_ for _ in ()).throw(FakeRpcError(grpc.StatusCode.NOT_FOUND))
    reply = ingest(backends)
    assert reply.audio.status == READY
    assert backends.search.vectors == {"new": 1}


def test_an_ingest_embeds_as_bulk_work(backends):
    backends.catalog.FindAudioBySha256 = lambda request: (_ for _ in ()).throw(FakeRpcError(grpc.StatusCode.NOT_FOUND))
    pipeline = OneWindowPipeline()
    ingest(backends, pipeline)
    assert pipeline.works == [Work.BULK]


def test_an_ingest_whose_record_the_reconciler_purged_removes_its_late_vectors_and_asks_for_a_retry(backends):
    backends.catalog.FindAudioBySha256 = lambda request: (_ for _ in ()).throw(FakeRpcError(grpc.StatusCode.NOT_FOUND))
    backends.search.on_upsert = lambda: backends.catalog.records.pop("new")  # purged while the upsert was slow
    with pytest.raises(Aborted) as failure:
        ingest(backends)
    assert failure.value.reason == "INGEST_IN_PROGRESS"
    assert not backends.search.vectors
    assert not backends.catalog.records


def test_an_ingest_whose_record_the_reconciler_holds_is_not_marked_ready(backends):
    backends.catalog.FindAudioBySha256 = lambda request: (_ for _ in ()).throw(FakeRpcError(grpc.StatusCode.NOT_FOUND))
    backends.search.on_upsert = lambda: setattr(backends.catalog.records["new"], "status", DELETING)
    with pytest.raises(Aborted):
        ingest(backends)
    assert backends.catalog.records["new"].status == DELETING  # the reconciler finishes what it claimed
    backends.catalog.records["new"].update_time.FromSeconds(LONG_AGO)
    reconciler(backends).run_once()
    assert not backends.catalog.records
    assert not backends.search.vectors


def test_a_ready_that_committed_before_its_reply_was_lost_keeps_the_record_and_its_vectors(backends):
    backends.catalog.FindAudioBySha256 = lambda request: (_ for _ in ()).throw(FakeRpcError(grpc.StatusCode.NOT_FOUND))
    set_status = backends.catalog.SetAudioStatus

    def committed_then_lost(request):
        set_status(request)
        raise FakeRpcError(grpc.StatusCode.UNAVAILABLE)

    backends.catalog.SetAudioStatus = committed_then_lost
    with pytest.raises(grpc.RpcError):
        ingest(backends)
    backends.catalog.SetAudioStatus = set_status
    assert backends.catalog.records["new"].status == READY
    assert backends.search.vectors == {"new": 1}
