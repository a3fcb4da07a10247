import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_REASON_UNSPECIFIED: _ClassVar[ErrorReason]
    ERROR_REASON_INVALID_AUDIO: _ClassVar[ErrorReason]
    ERROR_REASON_AUDIO_TOO_LARGE: _ClassVar[ErrorReason]
    ERROR_REASON_AUDIO_TOO_LONG: _ClassVar[ErrorReason]
    ERROR_REASON_INVALID_FIELD: _ClassVar[ErrorReason]
    ERROR_REASON_COLLECTION_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_COLLECTION_EXISTS: _ClassVar[ErrorReason]
    ERROR_REASON_AUDIO_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_MODEL_MISMATCH: _ClassVar[ErrorReason]
    ERROR_REASON_DEPENDENCY_UNAVAILABLE: _ClassVar[ErrorReason]
    ERROR_REASON_OVERLOADED: _ClassVar[ErrorReason]
    ERROR_REASON_INGEST_IN_PROGRESS: _ClassVar[ErrorReason]
    ERROR_REASON_NOT_ENOUGH_DATA: _ClassVar[ErrorReason]
    ERROR_REASON_CONTENT_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_UNAUTHENTICATED: _ClassVar[ErrorReason]
    ERROR_REASON_PERMISSION_DENIED: _ClassVar[ErrorReason]
    ERROR_REASON_PATH_NOT_ALLOWED: _ClassVar[ErrorReason]
    ERROR_REASON_PATH_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_UPLOAD_STALLED: _ClassVar[ErrorReason]
    ERROR_REASON_SHUTTING_DOWN: _ClassVar[ErrorReason]

class MatchEvidence(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MATCH_EVIDENCE_UNSPECIFIED: _ClassVar[MatchEvidence]
    MATCH_EVIDENCE_EMBEDDING: _ClassVar[MatchEvidence]
    MATCH_EVIDENCE_LANDMARKS: _ClassVar[MatchEvidence]
    MATCH_EVIDENCE_BOTH: _ClassVar[MatchEvidence]

class AudioStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIO_STATUS_UNSPECIFIED: _ClassVar[AudioStatus]
    AUDIO_STATUS_PENDING: _ClassVar[AudioStatus]
    AUDIO_STATUS_READY: _ClassVar[AudioStatus]
    AUDIO_STATUS_DELETING: _ClassVar[AudioStatus]
    AUDIO_STATUS_FAILED: _ClassVar[AudioStatus]

class SampleFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SAMPLE_FORMAT_UNSPECIFIED: _ClassVar[SampleFormat]
    SAMPLE_FORMAT_S16LE: _ClassVar[SampleFormat]
    SAMPLE_FORMAT_F32LE: _ClassVar[SampleFormat]

class DetectionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DETECTION_STATE_UNSPECIFIED: _ClassVar[DetectionState]
    DETECTION_STATE_STARTED: _ClassVar[DetectionState]
    DETECTION_STATE_ENDED: _ClassVar[DetectionState]
ERROR_REASON_UNSPECIFIED: ErrorReason
ERROR_REASON_INVALID_AUDIO: ErrorReason
ERROR_REASON_AUDIO_TOO_LARGE: ErrorReason
ERROR_REASON_AUDIO_TOO_LONG: ErrorReason
ERROR_REASON_INVALID_FIELD: ErrorReason
ERROR_REASON_COLLECTION_NOT_FOUND: ErrorReason
ERROR_REASON_COLLECTION_EXISTS: ErrorReason
ERROR_REASON_AUDIO_NOT_FOUND: ErrorReason
ERROR_REASON_MODEL_MISMATCH: ErrorReason
ERROR_REASON_DEPENDENCY_UNAVAILABLE: ErrorReason
ERROR_REASON_OVERLOADED: ErrorReason
ERROR_REASON_INGEST_IN_PROGRESS: ErrorReason
ERROR_REASON_NOT_ENOUGH_DATA: ErrorReason
ERROR_REASON_CONTENT_NOT_FOUND: ErrorReason
ERROR_REASON_UNAUTHENTICATED: ErrorReason
ERROR_REASON_PERMISSION_DENIED: ErrorReason
ERROR_REASON_PATH_NOT_ALLOWED: ErrorReason
ERROR_REASON_PATH_NOT_FOUND: ErrorReason
ERROR_REASON_UPLOAD_STALLED: ErrorReason
ERROR_REASON_SHUTTING_DOWN: ErrorReason
MATCH_EVIDENCE_UNSPECIFIED: MatchEvidence
MATCH_EVIDENCE_EMBEDDING: MatchEvidence
MATCH_EVIDENCE_LANDMARKS: MatchEvidence
MATCH_EVIDENCE_BOTH: MatchEvidence
AUDIO_STATUS_UNSPECIFIED: AudioStatus
AUDIO_STATUS_PENDING: AudioStatus
AUDIO_STATUS_READY: AudioStatus
AUDIO_STATUS_DELETING: AudioStatus
AUDIO_STATUS_FAILED: AudioStatus
SAMPLE_FORMAT_UNSPECIFIED: SampleFormat
SAMPLE_FORMAT_S16LE: SampleFormat
SAMPLE_FORMAT_F32LE: SampleFormat
DETECTION_STATE_UNSPECIFIED: DetectionState
DETECTION_STATE_STARTED: DetectionState
DETECTION_STATE_ENDED: DetectionState

class ModelIdentity(_message.Message):
    __slots__ = ("name", "version", "embedding_dim", "sample_rate_hz", "untrained")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_DIM_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    UNTRAINED_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    embedding_dim: int
    sample_rate_hz: int
    untrained: bool
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., embedding_dim: _Optional[int] = ..., sample_rate_hz: _Optional[int] = ..., untrained: _Optional[bool] = ...) -> None: ...

