"""The write path of recordings, keeping the rule: a READY record always has its vectors, and search only
ever returns READY records.

Ingest: catalog PENDING (with segments) -> original blob written (when blobs are on) -> vectors and landmarks
upserted -> READY. Delete: DELETING -> vectors and landmarks deleted -> blob deleted -> row deleted. A failure in
between is rolled back on the spot; a crash is repaired by the reconciler. So with blobs on, a READY record always
has its blob too.
"""

from __future__ import annotations

import hashlib
import logging

import grpc
import numpy as np

from audiosearch.catalog.v1 import catalog_pb2 as cpb
from audiosearch.common.errors import Aborted, NotFound
from audiosearch.gateway.audio.fingerprints import NO_LANDMARKS, Landmarks, extract_landmarks, landmarks_message
from audiosearch.gateway.audio.pipeline import AudioPipeline, EmbeddedAudio
from audiosearch.gateway.audio.segments import stored_segments
from audiosearch.gateway.backends.admission import Work
from audiosearch.gateway.backends.blobs import BlobStore, blob_key
from audiosearch.gateway.backends.stubs import Backends
from audiosearch.gateway.settings import GatewaySettings
from audiosearch.gateway.stages import stage
from audiosearch.search.v1 import search_pb2 as spb
from audiosearch.v1 import audiosearch_pb2 as pb

log = logging.getLogger(__name__)

READY = pb.AUDIO_STATUS_READY
PENDING = pb.AUDIO_STATUS_PENDING
DELETING = pb.AUDIO_STATUS_DELETING


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def audio_labels(audio: pb.AudioRecord) -> spb.AudioLabels:
    """What a filtered search can ask of a recording, stored with its rows in the search service."""
    return spb.AudioLabels(tags=[tag.label for tag in audio.tags], metadata=audio.metadata)


