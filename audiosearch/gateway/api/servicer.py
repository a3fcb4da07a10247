"""The public API: each RPC validates its request and hands it to the flow that owns it."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc

from audiosearch.catalog.v1 import catalog_pb2 as cpb
from audiosearch.common.errors import InvalidArgument, NotFound, ResourceExhausted
from audiosearch.gateway import metrics, stages, validation
from audiosearch.gateway.backends.blobs import CHUNK_BYTES, BlobNotFoundError, blob_key, media_type
from audiosearch.gateway.backends.stubs import Backends
from audiosearch.gateway.collections import Collections
from audiosearch.gateway.ingest.bulk import BulkImporter
from audiosearch.gateway.ingest.uploads import read_upload, within_idle_limit
from audiosearch.gateway.ingest.writer import Records
from audiosearch.gateway.query.calibration import Calibrator
from audiosearch.gateway.query.monitor import Monitors
from audiosearch.gateway.query.search import Query
from audiosearch.gateway.settings import GatewaySettings
from audiosearch.v1 import audiosearch_pb2 as pb
from audiosearch.v1 import audiosearch_pb2_grpc

READY = pb.AUDIO_STATUS_READY


class AudioSearchServicer(audiosearch_pb2_grpc.AudioSearchServiceServicer):
    def __init__(
        self, settings: GatewaySettings, backends: Backends, collections: Collections, records: Records,
        query: Query, calibrator: Calibrator, monitors: Monitors, bulk: BulkImporter | None = None,
    ) -> None:
        self._settings = settings
        self._backends = backends
        self._collections = collections
        self._records = records
        self._query = query
        self._calibrator = calibrator
        self._bulk = bulk or BulkImporter(settings, collections, records)
        self._monitors = monitors
        self._ingest_slots = threading.BoundedSemaphore(settings.max_concurrent_ingests)
        metrics.INGEST_SLOTS.set(settings.max_concurrent_ingests)

    def CreateCollection(self, request: pb.CreateCollectionRequest, context: grpc.ServicerContext
                         ) -> pb.CreateCollectionResponse:
        return pb.CreateCollectionResponse(collection=self._collections.create(request))

    def GetCollection(self, request: pb.GetCollectionRequest, context: grpc.ServicerContext
                      ) -> pb.GetCollectionResponse:
        return pb.GetCollectionResponse(collection=self._collections.get(request.name))

    def ListCollections(self, request: pb.ListCollectionsRequest, context: grpc.ServicerContext
                        ) -> pb.ListCollectionsResponse:
        page = self._backends.catalog.ListCollections(cpb.ListCollectionsRequest(
            page_size=validation.page_size(request.page_size), page_token=request.page_token))
        return pb.ListCollectionsResponse(collections=page.collections, next_page_token=page.next_page_token)

    def DeleteCollection(self, request: pb.DeleteCollectionRequest, context: grpc.ServicerContext
                         ) -> pb.DeleteCollectionResponse:
        self._collections.delete(request.name)
        return pb.DeleteCollectionResponse()

    def IngestAudio(self, request_iterator: Iterator[pb.IngestAudioRequest], context: grpc.ServicerContext
                    ) -> pb.IngestAudioResponse:
        if not self._ingest_slots.acquire(blocking=False):
            metrics.INGESTS.labels("rejected").inc()
            raise ResourceExhausted(
                f"{self._settings.max_concurrent_ingests} ingests are running; retry shortly", reason="OVERLOADED")
        try:
            with metrics.INGESTS_IN_PROGRESS.track_inprogress():
                header, data = read_upload(within_idle_limit(request_iterator, self._settings.upload_idle_seconds),
                                           self._settings.max_upload_bytes)
                collection = self._collections.get_for_model(header.collection)
                response = self._records.ingest(collection, header, data)
        except Exception:
            metrics.INGESTS.labels("failed").inc()
            raise
        finally:
            self._ingest_slots.release()
        metrics.INGESTS.labels("already_existed" if response.already_existed else "created").inc()
        if not response.already_existed:
            metrics.INGEST_AUDIO_SECONDS.inc(response.audio.duration_seconds)
        return response

    def SearchAudio(self, request: pb.SearchAudioRequest, context: grpc.ServicerContext) -> pb.SearchAudioResponse:
        collection = self._collections.get_for_model(request.collection)
        with stages.collect() as timings:
            response = self._query.search(collection, request)
        context.set_trailing_metadata(stages.as_metadata(timings))  # x-embed-ms, x-search-ms, ...
        return response

    def TagAudio(self, request: pb.TagAudioRequest, context: grpc.ServicerContext) -> pb.TagAudioResponse:
        top_k = validation.top_k(request.top_k, default=5, maximum=527)
        model = self._collections.serving_model()
        segment_config = pb.SegmentConfig(window_seconds=self._settings.default_window_seconds,
                                          hop_seconds=self._settings.default_hop_seconds)
        return self._query.tag(request.audio_content, model, segment_config, top_k)

    def GetAudio(self, request: pb.GetAudioRequest, context: grpc.ServicerContext) -> pb.GetAudioResponse:
        validation.collection_name(request.collection)
        return pb.GetAudioResponse(audio=self._records.get_ready(request.collection,
                                                                 validation.audio_id(request.audio_id)))

    def ListAudio(self, request: pb.ListAudioRequest, context: grpc.ServicerContext) -> pb.ListAudioResponse:
        self._collections.get(request.collection)
        page = self._backends.catalog.ListAudio(cpb.ListAudioRequest(
            collection=request.collection, page_size=validation.page_size(request.page_size),
            page_token=request.page_token, status=READY, filter=validation.audio_filter(request.filter)))
        return pb.ListAudioResponse(audios=page.audios, next_page_token=page.next_page_token)

    def DeleteAudio(self, request: pb.DeleteAudioRequest, context: grpc.ServicerContext) -> pb.DeleteAudioResponse:
        self._collections.get(request.collection)
        self._records.delete(request.collection, validation.audio_id(request.audio_id))
        return pb.DeleteAudioResponse()

    def GetCollectionStats(self, request: pb.GetCollectionStatsRequest, context: grpc.ServicerContext
                           ) -> pb.GetCollectionStatsResponse:
        validation.collection_name(request.collection)
        stats = self._backends.catalog.GetCollectionStats(
            cpb.GetCollectionStatsRequest(collection=request.collection))
        return pb.GetCollectionStatsResponse(
            audio_count=stats.audio_count, total_duration_seconds=stats.total_duration_seconds,
            segment_count=stats.segment_count, tags=stats.tags)

    def CalibrateCollection(self, request: pb.CalibrateCollectionRequest, context: grpc.ServicerContext
                            ) -> pb.CalibrateCollectionResponse:
        collection = self._collections.get_for_model(request.collection)
        target = request.target_false_positive_rate or 0.01
        if not 0.0 < target < 1.0:
            raise InvalidArgument(f"target_false_positive_rate {target} is outside (0, 1)",
                                  field="target_false_positive_rate")
        return self._calibrator.calibrate(collection, target)

    def GetAudioContent(self, request: pb.GetAudioContentRequest, context: grpc.ServicerContext
                        ) -> Iterator[pb.GetAudioContentResponse]:
        validation.collection_name(request.collection)
        audio = self._records.get_ready(request.collection, validation.audio_id(request.audio_id))
        blobs = self._records.blobs
        missing = NotFound(f"the original of audio {audio.id} is not kept (blob store off or blob missing)",
                           reason="CONTENT_NOT_FOUND", audio_id=audio.id, collection=request.collection)
        if blobs is None:
            raise missing
        key = blob_key(request.collection, audio.id)
        try:
            size = blobs.size(key)
            first = True
            for chunk in blobs.chunks(key, CHUNK_BYTES):
                if first:
                    yield pb.GetAudioContentResponse(chunk=chunk, content_type=media_type(audio.codec),
                                                     size_bytes=size)
                    first = False
                else:
                    yield pb.GetAudioContentResponse(chunk=chunk)
        except BlobNotFoundError:
            raise missing from None

    def ImportAudio(self, request_iterator: Iterator[pb.ImportAudioRequest], context: grpc.ServicerContext
                    ) -> Iterator[pb.ImportAudioResponse]:
        return self._bulk.import_stream(request_iterator, context)

    def ImportDirectory(self, request: pb.ImportDirectoryRequest, context: grpc.ServicerContext
                        ) -> Iterator[pb.ImportDirectoryResponse]:
        return self._bulk.import_directory(request, context)

    def MonitorAudio(self, request_iterator: Iterator[pb.MonitorAudioRequest], context: grpc.ServicerContext
                     ) -> Iterator[pb.MonitorAudioResponse]:
        return self._monitors.monitor(request_iterator, context)
