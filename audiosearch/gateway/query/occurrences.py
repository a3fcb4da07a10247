"""Plays of recordings in a monitored feed, followed across the stretches the feed is analysed in.

A monitor searches overlapping stretches of the feed; each stretch yields at most one match per recording, with
where it sits in the feed and in the recording. A play of a recording keeps one offset (feed time minus recording
time) for as long as it lasts, so a match continues an open occurrence of its recording when their offsets agree,
or when their feed ranges overlap (audio that repeats within a recording can shift its best alignment by a
period; two plays of one recording never share feed time). Anything else starts a new occurrence: a recording
played twice is two occurrences, a three-minute play analysed in forty stretches is one. An occurrence ends when a
stretch that reaches `end_after` seconds past its end no longer aligns with it: had the play gone on, that stretch
would have found it.

A search answers which recordings a clip is like; a monitor answers what plays when. Where one recording's
landmarks line up over a part of the feed, another recording that only sounds like that part (its embedding
cleared the score threshold, its landmarks did not), or whose landmarks there are a small fraction of the first
one's (chance, or a sound the two share), is not a second play: such a match of a stretch is dominated and
dropped before tracking. Two recordings mixed together keep both: each brings landmarks of its own.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from audiosearch.gateway.query.matching import Evidence

# Offsets of one play found in different stretches differ by the alignment's precision: a frame for landmarks,
# a query window's hop or a fraction of a stored window for embeddings.
OFFSET_TOLERANCE_SECONDS = 1.0
# Feed ranges of two matches that share this much belong to one play, whatever their offsets.
SAME_PLAY_OVERLAP_SECONDS = 0.5
# An occurrence ends once a stretch reaching this far past its end (a stored window) does not align with it.
END_AFTER_SECONDS = 2.0
# A match lying this much (a share of its feed range) under another recording's match is dominated by it when
# that one's landmarks decided it and, if its own landmarks did too, it has this many times as many.
DOMINATED_OVERLAP = 0.5
DOMINANT_LANDMARK_RATIO = 4.0
_EVIDENCE_RANK = {Evidence.EMBEDDING: 0, Evidence.LANDMARKS: 1, Evidence.BOTH: 2}


@dataclass(frozen=True)
class StretchMatch:
    """One recording's match in one stretch, in feed seconds."""

    audio_id: str
    feed_range: tuple[float, float]
    reference_range: tuple[float, float]
    score: float
    landmarks: int
    landmark_share: float
    evidence: Evidence

    @property
    def offset(self) -> float:
        return self.feed_range[0] - self.reference_range[0]


@dataclass(frozen=True)
class Occurrence:
    """One play: the union of the ranges of its matches; its evidence is that of its strongest match."""

    detection_id: str
    audio_id: str
    offset: float
    feed_range: tuple[float, float]
    reference_range: tuple[float, float]
    strongest: StretchMatch

    def continued_by(self, match: StretchMatch, tolerance: float, overlap: float) -> bool:
        if match.audio_id != self.audio_id:
            return False
        shared = min(self.feed_range[1], match.feed_range[1]) - max(self.feed_range[0], match.feed_range[0])
        return abs(match.offset - self.offset) <= tolerance or shared >= overlap

    def extended(self, match: StretchMatch) -> Occurrence:
        strongest = self.strongest if _strength(self.strongest) >= _strength(match) else match
        return replace(
            self,
            offset=strongest.offset,
            feed_range=(min(self.feed_range[0], match.feed_range[0]), max(self.feed_range[1], match.feed_range[1])),
            reference_range=(min(self.reference_range[0], match.reference_range[0]),
                             max(self.reference_range[1], match.reference_range[1])),
            strongest=strongest,
        )


def _strength(match: StretchMatch) -> tuple[int, int, float]:
    return _EVIDENCE_RANK[match.evidence], match.landmarks, match.score


def without_dominated(matches: Sequence[StretchMatch]) -> list[StretchMatch]:
    """The matches of one stretch that no other recording's match dominates there."""
    return [match for match in matches if not any(_dominates(other, match) for other in matches)]


def _dominates(strong: StretchMatch, weak: StretchMatch) -> bool:
    if strong.audio_id == weak.audio_id or strong.evidence is Evidence.EMBEDDING:
        return False
    shared = min(strong.feed_range[1], weak.feed_range[1]) - max(strong.feed_range[0], weak.feed_range[0])
    if shared < DOMINATED_OVERLAP * max(weak.feed_range[1] - weak.feed_range[0], 0.0):
        return False
    return weak.evidence is Evidence.EMBEDDING or strong.landmarks >= DOMINANT_LANDMARK_RATIO * weak.landmarks


class OccurrenceState(enum.Enum):
    STARTED = "started"
    ENDED = "ended"


@dataclass(frozen=True)
class OccurrenceEvent:
    state: OccurrenceState
    occurrence: Occurrence


class OccurrenceTracker:
    """The open occurrences of one feed; `observe` each stretch's matches in feed order, `finish` at its end."""

    def __init__(self, offset_tolerance: float = OFFSET_TOLERANCE_SECONDS,
                 same_play_overlap: float = SAME_PLAY_OVERLAP_SECONDS, end_after: float = END_AFTER_SECONDS,
                 new_id: Callable[[], str] = lambda: uuid.uuid4().hex) -> None:
        self._tolerance = offset_tolerance
        self._overlap = same_play_overlap
        self._end_after = end_after
        self._new_id = new_id
        self._open: dict[str, Occurrence] = {}

    @property
    def open(self) -> list[Occurrence]:
        return list(self._open.values())

    def observe(self, stretch_end: float, matches: Sequence[StretchMatch]) -> list[OccurrenceEvent]:
        """The occurrences that start with this stretch (ending at feed second `stretch_end`), and those that end
        because it no longer aligns with them."""
        events: list[OccurrenceEvent] = []
        continued: set[str] = set()
        for match in sorted(without_dominated(matches), key=lambda match: match.feed_range[0]):
            occurrence = self._continued(match, continued)
            if occurrence is None:
                occurrence = Occurrence(self._new_id(), match.audio_id, match.offset, match.feed_range,
                                        match.reference_range, match)
                events.append(OccurrenceEvent(OccurrenceState.STARTED, occurrence))
            else:
                occurrence = occurrence.extended(match)
            self._open[occurrence.detection_id] = occurrence
            continued.add(occurrence.detection_id)
        for detection_id, occurrence in list(self._open.items()):
            if detection_id not in continued and stretch_end - occurrence.feed_range[1] >= self._end_after:
                events.append(OccurrenceEvent(OccurrenceState.ENDED, self._open.pop(detection_id)))
        return events

    def finish(self) -> list[OccurrenceEvent]:
        """Ends every open occurrence (the feed is over), earliest first."""
        ended = sorted(self._open.values(), key=lambda occurrence: occurrence.feed_range[0])
        self._open.clear()
        return [OccurrenceEvent(OccurrenceState.ENDED, occurrence) for occurrence in ended]

    def _continued(self, match: StretchMatch, taken: set[str]) -> Occurrence | None:
        """The open occurrence this match continues (not one another match of this stretch continued)."""
        for occurrence in self._open.values():
            if occurrence.detection_id not in taken and occurrence.continued_by(match, self._tolerance,
                                                                                 self._overlap):
                return occurrence
        return None