class SegmentConfig(_message.Message):
    __slots__ = ("window_seconds", "hop_seconds")
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    HOP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    window_seconds: float
    hop_seconds: float
    def __init__(self, window_seconds: _Optional[float] = ..., hop_seconds: _Optional[float] = ...) -> None: ...

class Collection(_message.Message):
    __slots__ = ("name", "description", "model", "segment_config", "score_threshold", "threshold_source", "audio_count", "create_time", "landmark_threshold", "landmark_share_threshold")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_CONFIG_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_SOURCE_FIELD_NUMBER: _ClassVar[int]
    AUDIO_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    LANDMARK_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    LANDMARK_SHARE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    model: ModelIdentity
    segment_config: SegmentConfig
    score_threshold: float
    threshold_source: str
    audio_count: int
    create_time: _timestamp_pb2.Timestamp
    landmark_threshold: int
    landmark_share_threshold: float
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., model: _Optional[_Union[ModelIdentity, _Mapping]] = ..., segment_config: _Optional[_Union[SegmentConfig, _Mapping]] = ..., score_threshold: _Optional[float] = ..., threshold_source: _Optional[str] = ..., audio_count: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., landmark_threshold: _Optional[int] = ..., landmark_share_threshold: _Optional[float] = ...) -> None: ...

class Tag(_message.Message):
    __slots__ = ("label", "score")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    label: str
    score: float
    def __init__(self, label: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class TimeRange(_message.Message):
    __slots__ = ("start_seconds", "end_seconds")
    START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    END_SECONDS_FIELD_NUMBER: _ClassVar[int]
    start_seconds: float
    end_seconds: float
    def __init__(self, start_seconds: _Optional[float] = ..., end_seconds: _Optional[float] = ...) -> None: ...

class AudioRecord(_message.Message):
    __slots__ = ("id", "collection", "name", "sha256", "duration_seconds", "sample_rate_hz", "channels", "codec", "size_bytes", "metadata", "tags", "status", "segment_count", "create_time", "update_time")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    collection: str
    name: str
    sha256: str
    duration_seconds: float
    sample_rate_hz: int
    channels: int
    codec: str
    size_bytes: int
    metadata: _containers.ScalarMap[str, str]
    tags: _containers.RepeatedCompositeFieldContainer[Tag]
    status: AudioStatus
    segment_count: int
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., collection: _Optional[str] = ..., name: _Optional[str] = ..., sha256: _Optional[str] = ..., duration_seconds: _Optional[float] = ..., sample_rate_hz: _Optional[int] = ..., channels: _Optional[int] = ..., codec: _Optional[str] = ..., size_bytes: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ..., tags: _Optional[_Iterable[_Union[Tag, _Mapping]]] = ..., status: _Optional[_Union[AudioStatus, str]] = ..., segment_count: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateCollectionRequest(_message.Message):
    __slots__ = ("name", "description", "segment_config", "score_threshold", "disable_landmarks")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_CONFIG_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    DISABLE_LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    segment_config: SegmentConfig
    score_threshold: float
    disable_landmarks: bool
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., segment_config: _Optional[_Union[SegmentConfig, _Mapping]] = ..., score_threshold: _Optional[float] = ..., disable_landmarks: _Optional[bool] = ...) -> None: ...

