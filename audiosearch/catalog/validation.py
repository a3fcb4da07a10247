"""Checks on everything the catalog stores: callers are trusted services, the strings they pass on are not.

Every failure is INVALID_ARGUMENT with reason INVALID_FIELD and `field` naming the offending field."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from audiosearch.catalog.records import Collection, NewAudio, NewSegment, Tag
from audiosearch.common.errors import InvalidArgument

MAX_NAME_CHARS = 512
MAX_METADATA_ENTRIES = 64
MAX_METADATA_KEY_CHARS = 128
MAX_METADATA_VALUE_CHARS = 1024
MAX_TAGS = 527
MAX_TAG_LABEL_CHARS = 256
MAX_CODEC_CHARS = 64
MAX_DESCRIPTION_CHARS = 4096
MAX_MODEL_NAME_CHARS = 128
MAX_MODEL_VERSION_CHARS = 256
MAX_THRESHOLD_SOURCE_CHARS = 1024
MAX_SEGMENTS = 100_000
MAX_BATCH_IDS = 1000
MAX_FILTER_TAGS = 32

_COLLECTION_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def invalid(field: str, problem: str) -> InvalidArgument:
    return InvalidArgument(f"{field}: {problem}", reason="INVALID_FIELD", field=field)


def check_collection(collection: Collection) -> None:
    check_collection_name(collection.name)
    check_text("collection.description", collection.description, MAX_DESCRIPTION_CHARS)
    check_text("collection.model.name", collection.model.name, MAX_MODEL_NAME_CHARS)
    check_text("collection.model.version", collection.model.version, MAX_MODEL_VERSION_CHARS)
    check_non_negative("collection.model.embedding_dim", collection.model.embedding_dim)
    check_non_negative("collection.model.sample_rate_hz", collection.model.sample_rate_hz)
    check_non_negative("collection.segment_config.window_seconds", collection.window_seconds)
    check_non_negative("collection.segment_config.hop_seconds", collection.hop_seconds)
    check_threshold(collection.score_threshold, collection.threshold_source, "collection.")
    check_landmark_threshold(collection.landmark_threshold, collection.landmark_share_threshold, "collection.")


def check_collection_name(name: str) -> None:
    if not _COLLECTION_NAME.fullmatch(name):
        raise invalid("collection.name", "1-63 characters of [a-z0-9_], starting with a letter")


def check_threshold(score_threshold: float, threshold_source: str, prefix: str = "") -> None:
    if not math.isfinite(score_threshold):
        raise invalid(f"{prefix}score_threshold", "must be a finite number")
    check_text(f"{prefix}threshold_source", threshold_source, MAX_THRESHOLD_SOURCE_CHARS)


def check_landmark_threshold(landmark_threshold: int, landmark_share_threshold: float = 0.0, prefix: str = ""
                             ) -> None:
    check_non_negative(f"{prefix}landmark_threshold", landmark_threshold)
    if not 0.0 <= landmark_share_threshold <= 1.0:  # NaN fails too
        raise invalid(f"{prefix}landmark_share_threshold", "must be a share, from 0 to 1")


def check_new_audio(audio: NewAudio, segments: Sequence[NewSegment]) -> None:
    check_text("audio.name", audio.name, MAX_NAME_CHARS, required=True)
    if not _SHA256.fullmatch(audio.sha256):
        raise invalid("audio.sha256", "64 lowercase hex digits")
    check_non_negative("audio.duration_seconds", audio.duration_seconds)
    check_non_negative("audio.sample_rate_hz", audio.sample_rate_hz)
    check_non_negative("audio.channels", audio.channels)
    check_non_negative("audio.size_bytes", audio.size_bytes)
    check_text("audio.codec", audio.codec, MAX_CODEC_CHARS)
    check_metadata("audio.metadata", audio.metadata)
    check_tags("audio.tags", audio.tags)
    check_segments(segments)


def check_metadata(field: str, metadata: Mapping[str, str]) -> None:
    if len(metadata) > MAX_METADATA_ENTRIES:
        raise invalid(field, f"at most {MAX_METADATA_ENTRIES} entries")
    for key, value in metadata.items():
        check_text(field, key, MAX_METADATA_KEY_CHARS, required=True)
        check_text(field, value, MAX_METADATA_VALUE_CHARS)


def check_tags(field: str, tags: Sequence[Tag]) -> None:
    if len(tags) > MAX_TAGS:
        raise invalid(field, f"at most {MAX_TAGS} tags")
    if len({tag.label for tag in tags}) != len(tags):
        raise invalid(field, "labels must be unique")
    for position, tag in enumerate(tags):
        check_text(f"{field}[{position}].label", tag.label, MAX_TAG_LABEL_CHARS, required=True)
        if not math.isfinite(tag.score):
            raise invalid(f"{field}[{position}].score", "must be a finite number")


def check_segments(segments: Sequence[NewSegment]) -> None:
    if len(segments) > MAX_SEGMENTS:
        raise invalid("segments", f"at most {MAX_SEGMENTS} segments")
    if len({segment.index for segment in segments}) != len(segments):
        raise invalid("segments", "indexes must be unique")
    for position, segment in enumerate(segments):
        field = f"segments[{position}]"
        check_non_negative(f"{field}.index", segment.index)
        check_non_negative(f"{field}.range.start_seconds", segment.start_seconds)
        if not segment.end_seconds >= segment.start_seconds or not math.isfinite(segment.end_seconds):
            raise invalid(f"{field}.range.end_seconds", "must be finite and not before the start")
        check_tags(f"{field}.tags", segment.tags)


def check_filter(tags: Sequence[str], metadata: Mapping[str, str]) -> None:
    if len(tags) > MAX_FILTER_TAGS:
        raise invalid("filter.tags", f"at most {MAX_FILTER_TAGS} tags")
    for position, label in enumerate(tags):
        check_text(f"filter.tags[{position}]", label, MAX_TAG_LABEL_CHARS)
    check_metadata("filter.metadata", metadata)


def check_text(field: str, value: str, max_chars: int, required: bool = False) -> None:
    if required and not value:
        raise invalid(field, "must not be empty")
    if len(value) > max_chars:
        raise invalid(field, f"at most {max_chars} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise invalid(field, "must be valid UTF-8") from error


def check_non_negative(field: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise invalid(field, "must be a finite number, not negative")
