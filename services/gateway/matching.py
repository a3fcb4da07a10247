"""Turning segment hits into matches per recording, with where they sit in the reference and the query.

Segments of the query that line up in time with segments of one recording vote together: each hit proposes
an offset (reference start - query start). For every recording the offset whose agreeing hits (the best one per
query segment, within a tolerance) have the largest summed score wins; that group is the match. Its offset is
then refined from its best-aligned hits, and the ranges follow from it: the query range is the span of the
group's query segments, the reference range that span moved by the offset, both cut to where the recording has
content (a sound that starts inside the query starts at reference 0, not before).

The score is the mean similarity over every query segment that the alignment puts inside the recording, not
only over those that found their partner: a segment whose aligned partner is not among its hits counts with
the lowest score it was returned (an upper bound of the missing one). So one lucky window of a recording cannot
outscore a recording that lines up with the whole query.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np


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
    lowest: dict[int, float] = {}
    for hit in hits:
        by_recording[hit.audio_id].append(hit)
        lowest[hit.query_index] = min(hit.score, lowest.get(hit.query_index, hit.score))
    matches = [_best_alignment(audio_id, recording_hits, query_segments, offset_tolerance, lowest)
               for audio_id, recording_hits in by_recording.items()]
    return sorted(matches, key=lambda match: (-match.score, -match.matched_segments, match.audio_id))


def _best_alignment(
    audio_id: str, hits: list[SegmentHit], query_segments: list[QuerySegment], tolerance: float,
    lowest: dict[int, float],
) -> RecordingMatch:
    query_index = np.array([hit.query_index for hit in hits])
    scores = np.array([hit.score for hit in hits])
    offsets = np.array([hit.reference_start - query_segments[hit.query_index].start for hit in hits])
    candidates = np.unique(np.round(offsets, 3))
    # agree[c, h]: hit h votes for candidate offset c; per candidate keep each query segment's best vote.
    agree = np.abs(offsets[None, :] - candidates[:, None]) <= tolerance + 1e-9
    segments = np.unique(query_index)
    best = np.full((len(candidates), len(segments)), -np.inf)
    column = np.searchsorted(segments, query_index)
    rows, voters = np.nonzero(agree)
    np.maximum.at(best, (rows, column[voters]), scores[voters])
    support = np.where(np.isfinite(best), best, 0.0).sum(axis=1)
    winner = int(np.argmax(support))
    group = _group(hits, agree[winner], scores)
    offset = _refined_offset(group, query_segments)
    # Query segments the alignment puts on the recording's segments seen in the hits, matched or not.
    starts = [hit.reference_start for hit in hits]
    inside = {index for index, segment in enumerate(query_segments)
              if min(starts) - tolerance <= segment.start + offset <= max(starts) + tolerance}
    missing = [index for index in inside - {hit.query_index for hit in group} if index in lowest]
    score = (sum(hit.score for hit in group) + sum(lowest[index] for index in missing)) / (len(group) + len(missing))
    return _match(audio_id, group, query_segments, offset, score)


def _group(hits: list[SegmentHit], votes: np.ndarray, scores: np.ndarray) -> list[SegmentHit]:
    """The best agreeing hit of each query segment."""
    best: dict[int, SegmentHit] = {}
    for index in np.flatnonzero(votes):
        hit = hits[index]
        current = best.get(hit.query_index)
        if current is None or hit.score > current.score:
            best[hit.query_index] = hit
    return list(best.values())


def _match(audio_id: str, group: list[SegmentHit], query_segments: list[QuerySegment], offset: float,
           score: float) -> RecordingMatch:
    spans = [query_segments[hit.query_index] for hit in group]
    query_start, query_end = min(span.start for span in spans), max(span.end for span in spans)
    # The reference has content only where its matched segments are; cut both ranges to that.
    reference_start = max(query_start + offset, min(hit.reference_start for hit in group))
    reference_end = min(query_end + offset, max(hit.reference_end for hit in group))
    if reference_end <= reference_start:  # looped short windows: the whole matched reference segment
        reference_start = min(hit.reference_start for hit in group)
        reference_end = max(hit.reference_end for hit in group)
    return RecordingMatch(
        audio_id=audio_id,
        score=float(score),
        reference_range=(reference_start, reference_end),
        query_range=(max(query_start, reference_start - offset), min(query_end, reference_end - offset)),
        matched_segments=len(group),
    )


def _refined_offset(group: list[SegmentHit], query_segments: list[QuerySegment]) -> float:
    """The offset of the best-aligned hits: those within a hair of the group's best score."""
    top = max(hit.score for hit in group)
    near = [hit for hit in group if hit.score >= top - 0.01]
    return float(np.median([hit.reference_start - query_segments[hit.query_index].start for hit in near]))