class CreateCollectionResponse(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: Collection
    def __init__(self, collection: _Optional[_Union[Collection, _Mapping]] = ...) -> None: ...

class GetCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetCollectionResponse(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: Collection
    def __init__(self, collection: _Optional[_Union[Collection, _Mapping]] = ...) -> None: ...

class ListCollectionsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListCollectionsResponse(_message.Message):
    __slots__ = ("collections", "next_page_token")
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    collections: _containers.RepeatedCompositeFieldContainer[Collection]
    next_page_token: str
    def __init__(self, collections: _Optional[_Iterable[_Union[Collection, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteCollectionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class IngestAudioHeader(_message.Message):
    __slots__ = ("collection", "name", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    collection: str
    name: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, collection: _Optional[str] = ..., name: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class IngestAudioRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: IngestAudioHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[IngestAudioHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class IngestAudioResponse(_message.Message):
    __slots__ = ("audio", "already_existed")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    ALREADY_EXISTED_FIELD_NUMBER: _ClassVar[int]
    audio: AudioRecord
    already_existed: bool
    def __init__(self, audio: _Optional[_Union[AudioRecord, _Mapping]] = ..., already_existed: _Optional[bool] = ...) -> None: ...

class AudioFilter(_message.Message):
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

class SearchAudioRequest(_message.Message):
    __slots__ = ("collection", "audio_content", "top_k", "min_score", "filter")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    AUDIO_CONTENT_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    collection: str
    audio_content: bytes
    top_k: int
    min_score: float
    filter: AudioFilter
    def __init__(self, collection: _Optional[str] = ..., audio_content: _Optional[bytes] = ..., top_k: _Optional[int] = ..., min_score: _Optional[float] = ..., filter: _Optional[_Union[AudioFilter, _Mapping]] = ...) -> None: ...

class Match(_message.Message):
    __slots__ = ("audio", "score", "reference_range", "query_range", "matched_segments", "landmarks", "landmark_share", "decided_by")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_RANGE_FIELD_NUMBER: _ClassVar[int]
    QUERY_RANGE_FIELD_NUMBER: _ClassVar[int]
    MATCHED_SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    LANDMARK_SHARE_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    audio: AudioRecord
    score: float
    reference_range: TimeRange
    query_range: TimeRange
    matched_segments: int
    landmarks: int
    landmark_share: float
    decided_by: MatchEvidence
    def __init__(self, audio: _Optional[_Union[AudioRecord, _Mapping]] = ..., score: _Optional[float] = ..., reference_range: _Optional[_Union[TimeRange, _Mapping]] = ..., query_range: _Optional[_Union[TimeRange, _Mapping]] = ..., matched_segments: _Optional[int] = ..., landmarks: _Optional[int] = ..., landmark_share: _Optional[float] = ..., decided_by: _Optional[_Union[MatchEvidence, str]] = ...) -> None: ...

class SearchAudioResponse(_message.Message):
    __slots__ = ("matches", "score_threshold", "query_duration_seconds", "query_tags", "model")
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    QUERY_DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    QUERY_TAGS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    matches: _containers.RepeatedCompositeFieldContainer[Match]
    score_threshold: float
    query_duration_seconds: float
    query_tags: _containers.RepeatedCompositeFieldContainer[Tag]
    model: ModelIdentity
    def __init__(self, matches: _Optional[_Iterable[_Union[Match, _Mapping]]] = ..., score_threshold: _Optional[float] = ..., query_duration_seconds: _Optional[float] = ..., query_tags: _Optional[_Iterable[_Union[Tag, _Mapping]]] = ..., model: _Optional[_Union[ModelIdentity, _Mapping]] = ...) -> None: ...

class TagAudioRequest(_message.Message):
    __slots__ = ("audio_content", "top_k")
    AUDIO_CONTENT_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    audio_content: bytes
    top_k: int
    def __init__(self, audio_content: _Optional[bytes] = ..., top_k: _Optional[int] = ...) -> None: ...

class SegmentTags(_message.Message):
    __slots__ = ("range", "tags")
    RANGE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    range: TimeRange
    tags: _containers.RepeatedCompositeFieldContainer[Tag]
    def __init__(self, range: _Optional[_Union[TimeRange, _Mapping]] = ..., tags: _Optional[_Iterable[_Union[Tag, _Mapping]]] = ...) -> None: ...

class TagAudioResponse(_message.Message):
    __slots__ = ("tags", "segments", "duration_seconds", "model")
    TAGS_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    tags: _containers.RepeatedCompositeFieldContainer[Tag]
    segments: _containers.RepeatedCompositeFieldContainer[SegmentTags]
    duration_seconds: float
    model: ModelIdentity
    def __init__(self, tags: _Optional[_Iterable[_Union[Tag, _Mapping]]] = ..., segments: _Optional[_Iterable[_Union[SegmentTags, _Mapping]]] = ..., duration_seconds: _Optional[float] = ..., model: _Optional[_Union[ModelIdentity, _Mapping]] = ...) -> None: ...

class GetAudioRequest(_message.Message):
    __slots__ = ("collection", "audio_id")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    AUDIO_ID_FIELD_NUMBER: _ClassVar[int]
    collection: str
    audio_id: str
    def __init__(self, collection: _Optional[str] = ..., audio_id: _Optional[str] = ...) -> None: ...

class GetAudioResponse(_message.Message):
    __slots__ = ("audio",)
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    audio: AudioRecord
    def __init__(self, audio: _Optional[_Union[AudioRecord, _Mapping]] = ...) -> None: ...

class ListAudioRequest(_message.Message):
    __slots__ = ("collection", "page_size", "page_token", "filter")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    collection: str
    page_size: int
    page_token: str
    filter: AudioFilter
    def __init__(self, collection: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[_Union[AudioFilter, _Mapping]] = ...) -> None: ...

class ListAudioResponse(_message.Message):
    __slots__ = ("audios", "next_page_token")
    AUDIOS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    audios: _containers.RepeatedCompositeFieldContainer[AudioRecord]
    next_page_token: str
    def __init__(self, audios: _Optional[_Iterable[_Union[AudioRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteAudioRequest(_message.Message):
    __slots__ = ("collection", "audio_id")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    AUDIO_ID_FIELD_NUMBER: _ClassVar[int]
    collection: str
    audio_id: str
    def __init__(self, collection: _Optional[str] = ..., audio_id: _Optional[str] = ...) -> None: ...

class DeleteAudioResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetCollectionStatsRequest(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    def __init__(self, collection: _Optional[str] = ...) -> None: ...

class TagStatistics(_message.Message):
    __slots__ = ("label", "audio_count", "total_duration_seconds")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    AUDIO_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    label: str
    audio_count: int
    total_duration_seconds: float
    def __init__(self, label: _Optional[str] = ..., audio_count: _Optional[int] = ..., total_duration_seconds: _Optional[float] = ...) -> None: ...

class GetCollectionStatsResponse(_message.Message):
    __slots__ = ("audio_count", "total_duration_seconds", "segment_count", "tags")
    AUDIO_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    audio_count: int
    total_duration_seconds: float
    segment_count: int
    tags: _containers.RepeatedCompositeFieldContainer[TagStatistics]
    def __init__(self, audio_count: _Optional[int] = ..., total_duration_seconds: _Optional[float] = ..., segment_count: _Optional[int] = ..., tags: _Optional[_Iterable[_Union[TagStatistics, _Mapping]]] = ...) -> None: ...

class CalibrateCollectionRequest(_message.Message):
    __slots__ = ("collection", "target_false_positive_rate")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FALSE_POSITIVE_RATE_FIELD_NUMBER: _ClassVar[int]
    collection: str
    target_false_positive_rate: float
    def __init__(self, collection: _Optional[str] = ..., target_false_positive_rate: _Optional[float] = ...) -> None: ...

class CalibrateCollectionResponse(_message.Message):
    __slots__ = ("collection", "negative_queries", "positive_queries", "true_positive_rate", "false_positive_rate", "variant_queries")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_QUERIES_FIELD_NUMBER: _ClassVar[int]
    POSITIVE_QUERIES_FIELD_NUMBER: _ClassVar[int]
    TRUE_POSITIVE_RATE_FIELD_NUMBER: _ClassVar[int]
    FALSE_POSITIVE_RATE_FIELD_NUMBER: _ClassVar[int]
    VARIANT_QUERIES_FIELD_NUMBER: _ClassVar[int]
    collection: Collection
    negative_queries: int
    positive_queries: int
    true_positive_rate: float
    false_positive_rate: float
    variant_queries: int
    def __init__(self, collection: _Optional[_Union[Collection, _Mapping]] = ..., negative_queries: _Optional[int] = ..., positive_queries: _Optional[int] = ..., true_positive_rate: _Optional[float] = ..., false_positive_rate: _Optional[float] = ..., variant_queries: _Optional[int] = ...) -> None: ...

class GetAudioContentRequest(_message.Message):
    __slots__ = ("collection", "audio_id")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    AUDIO_ID_FIELD_NUMBER: _ClassVar[int]
    collection: str
    audio_id: str
    def __init__(self, collection: _Optional[str] = ..., audio_id: _Optional[str] = ...) -> None: ...

class GetAudioContentResponse(_message.Message):
    __slots__ = ("chunk", "content_type", "size_bytes")
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    content_type: str
    size_bytes: int
    def __init__(self, chunk: _Optional[bytes] = ..., content_type: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class ImportAudioHeader(_message.Message):
    __slots__ = ("collection", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    collection: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, collection: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ImportFileHeader(_message.Message):
    __slots__ = ("name", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ImportFileEnd(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ImportAudioRequest(_message.Message):
    __slots__ = ("header", "file", "chunk", "file_end")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    FILE_END_FIELD_NUMBER: _ClassVar[int]
    header: ImportAudioHeader
    file: ImportFileHeader
    chunk: bytes
    file_end: ImportFileEnd
    def __init__(self, header: _Optional[_Union[ImportAudioHeader, _Mapping]] = ..., file: _Optional[_Union[ImportFileHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ..., file_end: _Optional[_Union[ImportFileEnd, _Mapping]] = ...) -> None: ...

class ImportFileError(_message.Message):
    __slots__ = ("code", "reason", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    reason: str
    message: str
    def __init__(self, code: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ImportFileResult(_message.Message):
    __slots__ = ("index", "name", "audio", "error", "already_existed")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ALREADY_EXISTED_FIELD_NUMBER: _ClassVar[int]
    index: int
    name: str
    audio: AudioRecord
    error: ImportFileError
    already_existed: bool
    def __init__(self, index: _Optional[int] = ..., name: _Optional[str] = ..., audio: _Optional[_Union[AudioRecord, _Mapping]] = ..., error: _Optional[_Union[ImportFileError, _Mapping]] = ..., already_existed: _Optional[bool] = ...) -> None: ...

class ImportProgress(_message.Message):
    __slots__ = ("files_done", "files_ingested", "files_already_existed", "errors", "audio_seconds", "elapsed_seconds", "audio_seconds_per_second", "files_total")
    FILES_DONE_FIELD_NUMBER: _ClassVar[int]
    FILES_INGESTED_FIELD_NUMBER: _ClassVar[int]
    FILES_ALREADY_EXISTED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_SECONDS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    FILES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    files_done: int
    files_ingested: int
    files_already_existed: int
    errors: int
    audio_seconds: float
    elapsed_seconds: float
    audio_seconds_per_second: float
    files_total: int
    def __init__(self, files_done: _Optional[int] = ..., files_ingested: _Optional[int] = ..., files_already_existed: _Optional[int] = ..., errors: _Optional[int] = ..., audio_seconds: _Optional[float] = ..., elapsed_seconds: _Optional[float] = ..., audio_seconds_per_second: _Optional[float] = ..., files_total: _Optional[int] = ...) -> None: ...

class ImportAudioResponse(_message.Message):
    __slots__ = ("file", "progress", "summary")
    FILE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    file: ImportFileResult
    progress: ImportProgress
    summary: ImportProgress
    def __init__(self, file: _Optional[_Union[ImportFileResult, _Mapping]] = ..., progress: _Optional[_Union[ImportProgress, _Mapping]] = ..., summary: _Optional[_Union[ImportProgress, _Mapping]] = ...) -> None: ...

class ImportDirectoryRequest(_message.Message):
    __slots__ = ("collection", "path", "recursive", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    collection: str
    path: str
    recursive: bool
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, collection: _Optional[str] = ..., path: _Optional[str] = ..., recursive: _Optional[bool] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ImportDirectoryResponse(_message.Message):
    __slots__ = ("file", "progress", "summary")
    FILE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    file: ImportFileResult
    progress: ImportProgress
    summary: ImportProgress
    def __init__(self, file: _Optional[_Union[ImportFileResult, _Mapping]] = ..., progress: _Optional[_Union[ImportProgress, _Mapping]] = ..., summary: _Optional[_Union[ImportProgress, _Mapping]] = ...) -> None: ...

class RawAudioFormat(_message.Message):
    __slots__ = ("sample_rate_hz", "channels", "sample_format")
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    sample_rate_hz: int
    channels: int
    sample_format: SampleFormat
    def __init__(self, sample_rate_hz: _Optional[int] = ..., channels: _Optional[int] = ..., sample_format: _Optional[_Union[SampleFormat, str]] = ...) -> None: ...

class MonitorThresholds(_message.Message):
    __slots__ = ("score_threshold", "landmark_threshold", "landmark_share_threshold")
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    LANDMARK_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    LANDMARK_SHARE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    score_threshold: float
    landmark_threshold: int
    landmark_share_threshold: float
    def __init__(self, score_threshold: _Optional[float] = ..., landmark_threshold: _Optional[int] = ..., landmark_share_threshold: _Optional[float] = ...) -> None: ...

class MonitorAudioHeader(_message.Message):
    __slots__ = ("collection", "thresholds", "filter", "feed_label", "start_time", "raw_format", "feed_offset_seconds")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    FEED_LABEL_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    RAW_FORMAT_FIELD_NUMBER: _ClassVar[int]
    FEED_OFFSET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    thresholds: MonitorThresholds
    filter: AudioFilter
    feed_label: str
    start_time: _timestamp_pb2.Timestamp
    raw_format: RawAudioFormat
    feed_offset_seconds: float
    def __init__(self, collection: _Optional[str] = ..., thresholds: _Optional[_Union[MonitorThresholds, _Mapping]] = ..., filter: _Optional[_Union[AudioFilter, _Mapping]] = ..., feed_label: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., raw_format: _Optional[_Union[RawAudioFormat, _Mapping]] = ..., feed_offset_seconds: _Optional[float] = ...) -> None: ...

class MonitorAudioRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: MonitorAudioHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[MonitorAudioHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class MonitorDetection(_message.Message):
    __slots__ = ("detection_id", "state", "audio", "feed_range", "feed_start_time", "feed_end_time", "reference_range", "score", "landmarks", "landmark_share", "decided_by", "feed_label")
    DETECTION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    FEED_RANGE_FIELD_NUMBER: _ClassVar[int]
    FEED_START_TIME_FIELD_NUMBER: _ClassVar[int]
    FEED_END_TIME_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_RANGE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    LANDMARK_SHARE_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    FEED_LABEL_FIELD_NUMBER: _ClassVar[int]
    detection_id: str
    state: DetectionState
    audio: AudioRecord
    feed_range: TimeRange
    feed_start_time: _timestamp_pb2.Timestamp
    feed_end_time: _timestamp_pb2.Timestamp
    reference_range: TimeRange
    score: float
    landmarks: int
    landmark_share: float
    decided_by: MatchEvidence
    feed_label: str
    def __init__(self, detection_id: _Optional[str] = ..., state: _Optional[_Union[DetectionState, str]] = ..., audio: _Optional[_Union[AudioRecord, _Mapping]] = ..., feed_range: _Optional[_Union[TimeRange, _Mapping]] = ..., feed_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., feed_end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reference_range: _Optional[_Union[TimeRange, _Mapping]] = ..., score: _Optional[float] = ..., landmarks: _Optional[int] = ..., landmark_share: _Optional[float] = ..., decided_by: _Optional[_Union[MatchEvidence, str]] = ..., feed_label: _Optional[str] = ...) -> None: ...

class MonitorProgress(_message.Message):
    __slots__ = ("audio_seconds", "pending_seconds", "elapsed_seconds", "real_time_factor", "lag_seconds", "open_detections")
    AUDIO_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PENDING_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REAL_TIME_FACTOR_FIELD_NUMBER: _ClassVar[int]
    LAG_SECONDS_FIELD_NUMBER: _ClassVar[int]
    OPEN_DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    audio_seconds: float
    pending_seconds: float
    elapsed_seconds: float
    real_time_factor: float
    lag_seconds: float
    open_detections: int
    def __init__(self, audio_seconds: _Optional[float] = ..., pending_seconds: _Optional[float] = ..., elapsed_seconds: _Optional[float] = ..., real_time_factor: _Optional[float] = ..., lag_seconds: _Optional[float] = ..., open_detections: _Optional[int] = ...) -> None: ...

class MonitorAudioResponse(_message.Message):
    __slots__ = ("detection", "progress")
    DETECTION_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    detection: MonitorDetection
    progress: MonitorProgress
    def __init__(self, detection: _Optional[_Union[MonitorDetection, _Mapping]] = ..., progress: _Optional[_Union[MonitorProgress, _Mapping]] = ...) -> None: ...
