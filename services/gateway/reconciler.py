"""Repairs what a crash between the steps of an ingest or a delete leaves behind.

A PENDING record older than the grace period never got (all) its vectors acknowledged: its vectors are
removed and the record with them (the client never got a success, so its retry ingests afresh). A DELETING
record finishes its delete. Both operations are idempotent, so several gateways may run this at once.
"""

from __future__ import annotations

import logging
import threading
import time

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from audiosearch.catalog.v1 import catalog_pb2 as cpb
from audiosearch.v1 import audiosearch_pb2 as pb
from services.gateway.backends import Backends
from services.gateway.records import Records

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(self, backends: Backends, records: Records, interval_seconds: float, grace_seconds: float
                 ) -> None:
        self._backends = backends
        self._records = records
        self._interval_seconds = interval_seconds
        self._grace_seconds = grace_seconds
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
        for collection in self._all_collections():
            for status in (pb.AUDIO_STATUS_PENDING, pb.AUDIO_STATUS_DELETING):
                for audio in self._stale(collection, status):
                    self._records.purge(collection, audio.id)
                    repaired += 1
                    log.info("reconciled", extra={"collection": collection, "audio_id": audio.id,
                                                  "was": pb.AudioStatus.Name(status)})
        self.repaired_total += repaired
        return repaired

    def _loop(self) -> None:
        while not self._stopped.wait(self._interval_seconds):
            try:
                self.run_once()
            except grpc.RpcError as error:
                log.warning("reconcile pass failed", extra={"code": error.code().name})

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
