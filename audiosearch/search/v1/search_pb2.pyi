from audiosearch.v1 import audiosearch_pb2 as _audiosearch_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Landmarks(_message.Message):
    __slots__ = ("hashes", "times_ms")
    HASHES_FIELD_NUMBER: _ClassVar[int]
    TIMES_MS_FIELD_NUMBER: _ClassVar[int]
    hashes: _containers.RepeatedScalarFieldContainer[int]
    times_ms: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, hashes: _Optional[_Iterable[int]] = ..., times_ms: _Optional[_Iterable[int]] = ...) -> None: ...

class AudioLabels(_message.Message):
    __slots__ = ("tags", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TAGS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    tags: _containers.RepeatedScalarFieldContainer[str]
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, tags: _Optional[_Iterable[str]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SegmentVector(_message.Message):
    __slots__ = ("segment_id", "audio_id", "start_seconds", "end_seconds", "vector", "labels")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    AUDIO_ID_FIELD_NUMBER: _ClassVar[int]
    START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    END_SECONDS_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    segment_id: int
    audio_id: str
    start_seconds: float
    end_seconds: float
    vector: bytes
    labels: AudioLabels
    def __init__(self, segment_id: _Optional[int] = ..., audio_id: _Optional[str] = ..., start_seconds: _Optional[float] = ..., end_seconds: _Optional[float] = ..., vector: _Optional[bytes] = ..., labels: _Optional[_Union[AudioLabels, _Mapping]] = ...) -> None: ...

class SegmentHit(_message.Message):
    __slots__ = ("segment_id", "audio_id", "start_seconds", "end_seconds", "score")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    AUDIO_ID_FIELD_NUMBER: _ClassVar[int]
    START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    END_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    segment_id: int
    audio_id: str
    start_seconds: float
    end_seconds: float
    score: float
    def __init__(self, segment_id: _Optional[int] = ..., audio_id: _Optional[str] = ..., start_seconds: _Optional[float] = ..., end_seconds: _Optional[float] = ..., score: _Optional[float] = ...) -> None: ...

class QueryHits(_message.Message):
    __slots__ = ("hits",)
    HITS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[SegmentHit]
    def __init__(self, hits: _Optional[_Iterable[_Union[SegmentHit, _Mapping]]] = ...) -> None: ...

class EnsureCollectionRequest(_message.Message):
    __slots__ = ("collection", "dimension")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    dimension: int
    def __init__(self, collection: _Optional[str] = ..., dimension: _Optional[int] = ...) -> None: ...

class EnsureCollectionResponse(_message.Message):
    __slots__ = ("created",)
    CREATED_FIELD_NUMBER: _ClassVar[int]
    created: bool
    def __init__(self, created: _Optional[bool] = ...) -> None: ...

class DropCollectionRequest(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    def __init__(self, collection: _Optional[str] = ...) -> None: ...

class DropCollectionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UpsertSegmentsRequest(_message.Message):
    __slots__ = ("collection", "segments")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    segments: _containers.RepeatedCompositeFieldContainer[SegmentVector]
    def __init__(self, collection: _Optional[str] = ..., segments: _Optional[_Iterable[_Union[SegmentVector, _Mapping]]] = ...) -> None: ...

class UpsertSegmentsResponse(_message.Message):
    __slots__ = ("upserted_count",)
    UPSERTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    upserted_count: int
    def __init__(self, upserted_count: _Optional[int] = ...) -> None: ...

class SearchSegmentsRequest(_message.Message):
    __slots__ = ("collection", "vectors", "top_k", "audio_ids", "filter")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    AUDIO_IDS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    collection: str
    vectors: _containers.RepeatedScalarFieldContainer[bytes]
    top_k: int
    audio_ids: _containers.RepeatedScalarFieldContainer[str]
    filter: _audiosearch_pb2.AudioFilter
    def __init__(self, collection: _Optional[str] = ..., vectors: _Optional[_Iterable[bytes]] = ..., top_k: _Optional[int] = ..., audio_ids: _Optional[_Iterable[str]] = ..., filter: _Optional[_Union[_audiosearch_pb2.AudioFilter, _Mapping]] = ...) -> None: ...

class SearchSegmentsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[QueryHits]
    def __init__(self, results: _Optional[_Iterable[_Union[QueryHits, _Mapping]]] = ...) -> None: ...

class DeleteAudioRequest(_message.Message):
    __slots__ = ("collection", "audio_ids")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    AUDIO_IDS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    audio_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, collection: _Optional[str] = ..., audio_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteAudioResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CountSegmentsRequest(_message.Message):
    __slots__ = ("collection", "audio_id")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    AUDIO_ID_FIELD_NUMBER: _ClassVar[int]
    collection: str
    audio_id: str
    def __init__(self, collection: _Optional[str] = ..., audio_id: _Optional[str] = ...) -> None: ...

class CountSegmentsResponse(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class ListAudioIdsRequest(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    def __init__(self, collection: _Optional[str] = ...) -> None: ...

class ListAudioIdsResponse(_message.Message):
    __slots__ = ("audio_ids",)
    AUDIO_IDS_FIELD_NUMBER: _ClassVar[int]
    audio_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, audio_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetSegmentVectorsRequest(_message.Message):
    __slots__ = ("collection", "audio_ids")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    AUDIO_IDS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    audio_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, collection: _Optional[str] = ..., audio_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetSegmentVectorsResponse(_message.Message):
    __slots__ = ("segments",)
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    segments: _containers.RepeatedCompositeFieldContainer[SegmentVector]
    def __init__(self, segments: _Optional[_Iterable[_Union[SegmentVector, _Mapping]]] = ...) -> None: ...

class UpsertLandmarksRequest(_message.Message):
    __slots__ = ("collection", "audio_id", "duration_ms", "landmarks", "labels")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    AUDIO_ID_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    audio_id: str
    duration_ms: int
    landmarks: Landmarks
    labels: AudioLabels
    def __init__(self, collection: _Optional[str] = ..., audio_id: _Optional[str] = ..., duration_ms: _Optional[int] = ..., landmarks: _Optional[_Union[Landmarks, _Mapping]] = ..., labels: _Optional[_Union[AudioLabels, _Mapping]] = ...) -> None: ...

class UpsertLandmarksResponse(_message.Message):
    __slots__ = ("windows",)
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    windows: int
    def __init__(self, windows: _Optional[int] = ...) -> None: ...

class MatchLandmarksRequest(_message.Message):
    __slots__ = ("collection", "landmarks", "top_k", "excluded_audio_id", "audio_ids", "filter")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_AUDIO_ID_FIELD_NUMBER: _ClassVar[int]
    AUDIO_IDS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    collection: str
    landmarks: Landmarks
    top_k: int
    excluded_audio_id: str
    audio_ids: _containers.RepeatedScalarFieldContainer[str]
    filter: _audiosearch_pb2.AudioFilter
    def __init__(self, collection: _Optional[str] = ..., landmarks: _Optional[_Union[Landmarks, _Mapping]] = ..., top_k: _Optional[int] = ..., excluded_audio_id: _Optional[str] = ..., audio_ids: _Optional[_Iterable[str]] = ..., filter: _Optional[_Union[_audiosearch_pb2.AudioFilter, _Mapping]] = ...) -> None: ...

class LandmarkMatch(_message.Message):
    __slots__ = ("audio_id", "landmarks", "offset_ms", "query_start_ms", "query_end_ms", "overlap_landmarks", "recording_overlap_landmarks")
    AUDIO_ID_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    OFFSET_MS_FIELD_NUMBER: _ClassVar[int]
    QUERY_START_MS_FIELD_NUMBER: _ClassVar[int]
    QUERY_END_MS_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    RECORDING_OVERLAP_LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    audio_id: str
    landmarks: int
    offset_ms: int
    query_start_ms: int
    query_end_ms: int
    overlap_landmarks: int
    recording_overlap_landmarks: int
    def __init__(self, audio_id: _Optional[str] = ..., landmarks: _Optional[int] = ..., offset_ms: _Optional[int] = ..., query_start_ms: _Optional[int] = ..., query_end_ms: _Optional[int] = ..., overlap_landmarks: _Optional[int] = ..., recording_overlap_landmarks: _Optional[int] = ...) -> None: ...

class MatchLandmarksResponse(_message.Message):
    __slots__ = ("matches",)
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    matches: _containers.RepeatedCompositeFieldContainer[LandmarkMatch]
    def __init__(self, matches: _Optional[_Iterable[_Union[LandmarkMatch, _Mapping]]] = ...) -> None: ...

class GetLandmarksRequest(_message.Message):
    __slots__ = ("collection", "audio_id", "before_ms")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    AUDIO_ID_FIELD_NUMBER: _ClassVar[int]
    BEFORE_MS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    audio_id: str
    before_ms: int
    def __init__(self, collection: _Optional[str] = ..., audio_id: _Optional[str] = ..., before_ms: _Optional[int] = ...) -> None: ...

class GetLandmarksResponse(_message.Message):
    __slots__ = ("landmarks",)
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    landmarks: Landmarks
    def __init__(self, landmarks: _Optional[_Union[Landmarks, _Mapping]] = ...) -> None: ...
