from audiosearch.v1 import audiosearch_pb2 as _audiosearch_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Segment(_message.Message):
    __slots__ = ("segment_id", "index", "range", "tags")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    segment_id: int
    index: int
    range: _audiosearch_pb2.TimeRange
    tags: _containers.RepeatedCompositeFieldContainer[_audiosearch_pb2.Tag]
    def __init__(self, segment_id: _Optional[int] = ..., index: _Optional[int] = ..., range: _Optional[_Union[_audiosearch_pb2.TimeRange, _Mapping]] = ..., tags: _Optional[_Iterable[_Union[_audiosearch_pb2.Tag, _Mapping]]] = ...) -> None: ...

class CreateCollectionRequest(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: _audiosearch_pb2.Collection
    def __init__(self, collection: _Optional[_Union[_audiosearch_pb2.Collection, _Mapping]] = ...) -> None: ...

class CreateCollectionResponse(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: _audiosearch_pb2.Collection
    def __init__(self, collection: _Optional[_Union[_audiosearch_pb2.Collection, _Mapping]] = ...) -> None: ...

class GetCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetCollectionResponse(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: _audiosearch_pb2.Collection
    def __init__(self, collection: _Optional[_Union[_audiosearch_pb2.Collection, _Mapping]] = ...) -> None: ...

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
    collections: _containers.RepeatedCompositeFieldContainer[_audiosearch_pb2.Collection]
    next_page_token: str
    def __init__(self, collections: _Optional[_Iterable[_Union[_audiosearch_pb2.Collection, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateCollectionThresholdRequest(_message.Message):
    __slots__ = ("name", "score_threshold", "threshold_source", "landmark_threshold", "landmark_share_threshold")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_SOURCE_FIELD_NUMBER: _ClassVar[int]
    LANDMARK_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    LANDMARK_SHARE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    name: str
    score_threshold: float
    threshold_source: str
    landmark_threshold: int
    landmark_share_threshold: float
    def __init__(self, name: _Optional[str] = ..., score_threshold: _Optional[float] = ..., threshold_source: _Optional[str] = ..., landmark_threshold: _Optional[int] = ..., landmark_share_threshold: _Optional[float] = ...) -> None: ...

class UpdateCollectionThresholdResponse(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: _audiosearch_pb2.Collection
    def __init__(self, collection: _Optional[_Union[_audiosearch_pb2.Collection, _Mapping]] = ...) -> None: ...

class DeleteCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteCollectionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreateAudioRequest(_message.Message):
    __slots__ = ("audio", "segments")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    audio: _audiosearch_pb2.AudioRecord
    segments: _containers.RepeatedCompositeFieldContainer[Segment]
    def __init__(self, audio: _Optional[_Union[_audiosearch_pb2.AudioRecord, _Mapping]] = ..., segments: _Optional[_Iterable[_Union[Segment, _Mapping]]] = ...) -> None: ...

class CreateAudioResponse(_message.Message):
    __slots__ = ("audio", "segments", "created")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    audio: _audiosearch_pb2.AudioRecord
    segments: _containers.RepeatedCompositeFieldContainer[Segment]
    created: bool
    def __init__(self, audio: _Optional[_Union[_audiosearch_pb2.AudioRecord, _Mapping]] = ..., segments: _Optional[_Iterable[_Union[Segment, _Mapping]]] = ..., created: _Optional[bool] = ...) -> None: ...

class FindAudioBySha256Request(_message.Message):
    __slots__ = ("collection", "sha256")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    collection: str
    sha256: str
    def __init__(self, collection: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...

class FindAudioBySha256Response(_message.Message):
    __slots__ = ("audio",)
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    audio: _audiosearch_pb2.AudioRecord
    def __init__(self, audio: _Optional[_Union[_audiosearch_pb2.AudioRecord, _Mapping]] = ...) -> None: ...

class SetAudioStatusRequest(_message.Message):
    __slots__ = ("collection", "audio_id", "status", "expected_status")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    AUDIO_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_STATUS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    audio_id: str
    status: _audiosearch_pb2.AudioStatus
    expected_status: _audiosearch_pb2.AudioStatus
    def __init__(self, collection: _Optional[str] = ..., audio_id: _Optional[str] = ..., status: _Optional[_Union[_audiosearch_pb2.AudioStatus, str]] = ..., expected_status: _Optional[_Union[_audiosearch_pb2.AudioStatus, str]] = ...) -> None: ...

class SetAudioStatusResponse(_message.Message):
    __slots__ = ("audio",)
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    audio: _audiosearch_pb2.AudioRecord
    def __init__(self, audio: _Optional[_Union[_audiosearch_pb2.AudioRecord, _Mapping]] = ...) -> None: ...

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
    audio: _audiosearch_pb2.AudioRecord
    def __init__(self, audio: _Optional[_Union[_audiosearch_pb2.AudioRecord, _Mapping]] = ...) -> None: ...

class BatchGetAudioRequest(_message.Message):
    __slots__ = ("collection", "audio_ids", "status", "filter")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    AUDIO_IDS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    collection: str
    audio_ids: _containers.RepeatedScalarFieldContainer[str]
    status: _audiosearch_pb2.AudioStatus
    filter: _audiosearch_pb2.AudioFilter
    def __init__(self, collection: _Optional[str] = ..., audio_ids: _Optional[_Iterable[str]] = ..., status: _Optional[_Union[_audiosearch_pb2.AudioStatus, str]] = ..., filter: _Optional[_Union[_audiosearch_pb2.AudioFilter, _Mapping]] = ...) -> None: ...

class BatchGetAudioResponse(_message.Message):
    __slots__ = ("audios",)
    AUDIOS_FIELD_NUMBER: _ClassVar[int]
    audios: _containers.RepeatedCompositeFieldContainer[_audiosearch_pb2.AudioRecord]
    def __init__(self, audios: _Optional[_Iterable[_Union[_audiosearch_pb2.AudioRecord, _Mapping]]] = ...) -> None: ...

class ListAudioRequest(_message.Message):
    __slots__ = ("collection", "page_size", "page_token", "status", "filter")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    collection: str
    page_size: int
    page_token: str
    status: _audiosearch_pb2.AudioStatus
    filter: _audiosearch_pb2.AudioFilter
    def __init__(self, collection: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., status: _Optional[_Union[_audiosearch_pb2.AudioStatus, str]] = ..., filter: _Optional[_Union[_audiosearch_pb2.AudioFilter, _Mapping]] = ...) -> None: ...

class ListAudioResponse(_message.Message):
    __slots__ = ("audios", "next_page_token")
    AUDIOS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    audios: _containers.RepeatedCompositeFieldContainer[_audiosearch_pb2.AudioRecord]
    next_page_token: str
    def __init__(self, audios: _Optional[_Iterable[_Union[_audiosearch_pb2.AudioRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

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

class GetCollectionStatsResponse(_message.Message):
    __slots__ = ("audio_count", "total_duration_seconds", "segment_count", "tags")
    AUDIO_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    audio_count: int
    total_duration_seconds: float
    segment_count: int
    tags: _containers.RepeatedCompositeFieldContainer[_audiosearch_pb2.TagStatistics]
    def __init__(self, audio_count: _Optional[int] = ..., total_duration_seconds: _Optional[float] = ..., segment_count: _Optional[int] = ..., tags: _Optional[_Iterable[_Union[_audiosearch_pb2.TagStatistics, _Mapping]]] = ...) -> None: ...
