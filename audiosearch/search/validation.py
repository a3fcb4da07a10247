"""Checks on what callers send: names and ids end up inside Milvus filter expressions, vectors in the index.

Every failure is INVALID_ARGUMENT with reason INVALID_FIELD and `field` naming the offending field."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

from audiosearch.common.errors import InvalidArgument

MAX_DIMENSION = 32_768
MAX_TOP_K = 16_384
MAX_QUERY_VECTORS = 16_384
MAX_BATCH_IDS = 1000

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
