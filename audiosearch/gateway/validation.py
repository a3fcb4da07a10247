"""Checks of request fields, each failing with INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

from audiosearch.common.errors import InvalidArgument
from audiosearch.v1 import audiosearch_pb2 as pb

COLLECTION_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
AUDIO_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_NAME_CHARS = 512
MAX_METADATA_ENTRIES = 64
MAX_METADATA_KEY_CHARS = 128
MAX_METADATA_VALUE_CHARS = 1024
MAX_TOP_K = 100
MAX_PAGE_SIZE = 1000


def collection_name(name: str, field: str = "collection") -> str:
    if not COLLECTION_NAME.match(name):
        raise InvalidArgument(
            f"collection name {name[:80]!r} must be 1-63 characters of a-z, 0-9 and _, starting with a letter",
            field=field,
        )
    return name


def audio_id(value: str) -> str:
    if not AUDIO_ID.match(value):
        raise InvalidArgument(f"audio id {value[:80]!r} is not a 32-character hex id", field="audio_id")
    return value


def _printable(text: str) -> bool:
    return not any(unicodedata.category(char) in ("Cc", "Cs") for char in text)


def audio_name(name: str) -> str:
    if not name.strip():
        raise InvalidArgument("the audio name is empty", field="name")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidArgument(f"the audio name has {len(name)} characters, at most {MAX_NAME_CHARS}", field="name")
    if not _printable(name):
        raise InvalidArgument("the audio name contains control characters", field="name")
    return name


def metadata(entries: Mapping[str, str], field: str = "metadata") -> dict[str, str]:
    if len(entries) > MAX_METADATA_ENTRIES:
        raise InvalidArgument(f"{len(entries)} metadata entries, at most {MAX_METADATA_ENTRIES}", field=field)
    for key, value in entries.items():
        if not key or len(key) > MAX_METADATA_KEY_CHARS or not _printable(key):
            raise InvalidArgument(
                f"metadata key {key[:40]!r} must be 1-{MAX_METADATA_KEY_CHARS} printable characters", field=field
            )
        if len(value) > MAX_METADATA_VALUE_CHARS or "\x00" in value:
            raise InvalidArgument(
                f"metadata value of {key[:40]!r} must be at most {MAX_METADATA_VALUE_CHARS} characters without NUL",
                field=field,
            )
    return dict(entries)


def top_k(value: int, default: int, maximum: int = MAX_TOP_K, field: str = "top_k") -> int:
    if value < 0 or value > maximum:
        raise InvalidArgument(f"{field} {value} is outside 1-{maximum} (0 takes the default {default})", field=field)
    return value or default


def page_size(value: int) -> int:
    return top_k(value, 50, MAX_PAGE_SIZE, field="page_size")


def segment_config(config: pb.SegmentConfig, default_window: float, default_hop: float) -> pb.SegmentConfig:
    window = config.window_seconds or default_window
    hop = config.hop_seconds or min(default_hop, window)
    if not 0.5 <= window <= 10.0:
        raise InvalidArgument(f"window_seconds {window} is outside 0.5-10", field="segment_config.window_seconds")
    if not 0.1 <= hop <= window:
        raise InvalidArgument(f"hop_seconds {hop} is outside 0.1-{window}", field="segment_config.hop_seconds")
    return pb.SegmentConfig(window_seconds=window, hop_seconds=hop)


def score_threshold(value: float, field: str = "score_threshold") -> float:
    if not -1.0 <= value <= 1.0:
        raise InvalidArgument(f"{field} {value} is outside [-1, 1]", field=field)
    return value


def audio_filter(value: pb.AudioFilter) -> pb.AudioFilter:
    metadata(value.metadata, field="filter.metadata")
    if len(value.tags) > 32:
        raise InvalidArgument("at most 32 tags in a filter", field="filter.tags")
    return value
