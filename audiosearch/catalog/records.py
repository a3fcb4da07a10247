"""The catalog's records, independent of the wire format and of the database."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Generic, TypeVar

T = TypeVar("T")


class AudioStatus(StrEnum):
    PENDING = "PENDING"
    READY = "READY"
    DELETING = "DELETING"
    FAILED = "FAILED"


@dataclass(frozen=True)
class Tag:
    label: str
    score: float


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    version: str
    embedding_dim: int
    sample_rate_hz: int
    untrained: bool


@dataclass(frozen=True)
class Collection:
    name: str
    description: str
    model: ModelIdentity
    window_seconds: float
    hop_seconds: float
    score_threshold: float
    threshold_source: str
    audio_count: int = 0
    create_time_us: int = 0
    landmark_threshold: int = 0
    landmark_share_threshold: float = 0.0


@dataclass(frozen=True)
class NewAudio:
    """A recording as the gateway hands it over; id, status and times are the catalog's to assign."""

    collection: str
    name: str
    sha256: str
    duration_seconds: float
    sample_rate_hz: int
    channels: int
    codec: str
    size_bytes: int
    metadata: Mapping[str, str] = field(default_factory=dict)
    tags: tuple[Tag, ...] = ()


@dataclass(frozen=True, kw_only=True)
class AudioRecord(NewAudio):
    """A stored recording: the NewAudio it was created from and what the catalog assigned to it."""

    id: str
    status: AudioStatus
    segment_count: int
    create_time_us: int
    update_time_us: int

    @classmethod
    def first_stored(cls, audio: NewAudio, audio_id: str, segment_count: int, time_us: int) -> AudioRecord:
        """`audio` as the catalog first stores it: PENDING, created and updated at `time_us`."""
        given = {attribute.name: getattr(audio, attribute.name) for attribute in fields(NewAudio)}
        return cls(**given, id=audio_id, status=AudioStatus.PENDING, segment_count=segment_count,
                   create_time_us=time_us, update_time_us=time_us)


@dataclass(frozen=True)
class NewSegment:
    index: int
    start_seconds: float
    end_seconds: float
    tags: tuple[Tag, ...] = ()


@dataclass(frozen=True)
class Segment:
    segment_id: int
    index: int
    start_seconds: float
    end_seconds: float
    tags: tuple[Tag, ...]


@dataclass(frozen=True)
class CreatedAudio:
    audio: AudioRecord
    segments: tuple[Segment, ...]
    created: bool


@dataclass(frozen=True)
class AudioFilter:
    """Recordings carrying every tag label and every metadata key = value pair."""

    tags: tuple[str, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str


@dataclass(frozen=True)
class TagStatistics:
    label: str
    audio_count: int
    total_duration_seconds: float


@dataclass(frozen=True)
class CollectionStats:
    audio_count: int
    total_duration_seconds: float
    segment_count: int
    tags: list[TagStatistics]
