"""audiosearch.search.v1.VectorSearchService over the vector store and the landmark index; failures raise, the
interceptor maps them."""

from __future__ import annotations

import grpc

from audiosearch.search import validation
from audiosearch.search.landmark_index import LandmarkIndex
from audiosearch.search.landmark_vote import LandmarkVote
from audiosearch.search.store import Hit, MilvusStore, Segment
from audiosearch.search.v1 import search_pb2, search_pb2_grpc

SERVICE_NAME = search_pb2.DESCRIPTOR.services_by_name["VectorSearchService"].full_name


class VectorSearchServicer(search_pb2_grpc.VectorSearchServiceServicer):
    def __init__(self, store: MilvusStore, landmarks: LandmarkIndex) -> None:
        self._store = store
        self._landmarks = landmarks

    def EnsureCollection(
        self, request: search_pb2.EnsureCollectionRequest, context: grpc.ServicerContext
    ) -> search_pb2.EnsureCollectionResponse:
        validation.check_collection_name(request.collection)
        validation.check_dimension(request.dimension)
        created = self._store.ensure_collection(request.collection, request.dimension)
        return search_pb2.EnsureCollectionResponse(created=created)

    def DropCollection(
        self, request: search_pb2.DropCollectionRequest, context: grpc.ServicerContext
    ) -> search_pb2.DropCollectionResponse:
        validation.check_collection_name(request.collection)
        self._landmarks.drop(request.collection)
        self._store.drop_collection(request.collection)
        return search_pb2.DropCollectionResponse()

    def UpsertSegments(
        self, request: search_pb2.UpsertSegmentsRequest, context: grpc.ServicerContext
    ) -> search_pb2.UpsertSegmentsResponse:
        validation.check_collection_name(request.collection)
        dimension = self._store.dimension(request.collection)
        segments = [_segment_from_proto(item, dimension, i) for i, item in enumerate(request.segments)]
        written = self._store.upsert(request.collection, segments)
        return search_pb2.UpsertSegmentsResponse(upserted_count=written)

    def SearchSegments(
        self, request: search_pb2.SearchSegmentsRequest, context: grpc.ServicerContext
    ) -> search_pb2.SearchSegmentsResponse:
        validation.check_collection_name(request.collection)
        validation.check_top_k(request.top_k)
        validation.check_audio_ids(request.audio_ids)
        if len(request.vectors) > validation.MAX_QUERY_VECTORS:
            raise validation.invalid("vectors", f"at most {validation.MAX_QUERY_VECTORS} query vectors")
        dimension = self._store.dimension(request.collection)
        queries = validation.decode_vectors(request.vectors, dimension, "vectors")
        labels = validation.label_filter(request.filter)
        results = self._store.search(request.collection, queries, request.top_k, list(request.audio_ids), labels)
        return search_pb2.SearchSegmentsResponse(
            results=[search_pb2.QueryHits(hits=[_hit_to_proto(hit) for hit in hits]) for hits in results]
        )

    def DeleteAudio(
        self, request: search_pb2.DeleteAudioRequest, context: grpc.ServicerContext
    ) -> search_pb2.DeleteAudioResponse:
        validation.check_collection_name(request.collection)
        validation.check_audio_ids(request.audio_ids)
        self._landmarks.delete_audio(request.collection, list(request.audio_ids))
        self._store.delete_audio(request.collection, list(request.audio_ids))
        return search_pb2.DeleteAudioResponse()

    def CountSegments(
        self, request: search_pb2.CountSegmentsRequest, context: grpc.ServicerContext
    ) -> search_pb2.CountSegmentsResponse:
        validation.check_collection_name(request.collection)
        if request.audio_id:
            validation.check_audio_id(request.audio_id)
        return search_pb2.CountSegmentsResponse(count=self._store.count(request.collection, request.audio_id))

    def GetSegmentVectors(
        self, request: search_pb2.GetSegmentVectorsRequest, context: grpc.ServicerContext
    ) -> search_pb2.GetSegmentVectorsResponse:
        validation.check_collection_name(request.collection)
        validation.check_audio_ids(request.audio_ids)
        segments = self._store.segments_of(request.collection, list(request.audio_ids))
        return search_pb2.GetSegmentVectorsResponse(segments=[_segment_to_proto(item) for item in segments])

    def ListAudioIds(
        self, request: search_pb2.ListAudioIdsRequest, context: grpc.ServicerContext
    ) -> search_pb2.ListAudioIdsResponse:
        validation.check_collection_name(request.collection)
        audio_ids = {*self._store.list_audio_ids(request.collection),
                     *self._landmarks.list_audio_ids(request.collection)}
        return search_pb2.ListAudioIdsResponse(audio_ids=sorted(audio_ids))

    def UpsertLandmarks(
        self, request: search_pb2.UpsertLandmarksRequest, context: grpc.ServicerContext
    ) -> search_pb2.UpsertLandmarksResponse:
        validation.check_collection_name(request.collection)
        validation.check_audio_id(request.audio_id)
        validation.check_duration_ms(request.duration_ms)
        hashes, times_ms = validation.decode_landmarks(request.landmarks.hashes, request.landmarks.times_ms)
        labels = validation.label_tokens(request.labels)
        self._store.dimension(request.collection)  # NOT_FOUND for a collection that does not exist
        windows = self._landmarks.upsert(request.collection, request.audio_id, request.duration_ms, hashes, times_ms,
                                         labels)
        return search_pb2.UpsertLandmarksResponse(windows=windows)

    def MatchLandmarks(
        self, request: search_pb2.MatchLandmarksRequest, context: grpc.ServicerContext
    ) -> search_pb2.MatchLandmarksResponse:
        validation.check_collection_name(request.collection)
        top_k = validation.landmark_matches(request.top_k)
        validation.check_audio_ids(request.audio_ids)
        if request.excluded_audio_id:
            validation.check_audio_id(request.excluded_audio_id, "excluded_audio_id")
        hashes, times_ms = validation.decode_landmarks(request.landmarks.hashes, request.landmarks.times_ms)
        labels = validation.label_filter(request.filter)
        self._store.dimension(request.collection)
        votes = self._landmarks.match(request.collection, hashes, times_ms, top_k, request.excluded_audio_id,
                                      list(request.audio_ids), labels)
        return search_pb2.MatchLandmarksResponse(matches=[_vote_to_proto(vote) for vote in votes])

    def GetLandmarks(
        self, request: search_pb2.GetLandmarksRequest, context: grpc.ServicerContext
    ) -> search_pb2.GetLandmarksResponse:
        validation.check_collection_name(request.collection)
        validation.check_audio_id(request.audio_id)
        if request.before_ms < 0:
            raise validation.invalid("before_ms", "must not be negative")
        self._store.dimension(request.collection)
        hashes, times_ms = self._landmarks.landmarks_of(request.collection, request.audio_id, request.before_ms)
        return search_pb2.GetLandmarksResponse(landmarks=search_pb2.Landmarks(hashes=hashes.tolist(),
                                                                              times_ms=times_ms.tolist()))


