"""Turning segment hits into matches per recording, with where they sit in the reference and the query.

Segments of the query that line up in time with segments of one recording vote together: each hit proposes
an offset (reference start - query start). Queries are cut at a finer hop than recordings, so several query
segments reach each stored one, and the best-aligned of them speaks for it. For every recording the offset whose
agreeing hits (the best one per stored segment, within a tolerance) have the largest summed score wins; that group
is the match. Its offset is then refined from its best-aligned hits, and the ranges follow from it: the query
range is the span of the group's query segments widened by up to one stored hop on each side (audio between
stored windows), the reference range that span moved by the offset, both cut to the query and to where the
recording has content (a sound that starts inside the query starts at reference 0, not before).

The score is the mean similarity over every stored segment that the alignment puts under the query, not only
over those that were found: a stored segment missing from the hits counts with the lowest score its aligned query
segment was returned (an upper bound of the missing one). So one lucky window of a recording cannot outscore a
recording that lines up with the whole query.

Landmarks decide a match on two counts: enough of them line up (a handful line up by chance in any short
overlap), and a large enough share of what could have lined up over the overlap (the part of the query that lies on
the recording at their offset) did. Of two shares, the larger: of the query's landmarks there (a query cut from the
recording, or one that lost bands of it) and of the recording's (a recording inside a longer query, or under added
sound, which brings landmarks of its own). Each is taken at a one-sided 95 % lower confidence bound, so a few
landmarks of a short overlap count for less than their ratio; unlike the count, the share does not grow with the
query's length, so one threshold serves a 1 s clip and a 30 s excerpt.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from dataclasses import dataclass, replace

import numpy as np
from scipy.stats import beta

LEADING_LANDMARKS = 6
LEADING_RATIO = 2.0
SHARE_CONFIDENCE = 0.95


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
    landmarks: int = 0
    landmark_share: float = 0.0


@dataclass(frozen=True)
class LandmarkAlignment:
    audio_id: str
    landmarks: int
    offset_seconds: float  # time in the recording minus time in the query
    query_range: tuple[float, float]
    share: float = 0.0  # landmark_shares of the overlap: the larger of the query's and the recording's


@dataclass(frozen=True)
class LandmarkThresholds:
    """Landmarks make a match when at least `count` line up and their share reaches `share` (0: the count alone).
    A count of 0 turns landmarks off."""

    count: int
    share: float = 0.0

    def confirm(self, landmarks: int, share: float) -> bool:
        return self.count > 0 and landmarks >= self.count and share >= self.share


class Evidence(enum.Enum):
    """Which evidence made a candidate a match."""

    EMBEDDING = "embedding"
    LANDMARKS = "landmarks"
    BOTH = "both"


def landmark_shares(aligned: np.ndarray, overlap: np.ndarray) -> np.ndarray:
    """The share of the query's `overlap` landmarks that line up, `aligned` of them, at its one-sided 95 % lower
    (Clopper-Pearson) confidence bound: 8 of 40 give 0.10 where the ratio is 0.20, 80 of 400 give 0.17, 8 of 80
    give 0.05. 0 where nothing lines up or the overlap is unknown (0)."""
    aligned = np.asarray(aligned, dtype=float)
    known = (aligned > 0) & (np.asarray(overlap) > 0)
    overlap = np.maximum(np.asarray(overlap, dtype=float), aligned)  # the offset bins' edges can add one or two
    bounds = beta.ppf(1 - SHARE_CONFIDENCE, np.where(known, aligned, 1.0), np.where(known, overlap - aligned + 1, 1.0))
    return np.where(known, bounds, 0.0)


def decided_by(match: RecordingMatch, score_threshold: float, landmarks: LandmarkThresholds) -> Evidence | None:
    """The evidence that makes `match` a match at these thresholds; None when neither does."""
    by_score = match.score >= score_threshold
    by_landmarks = landmarks.confirm(match.landmarks, match.landmark_share)
    if by_score and by_landmarks:
        return Evidence.BOTH
    if by_landmarks:
        return Evidence.LANDMARKS
    return Evidence.EMBEDDING if by_score else None


def aggregate_matches(
    hits: list[SegmentHit], query_segments: list[QuerySegment], offset_tolerance: float, reference_hop: float
) -> list[RecordingMatch]:
    """One match per recording, best first. `reference_hop` is the stored segments' hop."""
    by_recording: dict[str, list[SegmentHit]] = defaultdict(list)
    lowest: dict[int, float] = {}
    for hit in hits:
        by_recording[hit.audio_id].append(hit)
        lowest[hit.query_index] = min(hit.score, lowest.get(hit.query_index, hit.score))
    matches = [_best_alignment(audio_id, recording_hits, query_segments, offset_tolerance, reference_hop, lowest)
               for audio_id, recording_hits in by_recording.items()]
    return sorted(matches, key=lambda match: (-match.score, -match.matched_segments, match.audio_id))


