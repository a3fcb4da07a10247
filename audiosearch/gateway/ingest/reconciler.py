"""Repairs what a crash between the steps of an ingest or a delete leaves behind.

A PENDING record older than the grace period never got (all) its vectors acknowledged: it is claimed
(PENDING -> DELETING, so that an ingest still alive cannot mark it READY any more and rolls back instead), then
its vectors are removed and the record with them (the client never got a success, so its retry ingests afresh).
A DELETING record finishes its delete. Now and then a sweep removes vectors whose record no longer exists (an
ingest whose rollback could not reach the search service). All of it is idempotent, so several gateways may
run this at once.
"""

from __future__ import annotations

import logging
import threading
import time

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from audiosearch.catalog.v1 import catalog_pb2 as cpb
from audiosearch.common.tracing import tracer
from audiosearch.gateway import metrics
from audiosearch.gateway.backends.stubs import Backends
from audiosearch.gateway.ingest.writer import Records
from audiosearch.search.v1 import search_pb2 as spb
from audiosearch.v1 import audiosearch_pb2 as pb

log = logging.getLogger(__name__)

_ID_BATCH = 1000  # the most ids one catalog BatchGetAudio or search DeleteAudio takes
# A dependency that is down ends the pass (the next one retries); any other failure skips just that record.
_DOWN = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


class Reconciler:
    def __init__(self, backends: Backends, records: Records, interval_seconds: float, grace_seconds: float,
                 orphan_interval_seconds: float = 600.0) -> None:
        self._backends = backends
        self._records = records
        self._interval_seconds = interval_seconds
        self._grace_seconds = grace_seconds
        self._orphan_interval_seconds = orphan_interval_seconds
        self._next_orphan_sweep = 0.0  # the first pass sweeps
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reconciler", daemon=True)
        self.repaired_total = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def run_once(self) -> int:
        """One pass over every collection; returns how many records it repaired."""
        repaired = 0
        with tracer.start_as_current_span("reconcile"):  # one trace per pass, its catalog/search calls inside
            sweep = time.monotonic() >= self._next_orphan_sweep
            for collection in self._all_collections():
                for status in (pb.AUDIO_STATUS_PENDING, pb.AUDIO_STATUS_DELETING):
                    for audio in self._stale(collection, status):
                        repaired += self._repair(collection, audio.id, status)
                if sweep:
                    repaired += self._sweep_orphans_of(collection)
            if sweep:
                self._next_orphan_sweep = time.monotonic() + self._orphan_interval_seconds
        self.repaired_total += repaired
        return repaired

    def _repair(self, collection: str, audio_id: str, status: pb.AudioStatus) -> int:
        where = {"collection": collection, "audio_id": audio_id, "was": pb.AudioStatus.Name(status)}
        try:
            if status == pb.AUDIO_STATUS_PENDING and not self._claim(collection, audio_id):
                return 0
            self._records.purge(collection, audio_id)
        except grpc.RpcError as error:
            if error.code() in _DOWN:
                raise
            log.warning("reconcile of a record failed", extra={**where, "code": error.code().name})
            return 0
        metrics.RECONCILER_REPAIRS.labels(pb.AudioStatus.Name(status)).inc()
        log.info("reconciled", extra=where)
        return 1

    def _claim(self, collection: str, audio_id: str) -> bool:
        """PENDING -> DELETING; False when the ingest finished meanwhile (READY) or the record is gone."""
        try:
            self._backends.catalog.SetAudioStatus(cpb.SetAudioStatusRequest(
                collection=collection, audio_id=audio_id, status=pb.AUDIO_STATUS_DELETING,
                expected_status=pb.AUDIO_STATUS_PENDING))
        except grpc.RpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                return False
            raise
        return True

    def _sweep_orphans_of(self, collection: str) -> int:
        try:
            return self._sweep_orphans(collection)
        except grpc.RpcError as error:
            if error.code() in _DOWN:
                raise
            log.warning("orphan sweep failed", extra={"collection": collection, "code": error.code().name})
            return 0

    def _sweep_orphans(self, collection: str) -> int:
        """Deletes the vectors of recordings the catalog no longer has. Safe against concurrent ingests: the
        catalog row is created before any vector, so an id with vectors but no row belongs to a purged record."""
        try:
            with_vectors = list(self._backends.search.ListAudioIds(
                spb.ListAudioIdsRequest(collection=collection)).audio_ids)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:  # no vectors stored in this collection yet
                return 0
            raise
        known: set[str] = set()
        for start in range(0, len(with_vectors), _ID_BATCH):
            known.update(audio.id for audio in self._backends.catalog.BatchGetAudio(cpb.BatchGetAudioRequest(
                collection=collection, audio_ids=with_vectors[start:start + _ID_BATCH])).audios)
        # An id listed while its record was being deleted is gone by now: only vectors still there are orphans.
        orphans = [audio_id for audio_id in with_vectors
                   if audio_id not in known and self._vector_count(collection, audio_id)]
        for start in range(0, len(orphans), _ID_BATCH):
            self._backends.search.DeleteAudio(spb.DeleteAudioRequest(
                collection=collection, audio_ids=orphans[start:start + _ID_BATCH]))
        for audio_id in orphans:
            log.info("reconciled", extra={"collection": collection, "audio_id": audio_id, "was": "ORPHAN_VECTORS"})
        metrics.RECONCILER_REPAIRS.labels("ORPHAN_VECTORS").inc(len(orphans))
        return len(orphans)

    def _vector_count(self, collection: str, audio_id: str) -> int:
        return self._backends.search.CountSegments(spb.CountSegmentsRequest(collection=collection,
                                                                            audio_id=audio_id)).count

    def _loop(self) -> None:
        while not self._stopped.wait(self._interval_seconds):
            try:
                self.run_once()
            except grpc.RpcError as error:
                log.warning("reconcile pass failed", extra={"code": error.code().name})
            except Exception:  # the reconciler must outlive any one failed pass
                log.exception("reconcile pass failed")

    def _all_collections(self) -> list[str]:
        names: list[str] = []
        token = ""
        while True:
            page = self._backends.catalog.ListCollections(cpb.ListCollectionsRequest(page_size=1000,
                                                                                     page_token=token))
            names.extend(collection.name for collection in page.collections)
            token = page.next_page_token
            if not token:
                return names

    def _stale(self, collection: str, status: pb.AudioStatus) -> list[pb.AudioRecord]:
        cutoff = time.time() - self._grace_seconds
        stale: list[pb.AudioRecord] = []
        token = ""
        while True:
            page = self._backends.catalog.ListAudio(cpb.ListAudioRequest(
                collection=collection, page_size=1000, page_token=token, status=status))
            stale.extend(audio for audio in page.audios if _seconds(audio.update_time) <= cutoff)
            token = page.next_page_token
            if not token:
                return stale


def _seconds(timestamp: Timestamp) -> float:
    return timestamp.seconds + timestamp.nanos / 1e9
