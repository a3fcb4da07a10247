"""audiosearch.catalog.v1.CatalogService over the store; failures are raised, the interceptor maps them."""

from __future__ import annotations

import grpc

from audiosearch.catalog import convert
from audiosearch.catalog.store import CatalogStore
from audiosearch.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from audiosearch.catalog.validation import invalid

SERVICE_NAME = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name


class CatalogServicer(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, store: CatalogStore) -> None:
        self._store = store

    def CreateCollection(
        self, request: catalog_pb2.CreateCollectionRequest, context: grpc.ServicerContext
    ) -> catalog_pb2.CreateCollectionResponse:
        collection = self._store.create_collection(convert.collection_from_proto(request.collection))
        return catalog_pb2.CreateCollectionResponse(collection=convert.collection_to_proto(collection))

    def GetCollection(
        self, request: catalog_pb2.GetCollectionRequest, context: grpc.ServicerContext
    ) -> catalog_pb2.GetCollectionResponse:
        collection = self._store.get_collection(request.name)
        return catalog_pb2.GetCollectionResponse(collection=convert.collection_to_proto(collection))

    def ListCollections(
        self, request: catalog_pb2.ListCollectionsRequest, context: grpc.ServicerContext
    ) -> catalog_pb2.ListCollectionsResponse:
        page = self._store.list_collections(request.page_size, request.page_token)
        return catalog_pb2.ListCollectionsResponse(
            collections=[convert.collection_to_proto(collection) for collection in page.items],
            next_page_token=page.next_page_token,
        )

    def UpdateCollectionThreshold(
        self, request: catalog_pb2.UpdateCollectionThresholdRequest, context: grpc.ServicerContext
    ) -> catalog_pb2.UpdateCollectionThresholdResponse:
        collection = self._store.update_collection_threshold(
            request.name, request.score_threshold, request.threshold_source, request.landmark_threshold,
            request.landmark_share_threshold,
        )
        return catalog_pb2.UpdateCollectionThresholdResponse(collection=convert.collection_to_proto(collection))

    def DeleteCollection(
        self, request: catalog_pb2.DeleteCollectionRequest, context: grpc.ServicerContext
    ) -> catalog_pb2.DeleteCollectionResponse:
        self._store.delete_collection(request.name)
        return catalog_pb2.DeleteCollectionResponse()

    def CreateAudio(
        self, request: catalog_pb2.CreateAudioRequest, context: grpc.ServicerContext
    ) -> catalog_pb2.CreateAudioResponse:
        result = self._store.create_audio(
            convert.new_audio_from_proto(request.audio), convert.new_segments_from_proto(request.segments))
        return catalog_pb2.CreateAudioResponse(
            audio=convert.audio_to_proto(result.audio),
            segments=[convert.segment_to_proto(segment) for segment in result.segments],
            created=result.created,
        )

    def FindAudioBySha256(
        self, request: catalog_pb2.FindAudioBySha256Request, context: grpc.ServicerContext
    ) -> catalog_pb2.FindAudioBySha256Response:
        audio = self._store.find_audio_by_sha256(request.collection, request.sha256)
        return catalog_pb2.FindAudioBySha256Response(audio=convert.audio_to_proto(audio))

    def SetAudioStatus(
        self, request: catalog_pb2.SetAudioStatusRequest, context: grpc.ServicerContext
    ) -> catalog_pb2.SetAudioStatusResponse:
        status = convert.status_from_proto(request.status)
        if status is None:
            raise invalid("status", "a recording status is required")
        audio = self._store.set_audio_status(
            request.collection, request.audio_id, status, convert.status_from_proto(request.expected_status)
        )
        return catalog_pb2.SetAudioStatusResponse(audio=convert.audio_to_proto(audio))

    def GetAudio(
        self, request: catalog_pb2.GetAudioRequest, context: grpc.ServicerContext
    ) -> catalog_pb2.GetAudioResponse:
        audio = self._store.get_audio(request.collection, request.audio_id)
        return catalog_pb2.GetAudioResponse(audio=convert.audio_to_proto(audio))

    def BatchGetAudio(
        self, request: catalog_pb2.BatchGetAudioRequest, context: grpc.ServicerContext
    ) -> catalog_pb2.BatchGetAudioResponse:
        audios = self._store.batch_get_audio(
            request.collection,
            list(request.audio_ids),
            convert.status_from_proto(request.status),
            convert.filter_from_proto(request.filter),
        )
        return catalog_pb2.BatchGetAudioResponse(audios=[convert.audio_to_proto(audio) for audio in audios])

    def ListAudio(
        self, request: catalog_pb2.ListAudioRequest, context: grpc.ServicerContext
    ) -> catalog_pb2.ListAudioResponse:
        page = self._store.list_audio(
            request.collection,
            request.page_size,
            request.page_token,
            convert.status_from_proto(request.status),
            convert.filter_from_proto(request.filter),
        )
        return catalog_pb2.ListAudioResponse(
            audios=[convert.audio_to_proto(audio) for audio in page.items], next_page_token=page.next_page_token
        )

    def DeleteAudio(
        self, request: catalog_pb2.DeleteAudioRequest, context: grpc.ServicerContext
    ) -> catalog_pb2.DeleteAudioResponse:
        self._store.delete_audio(request.collection, request.audio_id)
        return catalog_pb2.DeleteAudioResponse()

    def GetCollectionStats(
        self, request: catalog_pb2.GetCollectionStatsRequest, context: grpc.ServicerContext
    ) -> catalog_pb2.GetCollectionStatsResponse:
        return convert.stats_to_proto(self._store.collection_stats(request.collection))
