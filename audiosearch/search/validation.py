"""Checks on what callers send: names and ids end up inside Milvus filter expressions, vectors in the index.

Every failure is INVALID_ARGUMENT with reason INVALID_FIELD and `field` naming the offending field."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

from audiosearch.catalog import validation as catalog_validation
from audiosearch.common.errors import InvalidArgument
from audiosearch.search import labels as labels_module
from audiosearch.search.v1 import search_pb2
from audiosearch.v1 import audiosearch_pb2

MAX_DIMENSION = 32_768
MAX_TOP_K = 16_384
MAX_QUERY_VECTORS = 16_384
MAX_BATCH_IDS = 1000
MAX_LANDMARKS = 2_000_000  # an hour of audio has about 800,000
MAX_LANDMARK_MATCHES = 1000
MAX_DURATION_MS = 7 * 24 * 3600 * 1000

_COLLECTION_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
# Catalog ids are 32 hex digits; this wider set still cannot break out of a quoted filter literal.
_AUDIO_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def invalid(field: str, problem: str) -> InvalidArgument:
    return InvalidArgument(f"{field}: {problem}", reason="INVALID_FIELD", field=field)


def check_collection_name(name: str) -> None:
    if not _COLLECTION_NAME.fullmatch(name):
        raise invalid("collection", "1-63 characters of [a-z0-9_], starting with a letter")


def check_dimension(dimension: int) -> None:
    if not 1 <= dimension <= MAX_DIMENSION:
        raise invalid("dimension", f"must be between 1 and {MAX_DIMENSION}")


def check_top_k(top_k: int) -> None:
    if not 1 <= top_k <= MAX_TOP_K:
        raise invalid("top_k", f"must be between 1 and {MAX_TOP_K}")


def check_audio_id(audio_id: str, field: str = "audio_id") -> None:
    if not _AUDIO_ID.fullmatch(audio_id):
        raise invalid(field, "1-64 characters of [A-Za-z0-9_.:-]")


def check_audio_ids(audio_ids: Sequence[str], field: str = "audio_ids", required: bool = False) -> None:
    if required and not audio_ids:
        raise invalid(field, "at least one recording id is required")
    if len(audio_ids) > MAX_BATCH_IDS:
        raise invalid(field, f"at most {MAX_BATCH_IDS} recording ids")
    for audio_id in audio_ids:
        check_audio_id(audio_id, field)


def check_segment_times(start_s: float, end_s: float, field: str) -> None:
    if not (math.isfinite(start_s) and math.isfinite(end_s)) or start_s < 0 or end_s < start_s:
        raise invalid(field, "start and end must be finite, with 0 <= start <= end")


def decode_vector(data: bytes, dimension: int, field: str) -> np.ndarray:
    """Little-endian float32 bytes → a float32 vector of `dimension` finite values."""
    if len(data) != dimension * 4:
        raise invalid(field, f"expected {dimension} little-endian float32 values ({dimension * 4} bytes), "
                             f"got {len(data)} bytes")
    vector = np.frombuffer(data, dtype="<f4").astype(np.float32, copy=False)
    if not np.isfinite(vector).all():
        raise invalid(field, "contains NaN or infinite values")
    return vector


def decode_vectors(items: Sequence[bytes], dimension: int, field: str) -> np.ndarray:
    """Several vectors as one (n, dimension) float32 matrix."""
    matrix = np.empty((len(items), dimension), dtype=np.float32)
    for index, data in enumerate(items):
        matrix[index] = decode_vector(data, dimension, f"{field}[{index}]")
    return matrix


def decode_landmarks(hashes: Sequence[int], times_ms: Sequence[int], field: str = "landmarks"
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Parallel lists of hashes and times (ms from the start, not negative) → uint32 and int64 arrays."""
    if len(hashes) != len(times_ms):
        raise invalid(field, f"{len(hashes)} hashes but {len(times_ms)} times")
    if len(hashes) > MAX_LANDMARKS:
        raise invalid(field, f"at most {MAX_LANDMARKS} landmarks")
    times = np.asarray(times_ms, dtype=np.int64)
    if len(times) and (times.min() < 0 or times.max() > MAX_DURATION_MS):
        raise invalid(f"{field}.times_ms", f"must be from 0 to {MAX_DURATION_MS} ms")
    return np.asarray(hashes, dtype=np.uint32), times


def check_duration_ms(duration_ms: int, field: str = "duration_ms") -> None:
    if not 0 < duration_ms <= MAX_DURATION_MS:
        raise invalid(field, f"must be from 1 to {MAX_DURATION_MS} ms")


def landmark_matches(top_k: int) -> int:
    """top_k of a landmark lookup: 10 when unset."""
    if top_k == 0:
        return 10
    if not 1 <= top_k <= MAX_LANDMARK_MATCHES:
        raise invalid("top_k", f"must be between 1 and {MAX_LANDMARK_MATCHES}")
    return top_k


def label_tokens(labels: search_pb2.AudioLabels, field: str = "labels") -> tuple[str, ...]:
    """A recording's labels as tokens (labels.py), within the catalog's limits on tags and metadata."""
    catalog_validation.check_metadata(f"{field}.metadata", labels.metadata)
    if len(labels.tags) > catalog_validation.MAX_TAGS:
        raise invalid(f"{field}.tags", f"at most {catalog_validation.MAX_TAGS} tags")
    for position, tag in enumerate(labels.tags):
        catalog_validation.check_text(f"{field}.tags[{position}]", tag, catalog_validation.MAX_TAG_LABEL_CHARS)
    return tuple(labels_module.label_tokens(labels.tags, labels.metadata))


def label_filter(audio_filter: audiosearch_pb2.AudioFilter) -> str:
    """A filter as a Milvus expression over the rows' labels; empty when it filters nothing."""
    catalog_validation.check_filter(audio_filter.tags, audio_filter.metadata)
    return labels_module.label_filter(audio_filter.tags, audio_filter.metadata)