def _best_alignment(
    audio_id: str, hits: list[SegmentHit], query_segments: list[QuerySegment], tolerance: float,
    reference_hop: float, lowest: dict[int, float],
) -> RecordingMatch:
    query_starts = np.array([segment.start for segment in query_segments])
    reference_starts = np.array([hit.reference_start for hit in hits])
    scores = np.array([hit.score for hit in hits])
    offsets = reference_starts - query_starts[[hit.query_index for hit in hits]]
    candidates = np.unique(np.round(offsets, 3))
    # agree[c, h]: hit h votes for candidate offset c; per candidate keep each reference segment's best vote
    # (queries are cut finer than recordings, so several query windows reach one stored window; the best-aligned
    # one speaks for it).
    agree = np.abs(offsets[None, :] - candidates[:, None]) <= tolerance + 1e-9
    references, column = np.unique(reference_starts, return_inverse=True)
    best = np.full((len(candidates), len(references)), -np.inf)
    rows, voters = np.nonzero(agree)
    np.maximum.at(best, (rows, column[voters]), scores[voters])
    support = np.where(np.isfinite(best), best, 0.0).sum(axis=1)
    group = _group(hits, agree[int(np.argmax(support))])
    offset = _refined_offset(group, query_starts)
    missing = _missing_scores(group, references, offset, query_starts, tolerance, reference_hop, lowest)
    score = (sum(hit.score for hit in group) + sum(missing)) / (len(group) + len(missing))
    extent = (float(references[0]), max(hit.reference_end for hit in hits))
    return _match(audio_id, group, query_segments, offset, score, extent, reference_hop)


def _missing_scores(
    group: list[SegmentHit], references: np.ndarray, offset: float, query_starts: np.ndarray, tolerance: float,
    reference_hop: float, lowest: dict[int, float],
) -> list[float]:
    """For each stored window between the recording's first and last seen ones that the alignment puts under a
    query window but that is not in the group: the lowest score that query window was returned."""
    grid = np.arange(np.ceil(references[0] / reference_hop - 1e-9), np.floor(references[-1] / reference_hop + 1e-9)
                     + 1) * reference_hop
    expected = np.unique(np.concatenate([references, grid]))
    matched = np.array([hit.reference_start for hit in group])
    scores: list[float] = []
    for start in expected:
        if np.min(np.abs(matched - start)) <= 1e-6:
            continue
        nearest = int(np.argmin(np.abs(query_starts - (start - offset))))
        if abs(query_starts[nearest] - (start - offset)) <= tolerance + 1e-9 and nearest in lowest:
            scores.append(lowest[nearest])
    return scores


def _group(hits: list[SegmentHit], votes: np.ndarray) -> list[SegmentHit]:
    """The best agreeing hit of each reference segment."""
    best: dict[float, SegmentHit] = {}
    for index in np.flatnonzero(votes):
        hit = hits[index]
        current = best.get(hit.reference_start)
        if current is None or hit.score > current.score:
            best[hit.reference_start] = hit
    return list(best.values())


