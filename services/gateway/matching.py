"""Turning segment hits into matches per recording, with where they sit in the reference and the query.

Segments of the query that line up in time with segments of one recording vote together: each hit proposes
an offset (reference start - query start); the offset with the most support wins, and the match is the set
of query segments whose best hit agrees with it within a tolerance.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass


@dataclass(frozen=True)
class SegmentHit:
    query_index: int
    audio_id: str
    reference_start: float
    reference_end: float
    score: float


@dataclass(frozen=True)
class QuerySegment:
    start: float
    end: float


@dataclass(frozen=True)
class RecordingMatch:
    audio_id: str
    score: float
    reference_range: tuple[float, float]
    query_range: tuple[float, float]
    matched_segments: int


def aggregate_matches(
    hits: list[SegmentHit], query_segments: list[QuerySegment], offset_tolerance: float
) -> list[RecordingMatch]:
    """One match per recording, best first."""
    by_recording: dict[str, list[SegmentHit]] = defaultdict(list)
    for hit in hits:
        by_recording[hit.audio_id].append(hit)
    matches = [_best_alignment(audio_id, recording_hits, query_segments, offset_tolerance)
               for audio_id, recording_hits in by_recording.items()]
    return sorted(matches, key=lambda match: (-match.score, -match.matched_segments, match.audio_id))


def _offset(hit: SegmentHit, query_segments: list[QuerySegment]) -> float:
    return hit.reference_start - query_segments[hit.query_index].start


def _aligned_hits(
    hits: list[SegmentHit], offset: float, query_segments: list[QuerySegment], tolerance: float
) -> list[SegmentHit]:
    """For each query segment, its best hit whose offset agrees with `offset`."""
    best: dict[int, SegmentHit] = {}
    for hit in hits:
        if abs(_offset(hit, query_segments) - offset) <= tolerance:
            current = best.get(hit.query_index)
            if current is None or hit.score > current.score:
                best[hit.query_index] = hit
    return list(best.values())


def _best_alignment(
    audio_id: str, hits: list[SegmentHit], query_segments: list[QuerySegment], tolerance: float
) -> RecordingMatch:
    candidates = {round(_offset(hit, query_segments), 3) for hit in hits}
    best_group: list[SegmentHit] = []
    best_support = float("-inf")
    for offset in sorted(candidates):
        group = _aligned_hits(hits, offset, query_segments, tolerance)
        support = sum(hit.score for hit in group)
        if support > best_support:
            best_group, best_support = group, support
    query_spans = [query_segments[hit.query_index] for hit in best_group]
    return RecordingMatch(
        audio_id=audio_id,
        score=best_support / len(best_group),
        reference_range=(min(hit.reference_start for hit in best_group),
                         max(hit.reference_end for hit in best_group)),
        query_range=(min(span.start for span in query_spans), max(span.end for span in query_spans)),
        matched_segments=len(best_group),
    )