def _vote_to_proto(vote: LandmarkVote) -> search_pb2.LandmarkMatch:
    return search_pb2.LandmarkMatch(
        audio_id=vote.audio_id, landmarks=vote.landmarks, offset_ms=vote.offset_ms,
        query_start_ms=vote.query_start_ms, query_end_ms=vote.query_end_ms,
        overlap_landmarks=vote.overlap_landmarks, recording_overlap_landmarks=vote.recording_overlap_landmarks,
    )


def _segment_from_proto(segment: search_pb2.SegmentVector, dimension: int, index: int) -> Segment:
    field = f"segments[{index}]"
    validation.check_audio_id(segment.audio_id, f"{field}.audio_id")
    validation.check_segment_times(segment.start_seconds, segment.end_seconds, f"{field}.start_seconds")
    vector = validation.decode_vector(segment.vector, dimension, f"{field}.vector")
    labels = validation.label_tokens(segment.labels, f"{field}.labels")
    return Segment(segment.segment_id, segment.audio_id, segment.start_seconds, segment.end_seconds, vector, labels)


def _segment_to_proto(segment: Segment) -> search_pb2.SegmentVector:
    return search_pb2.SegmentVector(
        segment_id=segment.segment_id, audio_id=segment.audio_id, start_seconds=segment.start_s,
        end_seconds=segment.end_s, vector=segment.vector.astype("<f4").tobytes(),
    )


def _hit_to_proto(hit: Hit) -> search_pb2.SegmentHit:
    return search_pb2.SegmentHit(
        segment_id=hit.segment_id, audio_id=hit.audio_id, start_seconds=hit.start_s, end_seconds=hit.end_s,
        score=hit.score,
    )
