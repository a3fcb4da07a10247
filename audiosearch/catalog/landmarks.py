"""Matching landmarks: the time offset at which a query's landmarks line up with a recording's.

The gateway extracts landmarks (audiosearch/gateway/audio/fingerprints.py); the catalog keeps them beside the
records and looks them up, and this module turns the hits of one lookup into a vote per recording.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

OFFSET_BIN_MS = 20

_Hit = tuple[int, int, int]  # hash, time in the query, time in the recording minus time in the query


@dataclass(frozen=True)
class LandmarkVote:
    audio_id: str
    landmarks: int  # distinct hashes at the best offset
    offset_ms: int  # time in the recording minus time in the query
    query_start_ms: int
    query_end_ms: int


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


def _best_offset(audio_id: str, bins: dict[int, list[_Hit]]) -> LandmarkVote:
    def aligned(offset_bin: int) -> list[_Hit]:
        return [hit for near in (offset_bin - 1, offset_bin, offset_bin + 1) for hit in bins.get(near, ())]

    def strength(offset_bin: int) -> tuple[int, int, int]:
        return len({hit[0] for hit in aligned(offset_bin)}), len(bins[offset_bin]), -offset_bin

    best = aligned(max(bins, key=strength))
    query_times = [hit[1] for hit in best]
    return LandmarkVote(audio_id, len({hit[0] for hit in best}), int(statistics.median_low(hit[2] for hit in best)),
                        min(query_times), max(query_times))
