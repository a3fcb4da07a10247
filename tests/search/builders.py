"""Test data for the search service: random unit vectors, segments, unique collection names."""

from __future__ import annotations

import uuid

import numpy as np

from audiosearch.search.store import Segment
from audiosearch.search.v1 import search_pb2

DIM = 64


def unit_vectors(count: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def new_collection_name(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def new_audio_id() -> str:
    return uuid.uuid4().hex


def segments_for(vectors: np.ndarray, audio_ids: list[str], first_id: int = 1) -> list[Segment]:
    """One segment per vector, spread round-robin over the recordings, one second each."""
    return [
        Segment(first_id + index, audio_ids[index % len(audio_ids)], float(index), float(index + 1), vector)
        for index, vector in enumerate(vectors)
    ]


def as_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def segment_to_proto(segment: Segment) -> search_pb2.SegmentVector:
    return search_pb2.SegmentVector(
        segment_id=segment.segment_id, audio_id=segment.audio_id, start_seconds=segment.start_s,
        end_seconds=segment.end_s, vector=as_bytes(segment.vector),
    )


def brute_force_top_k(vectors: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    """Row indexes of the k largest inner products, best first."""
    return [int(i) for i in np.argsort(-(vectors @ query), kind="stable")[:k]]