def _match(audio_id: str, group: list[SegmentHit], query_segments: list[QuerySegment], offset: float,
           score: float, extent: tuple[float, float], reference_hop: float) -> RecordingMatch:
    spans = [query_segments[hit.query_index] for hit in group]
    # Stored windows sit a hop apart, so up to a hop of the query on either side of the matched windows can lie
    # on the recording with no stored window of its own under it: the range reaches that far, within the query
    # and within the recording as far as its hits show it (`extent`).
    query_start = max(min(span.start for span in spans) - reference_hop, query_segments[0].start)
    query_end = min(max(span.end for span in spans) + reference_hop, max(span.end for span in query_segments))
    reference_start = max(query_start + offset, extent[0])
    reference_end = min(query_end + offset, extent[1])
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


def _refined_offset(group: list[SegmentHit], query_starts: np.ndarray) -> float:
    """The offset of the best-aligned hits: those within a hair of the group's best score."""
    top = max(hit.score for hit in group)
    near = [hit for hit in group if hit.score >= top - 0.01]
    return float(np.median([hit.reference_start - query_starts[hit.query_index] for hit in near]))


def with_landmarks(
    matches: list[RecordingMatch], alignments: list[LandmarkAlignment], thresholds: LandmarkThresholds,
    reference_hop: float,
) -> list[RecordingMatch]:
    """Embedding matches and landmark alignments, one per recording, ranked.

    Recordings whose landmarks reach the `thresholds` come first, most landmarks first.
    Next comes the recording with the most landmarks when it stands out (at least LEADING_LANDMARKS, and
    LEADING_RATIO times as many as any other): under the threshold that is not enough to call a match, but more
    than chance gives any one recording. Both carry the ranges of their landmark alignment, exact to a frame where
    the embedding's are exact to a window. The others keep the embedding's order. A recording found by its
    landmarks alone has score 0. A count threshold of 0 turns landmarks off: the embedding's order stands.
    """
    by_audio = {alignment.audio_id: alignment for alignment in alignments}
    ahead = {a.audio_id for a in alignments if thresholds.confirm(a.landmarks, a.share)}
    leader = _leader(alignments) if thresholds.count > 0 else None
    if leader is not None:
        ahead.add(leader)
    fused = [_with_alignment(match, by_audio.pop(match.audio_id, None), match.audio_id in ahead, reference_hop)
             for match in matches]
    fused += [_with_alignment(RecordingMatch(a.audio_id, 0.0, (0.0, 0.0), (0.0, 0.0), 0), a, True, reference_hop)
              for a in by_audio.values() if a.audio_id in ahead]

    def rank(match: RecordingMatch) -> tuple:
        confirmed = thresholds.confirm(match.landmarks, match.landmark_share)
        return (not confirmed, match.audio_id != leader, -match.landmarks if confirmed else 0, -match.score,
                -match.matched_segments, match.audio_id)

    return sorted(fused, key=rank)


def _leader(alignments: list[LandmarkAlignment]) -> str | None:
    ranked = sorted(alignments, key=lambda a: -a.landmarks)
    if not ranked or ranked[0].landmarks < LEADING_LANDMARKS:
        return None
    runner_up = ranked[1].landmarks if len(ranked) > 1 else 0
    return ranked[0].audio_id if ranked[0].landmarks >= LEADING_RATIO * runner_up else None


def _with_alignment(match: RecordingMatch, alignment: LandmarkAlignment | None, aligned_by_landmarks: bool,
                    reference_hop: float) -> RecordingMatch:
    """The match with its landmarks; aligned by them, it takes their offset. Landmarks mark where peaks start,
    so they stop short of the matched audio's end: where the embedding's alignment agrees (within a stored hop),
    the ranges cover both."""
    if alignment is None:
        return match
    if not aligned_by_landmarks:
        return replace(match, landmarks=alignment.landmarks, landmark_share=alignment.share)
    offset = alignment.offset_seconds
    query_start, query_end = alignment.query_range
    embedding_offset = match.reference_range[0] - match.query_range[0]
    if match.matched_segments and abs(embedding_offset - offset) <= reference_hop + 1e-6:
        query_start, query_end = min(query_start, match.query_range[0]), max(query_end, match.query_range[1])
    query_start = max(query_start, -offset)  # the recording starts at 0
    query_end = max(query_end, query_start)
    return replace(match, landmarks=alignment.landmarks, landmark_share=alignment.share,
                   query_range=(query_start, query_end), reference_range=(query_start + offset, query_end + offset))
