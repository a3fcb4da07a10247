"""Between the wire messages (audiosearch.v1, audiosearch.catalog.v1) and the catalog's records."""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.timestamp_pb2 import Timestamp

from audiosearch.catalog.records import (
    AudioFilter,
    AudioRecord,
    AudioStatus,
    Collection,
    CollectionStats,
    ModelIdentity,
    NewAudio,
    NewSegment,
    Segment,
    Tag,
)
from audiosearch.catalog.v1 import catalog_pb2
from audiosearch.v1 import audiosearch_pb2

_STATUS_PREFIX = "AUDIO_STATUS_"


def status_from_proto(value: int) -> AudioStatus | None:
    """None for AUDIO_STATUS_UNSPECIFIED (and for numbers this build does not know)."""
    if value == audiosearch_pb2.AUDIO_STATUS_UNSPECIFIED or value not in audiosearch_pb2.AudioStatus.values():
        return None
    return AudioStatus(audiosearch_pb2.AudioStatus.Name(value).removeprefix(_STATUS_PREFIX))


def status_to_proto(status: AudioStatus) -> audiosearch_pb2.AudioStatus:
    return audiosearch_pb2.AudioStatus.Value(_STATUS_PREFIX + status.value)


def timestamp(microseconds: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromMicroseconds(microseconds)
    return stamp


def tags_from_proto(tags: Iterable[audiosearch_pb2.Tag]) -> tuple[Tag, ...]:
    return tuple(Tag(tag.label, tag.score) for tag in tags)


def tags_to_proto(tags: Iterable[Tag]) -> list[audiosearch_pb2.Tag]:
    return [audiosearch_pb2.Tag(label=tag.label, score=tag.score) for tag in tags]


def collection_from_proto(message: audiosearch_pb2.Collection) -> Collection:
    model = message.model
    return Collection(
        name=message.name,
        description=message.description,
        model=ModelIdentity(model.name, model.version, model.embedding_dim, model.sample_rate_hz, model.untrained),
        window_seconds=message.segment_config.window_seconds,
        hop_seconds=message.segment_config.hop_seconds,
        score_threshold=message.score_threshold,
        threshold_source=message.threshold_source,
        landmark_threshold=message.landmark_threshold,
        landmark_share_threshold=message.landmark_share_threshold,
    )


def collection_to_proto(collection: Collection) -> audiosearch_pb2.Collection:
    model = collection.model
    return audiosearch_pb2.Collection(
        name=collection.name,
        description=collection.description,
        model=audiosearch_pb2.ModelIdentity(
            name=model.name,
            version=model.version,
            embedding_dim=model.embedding_dim,
            sample_rate_hz=model.sample_rate_hz,
            untrained=model.untrained,
        ),
        segment_config=audiosearch_pb2.SegmentConfig(
            window_seconds=collection.window_seconds, hop_seconds=collection.hop_seconds
        ),
        score_threshold=collection.score_threshold,
        threshold_source=collection.threshold_source,
        audio_count=collection.audio_count,
        create_time=timestamp(collection.create_time_us),
        landmark_threshold=collection.landmark_threshold,
        landmark_share_threshold=collection.landmark_share_threshold,
    )


def new_audio_from_proto(message: audiosearch_pb2.AudioRecord) -> NewAudio:
    return NewAudio(
        collection=message.collection,
        name=message.name,
        sha256=message.sha256,
        duration_seconds=message.duration_seconds,
        sample_rate_hz=message.sample_rate_hz,
        channels=message.channels,
        codec=message.codec,
        size_bytes=message.size_bytes,
        metadata=dict(message.metadata),
        tags=tags_from_proto(message.tags),
    )


def new_segments_from_proto(messages: Iterable[catalog_pb2.Segment]) -> list[NewSegment]:
    return [
        NewSegment(message.index, message.range.start_seconds, message.range.end_seconds, tags_from_proto(message.tags))
        for message in messages
    ]


def audio_to_proto(audio: AudioRecord) -> audiosearch_pb2.AudioRecord:
    return audiosearch_pb2.AudioRecord(
        id=audio.id,
        collection=audio.collection,
        name=audio.name,
        sha256=audio.sha256,
        duration_seconds=audio.duration_seconds,
        sample_rate_hz=audio.sample_rate_hz,
        channels=audio.channels,
        codec=audio.codec,
        size_bytes=audio.size_bytes,
        metadata=dict(audio.metadata),
        tags=tags_to_proto(audio.tags),
        status=status_to_proto(audio.status),
        segment_count=audio.segment_count,
        create_time=timestamp(audio.create_time_us),
        update_time=timestamp(audio.update_time_us),
    )


def segment_to_proto(segment: Segment) -> catalog_pb2.Segment:
    return catalog_pb2.Segment(
        segment_id=segment.segment_id,
        index=segment.index,
        range=audiosearch_pb2.TimeRange(start_seconds=segment.start_seconds, end_seconds=segment.end_seconds),
        tags=tags_to_proto(segment.tags),
    )


def filter_from_proto(message: audiosearch_pb2.AudioFilter) -> AudioFilter:
    return AudioFilter(tags=tuple(message.tags), metadata=dict(message.metadata))


def stats_to_proto(stats: CollectionStats) -> catalog_pb2.GetCollectionStatsResponse:
    return catalog_pb2.GetCollectionStatsResponse(
        audio_count=stats.audio_count,
        total_duration_seconds=stats.total_duration_seconds,
        segment_count=stats.segment_count,
        tags=[
            audiosearch_pb2.TagStatistics(
                label=tag.label, audio_count=tag.audio_count, total_duration_seconds=tag.total_duration_seconds
            )
            for tag in stats.tags
        ],
    )
