"""Matching landmarks: the time offset at which a query's landmarks line up with a recording's.

The gateway extracts landmarks (audiosearch/gateway/audio/fingerprints.py); the landmark index (landmark_index.py)
finds the stored windows that share hashes with a query, and this module turns their hits into a vote per
recording, and counts what could have lined up over the overlap (the part of the query that lies on the recording
at the vote's offset): the query's landmarks there, and the recording's.
"""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

OFFSET_BIN_MS = 20
# Fewer aligned landmarks than this make no match and do not stand out (the gateway's floors are 6 and more), so
# the recording's own landmarks over such a vote's overlap are not counted: that takes a query per recording.
COUNTED_FROM_LANDMARKS = 6

_Hit = tuple[int, int, int]  # hash, time in the query, time in the recording minus time in the query


@dataclass(frozen=True)
class LandmarkVote:
    audio_id: str
    landmarks: int  # distinct hashes at the best offset
    offset_ms: int  # time in the recording minus time in the query
    query_start_ms: int
    query_end_ms: int
    overlap_landmarks: int = 0  # distinct hashes of the query over the overlap
    recording_overlap_landmarks: int = 0  # distinct hashes of the recording over the overlap


def vote(hits: list[tuple[str, int, int, int]]) -> list[LandmarkVote]:
    """Per recording, the time offset at which most distinct hashes line up, most landmarks first.

    `hits` are (audio id, hash, time in the recording, time in the query), all in milliseconds. An offset bin
    counts with its two neighbours, so an alignment that falls on a bin edge is not split in two. Distinct hashes,
    not hits, are counted: a steady tone repeats one hash at every frame and would otherwise line up anywhere.
    """
    by_audio: dict[str, dict[int, list[_Hit]]] = {}
    for audio_id, hash_value, reference_ms, query_ms in hits:
        offset_ms = reference_ms - query_ms
        by_audio.setdefault(audio_id, {}).setdefault(offset_ms // OFFSET_BIN_MS, []).append(
            (hash_value, query_ms, offset_ms))
    votes = [_best_offset(audio_id, bins) for audio_id, bins in by_audio.items()]
    return sorted(votes, key=lambda v: (-v.landmarks, v.audio_id))


def with_overlaps(votes: list[LandmarkVote], hashes: Sequence[int], times_ms: Sequence[int],
                  durations_ms: Mapping[str, int], recording_landmarks: Callable[[str, int, int], int]
                  ) -> list[LandmarkVote]:
    """Each vote with what could have lined up over its overlap, so that the share that did does not grow with the
    length of the query: the distinct hashes of the query (`hashes` at `times_ms`) whose time, moved by the vote's
    offset, falls within the recording (0 to its duration), and those of the recording over the same span
    (`recording_landmarks(audio id, first ms, last ms)`; 0 for a vote of fewer than COUNTED_FROM_LANDMARKS)."""
    by_time = sorted(zip(times_ms, hashes, strict=True))
    times = [time_ms for time_ms, _ in by_time]

    def with_overlap(vote: LandmarkVote) -> LandmarkVote:
        first = bisect.bisect_left(times, -vote.offset_ms)
        last = bisect.bisect_right(times, durations_ms.get(vote.audio_id, 0) - vote.offset_ms)
        if first >= last:
            return vote
        query_landmarks = len({hash_value for _, hash_value in by_time[first:last]})
        if vote.landmarks < COUNTED_FROM_LANDMARKS:
            return replace(vote, overlap_landmarks=query_landmarks)
        on_recording = recording_landmarks(vote.audio_id, times[first] + vote.offset_ms,
                                           times[last - 1] + vote.offset_ms)
        return replace(vote, overlap_landmarks=query_landmarks, recording_overlap_landmarks=on_recording)

    return [with_overlap(vote) for vote in votes]


def _best_offset(audio_id: str, bins: dict[int, list[_Hit]]) -> LandmarkVote:
    def aligned(offset_bin: int) -> list[_Hit]:
        return [hit for near in (offset_bin - 1, offset_bin, offset_bin + 1) for hit in bins.get(near, ())]

    def strength(offset_bin: int) -> tuple[int, int, int]:
        return len({hit[0] for hit in aligned(offset_bin)}), len(bins[offset_bin]), -offset_bin

    best = aligned(max(bins, key=strength))
    query_times = [hit[1] for hit in best]
    return LandmarkVote(audio_id, len({hit[0] for hit in best}), int(statistics.median_low(hit[2] for hit in best)),
                        min(query_times), max(query_times))
