"""Fingerprint-only retrieval under speed, tempo and pitch changes: today's peak-pair hashes against hashes of peak
triplets that a uniform scaling of time and of frequency leaves alone (issue 32), offline and without servers.

    python -m bench.landmark_invariance [--sounds DIR] [--excerpt-seconds MIN MAX] [--queries N]
                                        [--transforms NAME,...] [--designs NAME,...] [--seed N] [--json FILE]

Every sound of the folder is fingerprinted whole at the embedder's rate (32 kHz) and its hashes indexed in memory.
Queries are bench.quality's (the same recipes and seeded streams: mp3, noise at 20 dB, crop, and bench/transforms.py's
speed, tempo, pitch, reverb, noise-0dB, excerpt-1s and chain) made from a seeded sample of `--queries` sounds; with
`--excerpt-seconds MIN MAX` (the dev music: `--sounds /tmp/dev-music --excerpt-seconds 5 10`) each query is made
from an excerpt of MIN to MAX s at a random place. Each query's hashes are looked up and, per recording, the
hits vote:

    pairs     today's landmarks (audiosearch/gateway/audio/fingerprints.py), voting on the time offset (reference
              time - query time, 20 ms bins counted with their neighbours), distinct hashes counted
    triplets  a triplet design (below), voting on (time scale, offset): for each scale of a grid from 0.88 to
              1.12 in steps of 0.004 every hit proposes reference time - scale x query time; the (scale, offset)
              bin with the most distinct (hash, query time) landmarks is the recording's alignment, of equal
              counts the one whose scale is nearest 1
    both      the pairs at scale 1 and the triplets at any scale: the recording's count is the larger of the two

The recording with the largest count is the answer (ties: the one found first in the folder's order, so a tie is
not lucky). Reported per transform: top-1, the median count of the right recording, and for triplets the share
of right answers whose scale estimate is within 1 % of the truth (reference seconds per query second): the
least-squares slope of the aligned hits where they spread over at least a second, else the grid's scale.
Per design: hashes per second of audio, the extraction time per second of audio (the pairs' time included in
each triplet design's, as the product would extract both), and the median CPU time of one query's in-memory lookup
and vote (the grid's 61 scales against the pairs' one).

Triplet designs. Peaks are today's (per band, a quota per second), given sub-bin frequency and sub-frame time by a
parabola through the log power of their neighbours. Peaks of all bands are sorted by time; each anchor takes the
first `fanout` later peaks at least `min_gap` and at most `max_gap` frames away and within `octaves` of its
frequency, and makes triplets of the anchor and two of them (the first `per_anchor` pairs in the order (1,2),
(1,3), (2,3), ...). A triplet hashes the quantised log-frequency differences of its second and third peaks from
its anchor (pitch moves all three alike) and the quantised ratio of its time gaps (tempo stretches both alike),
in a hash space of its own (the top bit set) so it cannot collide with a pair.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from audiosearch.gateway.audio import fingerprints
from audiosearch.gateway.audio.decoding import AudioLimits, decode_audio
from bench import transforms
from bench.quality import WORK_RATE, Sound, Transformer, load_sounds

RATE = 32_000
OFFSET_BIN_MS = 20
SCALES = np.round(np.arange(0.88, 1.12 + 1e-9, 0.004), 4)
FACTOR_TOLERANCE = 0.01
MIN_SLOPE_MS = 1000  # aligned hits spread over less than this keep the grid's scale: a frame's jitter tilts a slope
CONTENDERS = 30
MAX_HITS_PER_HASH = 200  # as the catalog: a hash this common says nothing about any one recording
DEFAULT_TRANSFORMS = ("mp3", "noise", "crop", *transforms.NAMES)
INVARIANT_SPACE = np.uint64(1 << 31)


@dataclass(frozen=True)
class TripletDesign:
    name: str
    fanout: int = 4
    per_anchor: int = 3
    min_gap: float = 1.0  # frames between the anchor and its partners
    max_gap: float = 60.0
    min_span: float = 5.0  # frames from the anchor to the third peak: a short span makes the ratio coarse
    octaves: float = 2.0
    semitone_step: float = 2.0
    ratio_levels: int = 8
    same_band: bool = False
    anchor_cells_per_octave: float = 0.0  # the anchor's own log-frequency, this coarse (0: left out)
    loudness_order: bool = False  # which of the three peaks is the loudest, and which the quietest


# Explored on 150 dev sounds (finer steps of 1 semitone or 16 ratio levels, or spans of 8-15 frames, matched fewer
# copies: a copy's peaks move by a fraction of a bin and a frame, and a finer cell loses them); these are kept.
DESIGNS = {
    design.name: design for design in (
        TripletDesign("f4p3", fanout=4, per_anchor=3, anchor_cells_per_octave=2.0),
        TripletDesign("f4p2", fanout=4, per_anchor=2, anchor_cells_per_octave=2.0),
        TripletDesign("f3p1", fanout=3, per_anchor=1, anchor_cells_per_octave=2.0),
        TripletDesign("f5p4-span10", fanout=5, per_anchor=4, min_gap=2.0, min_span=10.0, anchor_cells_per_octave=2.0),
        TripletDesign("f4p3-loudness", fanout=4, per_anchor=3, loudness_order=True),
    )
}


@dataclass(frozen=True)
class Peaks:
    frames: np.ndarray  # float, sub-frame
    bins: np.ndarray  # float, sub-bin
    bands: np.ndarray  # int
    levels: np.ndarray  # log power


@dataclass(frozen=True)
class Hashes:
    hashes: np.ndarray  # uint32
    times_ms: np.ndarray  # int64


# ----------------------------------------------------------------------------------------------- extraction


def peaks_of(samples: np.ndarray) -> Peaks:
    """Today's peaks of every band, refined by a parabola through their neighbours' log power, sorted by time."""
    power, bin_hz = fingerprints._power_spectrogram(samples, RATE)
    floor = (max(float(power.max()) * 10 ** (-fingerprints.FLOOR_DB / 10), 10 ** (fingerprints.SILENCE_DBFS / 10))
             if power.size else 0.0)
    log_power = np.log(np.maximum(power, 1e-20))
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for band, (low_hz, high_hz) in enumerate(fingerprints.BANDS_HZ):
        low, high = int(low_hz / bin_hz), min(int(high_hz / bin_hz), power.shape[1])
        if high - low < 2:
            continue
        frames, bins = fingerprints._band_peaks(power[:, low:high], floor)
        found.append((frames, bins + low, np.full(len(frames), band)))
    if not found:
        return Peaks(np.empty(0), np.empty(0), np.empty(0, int), np.empty(0))
    frames, bins, bands = (np.concatenate(parts) for parts in zip(*found, strict=True))
    fine_frames = frames + _vertex(log_power, frames, bins, axis=0)
    fine_bins = bins + _vertex(log_power, frames, bins, axis=1)
    order = np.argsort(fine_frames, kind="stable")
    levels = log_power[frames, bins]
    return Peaks(fine_frames[order], fine_bins[order], bands[order], levels[order])


def _vertex(log_power: np.ndarray, frames: np.ndarray, bins: np.ndarray, axis: int) -> np.ndarray:
    """Where a parabola through a peak and its two neighbours along `axis` tops, relative to the peak (-0.5..0.5)."""
    limit = log_power.shape[axis] - 1
    index = frames if axis == 0 else bins
    before, after = np.clip(index - 1, 0, limit), np.clip(index + 1, 0, limit)
    centre = log_power[frames, bins]
    left = log_power[before, bins] if axis == 0 else log_power[frames, before]
    right = log_power[after, bins] if axis == 0 else log_power[frames, after]
    curvature = left - 2 * centre + right
    shift = np.where(curvature < 0, 0.5 * (left - right) / np.where(curvature < 0, curvature, -1.0), 0.0)
    return np.clip(shift, -0.5, 0.5)


def triplet_hashes(peaks: Peaks, design: TripletDesign) -> Hashes:
    count = len(peaks.frames)
    if count < 3:
        return Hashes(np.empty(0, np.uint32), np.empty(0, np.int64))
    candidates = 4 * design.fanout
    anchors = np.arange(count)[:, None]
    partners = anchors + np.arange(1, candidates + 1)[None, :]
    inside = partners < count
    partners = np.minimum(partners, count - 1)
    gap = peaks.frames[partners] - peaks.frames[anchors]
    octaves = np.log2(np.maximum(peaks.bins[partners], 0.5) / np.maximum(peaks.bins[anchors], 0.5))
    valid = inside & (gap >= design.min_gap) & (gap <= design.max_gap) & (np.abs(octaves) <= design.octaves)
    if design.same_band:
        valid &= peaks.bands[partners] == peaks.bands[anchors]
    valid &= np.cumsum(valid, axis=1) <= design.fanout
    # the k-th valid partner of each anchor, -1 where there is none
    rank = np.where(valid, np.cumsum(valid, axis=1) - 1, -1)
    chosen = np.full((count, design.fanout), -1)
    rows, columns = np.nonzero(rank >= 0)
    chosen[rows, rank[rows, columns]] = partners[rows, columns]
    combinations = [(a, b) for b in range(1, design.fanout) for a in range(b)][: design.per_anchor]
    anchor_list, second_list, third_list = [], [], []
    for first, second in combinations:
        present = (chosen[:, first] >= 0) & (chosen[:, second] >= 0)
        anchor_list.append(np.flatnonzero(present))
        second_list.append(chosen[present, first])
        third_list.append(chosen[present, second])
    anchor, second, third = (np.concatenate(parts) for parts in (anchor_list, second_list, third_list))
    span = peaks.frames[third] - peaks.frames[anchor]
    keep = span >= design.min_span
    anchor, second, third, span = anchor[keep], second[keep], third[keep], span[keep]
    ratio = (peaks.frames[second] - peaks.frames[anchor]) / span
    steps = 12 / design.semitone_step
    limit = int(np.ceil(design.octaves * steps))
    rise_second = np.round(steps * np.log2(peaks.bins[second] / peaks.bins[anchor])).astype(np.int64) + limit
    rise_third = np.round(steps * np.log2(peaks.bins[third] / peaks.bins[anchor])).astype(np.int64) + limit
    ratio_level = np.minimum((ratio * design.ratio_levels).astype(np.int64), design.ratio_levels - 1)
    width = 2 * limit + 1
    value = (rise_second * width + rise_third) * design.ratio_levels + ratio_level
    if design.loudness_order:
        levels = np.stack([peaks.levels[anchor], peaks.levels[second], peaks.levels[third]])
        value = value * 9 + np.argmax(levels, axis=0) * 3 + np.argmin(levels, axis=0)
    if design.anchor_cells_per_octave:
        hz = peaks.bins[anchor] * RATE / (1 << int(np.ceil(np.log2(fingerprints.FRAME_SECONDS * RATE))))
        value = value * 32 + np.clip(np.floor(design.anchor_cells_per_octave * np.log2(hz / 50.0)), 0, 31
                                     ).astype(np.int64)
    hashes = (INVARIANT_SPACE | value.astype(np.uint64)) & np.uint64(0xFFFFFFFF)
    times_ms = np.round(peaks.frames[anchor] * fingerprints.HOP_SECONDS * 1000).astype(np.int64)
    return Hashes(hashes.astype(np.uint32), times_ms)


def pair_hashes(samples: np.ndarray) -> Hashes:
    landmarks = fingerprints.extract_landmarks(samples, RATE)
    return Hashes(landmarks.hashes, landmarks.times_ms.astype(np.int64))


# ----------------------------------------------------------------------------------------------- index and vote


class Index:
    """Hashes of every recording, sorted for lookups."""

    def __init__(self, per_recording: list[Hashes]) -> None:
        recordings = np.concatenate([np.full(len(h.hashes), i) for i, h in enumerate(per_recording)])
        hashes = np.concatenate([h.hashes for h in per_recording]).astype(np.int64)
        times = np.concatenate([h.times_ms for h in per_recording])
        order = np.argsort(hashes, kind="stable")
        self.hashes, self.recordings, self.times = hashes[order], recordings[order], times[order]

    def hits(self, query: Hashes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(recording, hash, reference ms, query ms) of every stored landmark sharing a query hash."""
        keys = query.hashes.astype(np.int64)
        first = np.searchsorted(self.hashes, keys, side="left")
        last = np.searchsorted(self.hashes, keys, side="right")
        counts = np.where(last - first <= MAX_HITS_PER_HASH, last - first, 0)
        query_index = np.repeat(np.arange(len(keys)), counts)
        stored = np.repeat(first, counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
        return (self.recordings[stored], keys[query_index], self.times[stored], query.times_ms[query_index])


def best_alignment(hits: tuple[np.ndarray, ...], recordings: int, scales: np.ndarray, by_time: bool = True
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Per recording, the most landmarks lined up at one (scale, offset), and the scale refined by the slope of the
    hits that lined up there. A landmark is a distinct (hash, query time) with `by_time`, else a distinct hash (as
    the catalog counts pairs today). Only the CONTENDERS recordings with the most distinct hashes shared are
    aligned: the others cannot win."""
    recording, hash_value, reference_ms, query_ms = hits
    counts = np.zeros(recordings, int)
    factors = np.ones(recordings)
    if len(recording) == 0:
        return counts, factors
    _, hash_id = np.unique(hash_value, return_inverse=True)
    shared = np.bincount(np.unique(recording * (hash_id.max() + 1) + hash_id) // (hash_id.max() + 1),
                         minlength=recordings)
    contenders = np.argsort(-shared, kind="stable")[:CONTENDERS]
    keep = np.isin(recording, contenders)
    recording, hash_id, reference_ms, query_ms = recording[keep], hash_id[keep], reference_ms[keep], query_ms[keep]
    # one key per distinct (recording, scale, offset bin, query landmark); a landmark counts once per bin
    if by_time:
        _, landmark_id = np.unique(np.stack([hash_id, query_ms]), axis=1, return_inverse=True)
    else:
        landmark_id = hash_id
    landmark_id = landmark_id.ravel().astype(np.int64)
    scale_index = np.repeat(np.arange(len(scales), dtype=np.int64), len(recording))
    offset_bin = np.floor((np.tile(reference_ms, len(scales)) - scales[scale_index] * np.tile(query_ms, len(scales)))
                          / OFFSET_BIN_MS).astype(np.int64) + (1 << 22)
    group = np.tile(recording.astype(np.int64), len(scales)) * len(scales) + scale_index
    keys = np.unique((group << 23 | offset_bin) * (landmark_id.max() + 1) + np.tile(landmark_id, len(scales)))
    cells, per_cell = np.unique(keys // (landmark_id.max() + 1), return_counts=True)
    # a bin counts with its two neighbours, so an alignment on a bin edge is not split
    beside = np.zeros(len(cells), np.int64)
    for step in (-1, 1):
        found = np.minimum(np.searchsorted(cells, cells + step), len(cells) - 1)
        beside += np.where(cells[found] == cells + step, per_cell[found], 0)
    per_cell = per_cell + beside
    cell_recording = (cells >> 23) // len(scales)
    # of equal counts, the scale nearest 1: a short overlap lines up at many scales, and most copies are unchanged
    nearness = np.abs(scales[(cells >> 23) % len(scales)] - 1.0)
    order = np.lexsort((nearness, -per_cell, cell_recording))
    leaders = order[np.r_[True, cell_recording[order][1:] != cell_recording[order][:-1]]]
    counts[cell_recording[leaders]] = per_cell[leaders]
    cells = np.stack([cells >> 23, (cells & ((1 << 23) - 1)) - (1 << 22)])
    for leader in leaders:
        chosen = int(cell_recording[leader])
        scale = float(scales[int(cells[0, leader] % len(scales))])
        bins = np.floor((reference_ms - scale * query_ms) / OFFSET_BIN_MS)
        mine = (recording == chosen) & (np.abs(bins - cells[1, leader]) <= 1)
        factors[chosen] = _slope(query_ms[mine], reference_ms[mine], scale)
    return counts, factors


def _slope(query_ms: np.ndarray, reference_ms: np.ndarray, fallback: float) -> float:
    if len(query_ms) < 3 or np.ptp(query_ms) < MIN_SLOPE_MS:
        return fallback
    return float(np.polyfit(query_ms, reference_ms, 1)[0])


# ----------------------------------------------------------------------------------------------- the study


@dataclass
class Row:
    sounds: str
    transform: str
    design: str
    queries: int
    top1: float
    median_count: float
    factor_within_1pct: float | None


def prepared(sound: Sound) -> np.ndarray:
    return resample_poly(sound.samples, RATE // 100, WORK_RATE // 100).astype(np.float32)


def query_samples(audio: bytes) -> np.ndarray:
    return decode_audio(audio, RATE, AudioLimits(max_duration_seconds=3600.0)).samples


def extract(samples: np.ndarray, design: TripletDesign | None, with_pairs: bool = True) -> dict[str, Hashes]:
    found: dict[str, Hashes] = {}
    if with_pairs:
        found["pairs"] = pair_hashes(samples)
    if design is not None:
        found[design.name] = triplet_hashes(peaks_of(samples), design)
    return found


def costs(sounds: list[Sound], designs: list[TripletDesign]) -> dict[str, dict[str, float]]:
    """Per design, hashes per second of audio and extraction seconds per second of audio (pairs included)."""
    audio = [prepared(sound) for sound in sounds]
    seconds = sum(len(samples) for samples in audio) / RATE
    results: dict[str, dict[str, float]] = {}
    started = time.process_time()
    pair_count = sum(len(pair_hashes(samples).hashes) for samples in audio)
    pair_time = time.process_time() - started
    results["pairs"] = {"hashes_per_second": pair_count / seconds, "extract_ms_per_second": 1000 * pair_time / seconds}
    for design in designs:
        started = time.process_time()
        count = sum(len(triplet_hashes(peaks_of(samples), design).hashes) for samples in audio)
        spent = time.process_time() - started
        results[design.name] = {"hashes_per_second": count / seconds,
                                "extract_ms_per_second": 1000 * (pair_time + spent) / seconds}
    return results


def study(args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(args.seed)
    sounds, skipped = load_sounds(args.sounds, args.limit, rng)
    designs = [DESIGNS[name] for name in args.designs]
    print(f"{len(sounds)} sounds ({len(skipped)} skipped), {sum(s.seconds for s in sounds):.0f} s", file=sys.stderr)
    references = [prepared(sound) for sound in sounds]
    stored = {"pairs": [pair_hashes(samples) for samples in references]}
    reference_peaks = [peaks_of(samples) for samples in references]
    for design in designs:
        stored[design.name] = [triplet_hashes(peaks, design) for peaks in reference_peaks]
    indexes = {name: Index(per_recording) for name, per_recording in stored.items()}
    transformer = Transformer(sounds, args.max_query_seconds,
                              tuple(args.excerpt_seconds) if args.excerpt_seconds else None)
    rows: list[Row] = []
    vote_seconds: dict[str, list[float]] = {}
    for number, transform in enumerate(args.transforms):
        chosen = np.random.default_rng([args.seed, number]).choice(len(sounds), min(args.queries, len(sounds)),
                                                                   replace=False)
        outcomes: dict[str, list[tuple[bool, int, float | None]]] = {}
        for i in sorted(chosen):
            case = transformer.make(transform, sounds[i], str(i), np.random.default_rng([args.seed, number, int(i)]))
            samples = query_samples(case.audio)
            query_pairs = pair_hashes(samples)
            query_peaks = peaks_of(samples)
            started = time.process_time()
            pair_counts, _ = best_alignment(indexes["pairs"].hits(query_pairs), len(sounds), np.array([1.0]),
                                          by_time=False)
            vote_seconds.setdefault("pairs", []).append(time.process_time() - started)
            outcomes.setdefault("pairs", []).append(_outcome(pair_counts, None, int(i), case.time_scale))
            for design in designs:
                query = triplet_hashes(query_peaks, design)
                started = time.process_time()
                counts, factors = best_alignment(indexes[design.name].hits(query), len(sounds), SCALES)
                vote_seconds.setdefault(design.name, []).append(time.process_time() - started)
                outcomes.setdefault(design.name, []).append(_outcome(counts, factors, int(i), case.time_scale))
                both = np.maximum(counts, pair_counts)
                outcomes.setdefault(f"both/{design.name}", []).append(_outcome(both, None, int(i), case.time_scale))
        for name, results in outcomes.items():
            factor_checks = [within for right, _, within in results if right and within is not None]
            rows.append(Row(str(args.sounds), transform, name, len(results),
                            float(np.mean([right for right, _, _ in results])),
                            float(np.median([count for _, count, _ in results])),
                            float(np.mean(factor_checks)) if factor_checks else None))
        print(table([r for r in rows if r.transform == transform]), file=sys.stderr)
    costs_by_design = costs(sounds[: args.cost_sounds], designs)
    for name, spent in vote_seconds.items():
        costs_by_design[name]["vote_ms_per_query"] = 1000 * float(np.median(spent))
    return {"rows": [asdict(row) for row in rows], "costs": costs_by_design,
            "sounds": len(sounds), "audio_seconds": sum(s.seconds for s in sounds), "args": {
                key: str(value) for key, value in vars(args).items()}}


def _outcome(counts: np.ndarray, factors: np.ndarray | None, expected: int, time_scale: float
             ) -> tuple[bool, int, float | None]:
    right = bool(counts.max() > 0 and int(np.argmax(counts)) == expected)
    within = None if factors is None else bool(abs(factors[expected] / time_scale - 1) <= FACTOR_TOLERANCE)
    return right, int(counts[expected]), within


def table(rows: list[Row]) -> str:
    lines = ["| transform | hashes | queries | top-1 | median count | factor within 1 % |", "|---|---|---|---|---|---|"]
    for row in rows:
        factor = "" if row.factor_within_1pct is None else f"{row.factor_within_1pct:.2f}"
        lines.append(f"| {row.transform} | {row.design} | {row.queries} | {row.top1:.2f} | {row.median_count:g} "
                     f"| {factor} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sounds", type=Path, default=Path("/tmp/dev-sounds"))
    parser.add_argument("--excerpt-seconds", type=float, nargs=2, metavar=("MIN", "MAX"))
    parser.add_argument("--max-query-seconds", type=float, default=10.0)
    parser.add_argument("--queries", type=int, default=100, help="queries per transform (default %(default)s)")
    parser.add_argument("--transforms", type=lambda text: tuple(text.split(",")), default=DEFAULT_TRANSFORMS)
    parser.add_argument("--designs", type=lambda text: tuple(text.split(",")), default=("f4p3", "f4p2", "f3p1"),
                        help=f"triplet designs, of {', '.join(DESIGNS)}")
    parser.add_argument("--cost-sounds", type=int, default=100, help="sounds timed for the extraction cost")
    parser.add_argument("--limit", type=int, help="use at most N sounds (a seeded random choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    summary = study(args)
    costs_table = "\n".join(f"| {name} | {cost['hashes_per_second']:.0f} | {cost['extract_ms_per_second']:.2f} "
                            f"| {cost.get('vote_ms_per_query', 0.0):.1f} |" for name, cost in summary["costs"].items())
    print(table([Row(**row) for row in summary["rows"]]))
    print("\n| hashes | per second of audio | extraction ms per second of audio | lookup and vote ms per query |"
          "\n|---|---|---|---|\n" + costs_table)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