class Records:
    def __init__(self, backends: Backends, pipeline: AudioPipeline, settings: GatewaySettings,
                 blobs: BlobStore | None = None) -> None:
        self._backends = backends
        self.blobs = blobs
        self._pipeline = pipeline
        self._settings = settings

    def ingest(
        self, collection: pb.Collection, header: pb.IngestAudioHeader, data: bytes
    ) -> pb.IngestAudioResponse:
        with stage("ingest", "dedupe"):
            digest = sha256_hex(data)
            existing = self._find_by_sha256(collection.name, digest)
        if existing is not None:
            return self._existing_response(existing)
        with stage("ingest", "decode"):
            decoded = self._pipeline.decode(data, collection.model.sample_rate_hz)
        with stage("ingest", "embed"):
            embedded = self._pipeline.embed(decoded, collection.segment_config, stored_segments, Work.BULK)
        with stage("ingest", "landmarks"):
            landmarks = (extract_landmarks(decoded.samples, decoded.sample_rate_hz) if collection.landmark_threshold
                         else NO_LANDMARKS)
        with stage("ingest", "catalog"):
            created = self._backends.catalog.CreateAudio(
                self._create_request(collection, header, data, digest, embedded))
        if not created.created:
            return self._existing_response(created.audio)
        try:
            if self.blobs is not None:
                with stage("ingest", "blob"):
                    self.blobs.put(blob_key(collection.name, created.audio.id), data)
            with stage("ingest", "vectors"):
                self._store_vectors(collection.name, created, embedded.embeddings.vectors)
            if len(landmarks):
                with stage("ingest", "landmark_index"):
                    self._store_landmarks(collection.name, created.audio, landmarks)
            with stage("ingest", "ready"):
                ready = self._mark_ready(collection.name, created.audio.id)
        except Exception:
            self._roll_back(collection.name, created.audio.id)
            raise
        return pb.IngestAudioResponse(audio=ready, already_existed=False)

    def delete(self, collection: str, audio_id: str) -> None:
        """Idempotent: deleting what is not there succeeds."""
        try:
            self._backends.catalog.SetAudioStatus(
                cpb.SetAudioStatusRequest(collection=collection, audio_id=audio_id, status=DELETING))
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return
            raise
        self.purge(collection, audio_id)

    def purge(self, collection: str, audio_id: str) -> None:
        """Removes vectors, landmarks and blob first, then the row: a crash in between leaves a row to retry, never an
        orphan."""
        self._backends.search.DeleteAudio(spb.DeleteAudioRequest(collection=collection, audio_ids=[audio_id]))
        if self.blobs is not None:
            self.blobs.delete(blob_key(collection, audio_id))
        self._backends.catalog.DeleteAudio(cpb.DeleteAudioRequest(collection=collection, audio_id=audio_id))

    def get_ready(self, collection: str, audio_id: str) -> pb.AudioRecord:
        audio = self._backends.catalog.GetAudio(cpb.GetAudioRequest(collection=collection, audio_id=audio_id)).audio
        if audio.status != READY:
            raise NotFound(f"audio {audio_id} is not in collection {collection!r}", reason="AUDIO_NOT_FOUND",
                           audio_id=audio_id, collection=collection)
        return audio

    def _find_by_sha256(self, collection: str, digest: str) -> pb.AudioRecord | None:
        try:
            return self._backends.catalog.FindAudioBySha256(
                cpb.FindAudioBySha256Request(collection=collection, sha256=digest)).audio
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    @staticmethod
    def _existing_response(existing: pb.AudioRecord) -> pb.IngestAudioResponse:
        if existing.status != READY:
            raise Aborted(
                f"the same content is being ingested or deleted (audio {existing.id}, "
                f"{pb.AudioStatus.Name(existing.status)}); retry shortly",
                reason="INGEST_IN_PROGRESS", audio_id=existing.id,
            )
        return pb.IngestAudioResponse(audio=existing, already_existed=True)

    def _create_request(
        self, collection: pb.Collection, header: pb.IngestAudioHeader, data: bytes, digest: str,
        embedded: EmbeddedAudio,
    ) -> cpb.CreateAudioRequest:
        settings = self._settings
        decoded = embedded.audio
        audio = pb.AudioRecord(
            collection=collection.name, name=header.name, sha256=digest,
            duration_seconds=decoded.duration_seconds, sample_rate_hz=decoded.original_sample_rate_hz,
            channels=decoded.channels, codec=decoded.codec, size_bytes=len(data), metadata=header.metadata,
            tags=embedded.clip_tags(settings.tags_per_recording, settings.tag_floor),
            segment_count=len(embedded.segments),
        )
        segments = [
            cpb.Segment(
                index=index,
                range=pb.TimeRange(start_seconds=float(embedded.segments.starts_seconds[index]),
                                   end_seconds=float(min(embedded.segments.ends_seconds[index],
                                                         decoded.duration_seconds))),
                tags=embedded.segment_tags(index, 3, settings.tag_floor),
            )
            for index in range(len(embedded.segments))
        ]
        return cpb.CreateAudioRequest(audio=audio, segments=segments)

    def _store_vectors(self, collection: str, created: cpb.CreateAudioResponse, vectors: np.ndarray) -> None:
        little_endian = vectors.astype("<f4", copy=False)
        labels = audio_labels(created.audio)
        self._backends.search.UpsertSegments(spb.UpsertSegmentsRequest(collection=collection, segments=[
            spb.SegmentVector(
                segment_id=segment.segment_id, audio_id=created.audio.id,
                start_seconds=segment.range.start_seconds, end_seconds=segment.range.end_seconds,
                vector=little_endian[segment.index].tobytes(), labels=labels,
            )
            for segment in created.segments
        ]))

    def _store_landmarks(self, collection: str, audio: pb.AudioRecord, landmarks: Landmarks) -> None:
        self._backends.search.UpsertLandmarks(spb.UpsertLandmarksRequest(
            collection=collection, audio_id=audio.id, duration_ms=max(1, round(audio.duration_seconds * 1000)),
            landmarks=landmarks_message(landmarks), labels=audio_labels(audio)))

    def _mark_ready(self, collection: str, audio_id: str) -> pb.AudioRecord:
        """PENDING -> READY. Fails when the reconciler took the record meanwhile (it purges PENDING records older
        than its grace: NOT_FOUND, or STATUS_CONFLICT while it holds the record as DELETING); the ingest then
        rolls back, so a slow ingest never leaves a READY record without its vectors."""
        try:
            return self._backends.catalog.SetAudioStatus(cpb.SetAudioStatusRequest(
                collection=collection, audio_id=audio_id, status=READY, expected_status=PENDING)).audio
        except grpc.RpcError as error:
            if error.code() not in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND):
                raise
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION and (ready := self._if_ready(collection, audio_id)):
                return ready  # an attempt whose reply was lost did commit (transparent retries)
            raise Aborted("the ingest outlasted the reconciler's grace period and was undone; retry it",
                          reason="INGEST_IN_PROGRESS", audio_id=audio_id) from error

    def _if_ready(self, collection: str, audio_id: str) -> pb.AudioRecord | None:
        try:
            audio = self._backends.catalog.GetAudio(cpb.GetAudioRequest(collection=collection, audio_id=audio_id)).audio
        except grpc.RpcError:
            return None
        return audio if audio.status == READY else None

    def _roll_back(self, collection: str, audio_id: str) -> None:
        """Undoes a failed ingest, best effort; what it cannot do now, the reconciler finishes.

        The record is claimed first (PENDING -> DELETING), so that a record whose READY did commit keeps its
        vectors. When the record is gone (the reconciler purged it while this ingest was slow), the vectors and
        blob written after that purge are removed."""
        where = {"collection": collection, "audio_id": audio_id}
        try:
            self._backends.catalog.SetAudioStatus(cpb.SetAudioStatusRequest(
                collection=collection, audio_id=audio_id, status=DELETING, expected_status=PENDING))
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:
                log.warning("rollback left to the reconciler", extra={**where, "code": error.code().name})
                return
            try:
                self._backends.search.DeleteAudio(spb.DeleteAudioRequest(collection=collection, audio_ids=[audio_id]))
                if self.blobs is not None:
                    self.blobs.delete(blob_key(collection, audio_id))
            except Exception:  # noqa: BLE001 - best effort: the reconciler sweeps orphan vectors (not blobs)
                log.warning("rollback left orphans to the reconciler", extra=where)
            return
        try:
            self.purge(collection, audio_id)
        except Exception:  # noqa: BLE001 - best effort (RPC, file or S3 failure): the reconciler finishes it
            log.warning("rollback incomplete; the reconciler will finish it", extra=where)
