from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SegmentVector(_message.Message):
    __slots__ = ("segment_id", "audio_id", "start_seconds", "end_seconds", "vector")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    AUDIO_ID_FIELD_NUMBER: _ClassVar[int]
    START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    END_SECONDS_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    segment_id: int
    audio_id: str
    start_seconds: float
    end_seconds: float
    vector: bytes
    def __init__(self, segment_id: _Optional[int] = ..., audio_id: _Optional[str] = ..., start_seconds: _Optional[float] = ..., end_seconds: _Optional[float] = ..., vector: _Optional[bytes] = ...) -> None: ...

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
    __slots__ = ("collection", "vectors", "top_k", "audio_ids")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    AUDIO_IDS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    vectors: _containers.RepeatedScalarFieldContainer[bytes]
    top_k: int
    audio_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, collection: _Optional[str] = ..., vectors: _Optional[_Iterable[bytes]] = ..., top_k: _Optional[int] = ..., audio_ids: _Optional[_Iterable[str]] = ...) -> None: ...

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
