"""Search quality on a folder of real sounds, measured through the public gRPC API.

    python -m bench.quality [--sounds DIR] [--split random|families] [--transforms NAME,...] [--seed N]
                            [--limit N] [--gateway ADDR] [--precision P] [--excerpt-seconds MIN MAX] [--json FILE]

Indexes 80 % of the sounds (the files as they ship), holds 20 % back, calibrates the collection
(CalibrateCollection) at the CLI's default target false-positive rate (0.01) and at `--target-fpr` (0.05; this
calibration stays), then queries with transformed copies of indexed sounds:

    mp3       re-encoded as mp3 at 96 kbit/s
    gain      multiplied by 0.6
    crop      a random sub-range of at least 1 s (the whole clip if shorter)
    noise     white noise added at 20 dB SNR
    telephone band-passed to 300-3400 Hz
    8k        resampled to 8 kHz and sent so (the gateway brings it back up)
    offset    placed at a random offset inside a longer recording made of held-back sounds 20 dB lower
    mix       mixed with a held-back sound 10 dB lower
    speed     3 % faster or slower, resampled (pitch and tempo move together)
    tempo     5 % faster or slower with the pitch kept (rubberband)
    pitch     1 semitone up or down with the tempo kept (rubberband)
    reverb    heard in a synthetic room, RT60 0.6 s, the direct sound kept
    noise-0dB white noise added at 0 dB SNR
    excerpt-1s 1 s from a random place (the whole sound if shorter)
    chain     speed +2 %, then mp3, then white noise at 10 dB SNR

The last seven are bench/transforms.py's (its docstring gives each recipe); whether speed, tempo and pitch go up
or down is drawn from each query's stream, and the outcome records which (`variant` in --json).

With `--excerpt-seconds MIN MAX` (the dev music: `--sounds /tmp/dev-music --excerpt-seconds 5 10`) the recordings
are still indexed whole, but every query, the held-back ones included, is made from an excerpt of MIN to MAX s
at a random place (drawn from the query's stream): the transforms apply to the excerpt, and the alignment is
reported for every transform. Where speed or tempo changes the pace, the alignment is measured against the
scaled truth: query time t holds reference time (where the query starts) + t x the speed factor.

Each transform is applied to a seeded sample of `--queries` indexed sounds (default 100; 0 takes them all; every
query has its own random stream, so a smaller sample holds the same queries). A query is the whole sound, or
its first `--max-query-seconds` when longer (the crop takes its range from the whole sound). Per transform it
reports the top-1 hit rate and recall@10 (ranking alone, before any threshold),
the rate at which the right recording comes first *and* clears the calibrated thresholds (its score, or its aligned
landmarks: their count and their share), at each target, and for crop, offset and excerpt-1s (every transform with
--excerpt-seconds)
the fraction whose alignment (reference time minus query time of the matched ranges) is within one hop of the
truth, and within 0.5 s (a yardstick that does not move with the hop). Held-back sounds, as they are and once
transformed, measure the true-negative rate at each target's thresholds: none of their matches may clear them.
The ranking is the one under the last calibration (`--target-fpr`), whose thresholds order the matches.

`--split random` (the default) holds back a random fifth of the files. `--split families` is a catalog with
variants: files that differ only by a trailing number (`Water1.wav` .. `Water5.wav`, `wp_noammo-01.wv` ..) are one
family of takes, and a family is indexed or held back whole, so the catalog holds every take of its families
and a held-back sound has no sibling in it.

By default it starts its own suite on free ports in a temporary state directory (Milvus Lite, SQLite); the
embedder uses EMBEDDER_CHECKPOINT_PATH, or var/models/Cnn14_mAP=0.431.pth, or untrained weights when there
is none, so the same command measures the real model where the checkpoint is present. With untrained weights it
measures the pipeline (decoding, resampling, segmentation, aggregation, index), not the model.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import get_args

import grpc
import numpy as np
import soundfile
from scipy.signal import butter, fftconvolve, resample_poly, sosfilt

from audiosearch.cli.main import DEFAULT_TARGET_FPR
from audiosearch.common.errors import reason_of
from audiosearch.embedder.engine import Precision
from audiosearch.gateway.audio.decoding import AudioError, AudioLimits, decode_audio
from audiosearch.gateway.query.matching import LandmarkThresholds
from audiosearch.v1 import audiosearch_pb2 as pb
from audiosearch.v1 import audiosearch_pb2_grpc
from bench import transforms
from bench.support import own_suite
from devtools.support.gateway import ingest_messages

WORK_RATE = 44_100
DEFAULT_SOUNDS = Path("/tmp/dev-sounds")
TRANSFORMS = ("mp3", "gain", "crop", "noise", "telephone", "8k", "offset", "mix", *transforms.NAMES)
# Where the query sits in the recording is part of the question (with excerpts, it is for every transform).
ALIGNED_TRANSFORMS = ("crop", "offset", "excerpt-1s")
HELD_BACK_FRACTION = 0.2
NEAR_IDENTICAL_NCC = 0.9
NCC_RATE = 16_000
NCC_SECONDS = 10.0
MIN_CROP_SECONDS = 1.0
SPLITS = ("random", "families")
TAKE_NUMBER = re.compile(r"[-_ ]?\d+$")  # the trailing number of a take: Water3, wp_noammo-05, paint_01


@dataclass(frozen=True)
class Sound:
    name: str
    data: bytes  # the file as it ships; this is what is indexed
    samples: np.ndarray  # float32 mono at WORK_RATE, for making queries

    @property
    def seconds(self) -> float:
        return len(self.samples) / WORK_RATE


@dataclass(frozen=True)
class QueryCase:
    transform: str
    source: str  # the sound the query was made from
    expected: str  # audio id that should come first; "" for a held-back (negative) query
    audio: bytes = field(repr=False)
    seconds: float
    # The reference time at query time 0 (reference time - query time, unscaled), where the alignment is checked.
    truth_offset: float | None = None
    time_scale: float = 1.0  # reference seconds per query second: speed and tempo change it
    variant: str = ""  # which way a drawn transform went ("+3%", "-1 st")


@dataclass
class Outcome:
    transform: str
    source: str
    positive: bool
    seconds: float
    rank: int | None  # of the expected recording in the top 10, None when absent
    top_score: float | None
    top_name: str
    expected_score: float | None
    top_landmarks: int = 0
    top_landmark_share: float = 0.0
    top_decided_by: str = ""  # at the collection's thresholds as the search left them (min_score -1: the score)
    # negatives: (score, landmarks, landmark share) of every match found, to judge at each target's thresholds
    evidence: list[tuple[float, int, float]] = field(default_factory=list)
    offset_error: float | None = None
    reference_range: tuple[float, float] | None = None
    query_range: tuple[float, float] | None = None
    aligned: bool = False  # the query's place in the recording is checked (offset_error)
    variant: str = ""


# ----------------------------------------------------------------------------------------------- sounds


def load_sounds(folder: Path, limit: int | None, rng: np.random.Generator) -> tuple[list[Sound], list[str]]:
    """Every decodable file once (identical bytes count once), in a seeded random order; `limit` keeps the first."""
    files = sorted(path for path in folder.iterdir() if path.is_file())
    order = rng.permutation(len(files))
    sounds: list[Sound] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for index in order:
        if limit is not None and len(sounds) >= limit:
            break
        path = files[index]
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            skipped.append(f"{path.name} (duplicate bytes)")
            continue
        try:
            decoded = decode_audio(data, WORK_RATE, AudioLimits(max_duration_seconds=3600.0))
        except AudioError as error:
            skipped.append(f"{path.name} ({error})")
            continue
        seen.add(digest)
        sounds.append(Sound(path.name, data, decoded.samples))
    return sounds, skipped


def split(sounds: list[Sound]) -> tuple[list[Sound], list[Sound], list[str]]:
    """(indexed, held back, the held-back sounds left out); the order is already random.

    A held-back sound whose waveform is near-identical to an indexed one (the same audio under another name) is
    left out: a search for it that finds the other is right, so it cannot measure the true-negative rate, and in a
    bed or a mix it would be a second copy of an indexed sound. It is not indexed either, which would add a duplicate
    pair the catalog did not hold."""
    held = max(1, round(len(sounds) * HELD_BACK_FRACTION))
    indexed, held_back = sounds[held:], sounds[:held]
    twins = near_identical(held_back, indexed)
    return (indexed, [sound for sound in held_back if sound.name not in twins],
            [f"{name} (= {other}, ncc {correlation:.3f})" for name, (other, correlation) in twins.items()])


def family(name: str) -> str:
    """The family of takes a file belongs to: its name without the extension and a trailing take number."""
    return TAKE_NUMBER.sub("", name.rsplit(".", 1)[0])


def split_by_family(sounds: list[Sound], rng: np.random.Generator) -> tuple[list[Sound], list[Sound], list[str]]:
    """(indexed, held back, the held-back sounds left out) with each family wholly on one side: families in a
    seeded random order are held back until a fifth of the sounds are. Near-identical sounds of two families are
    handled as in `split`."""
    families: dict[str, list[Sound]] = {}
    for sound in sounds:
        families.setdefault(family(sound.name), []).append(sound)
    names = sorted(families)
    wanted = max(1, round(len(sounds) * HELD_BACK_FRACTION))
    held_back: list[Sound] = []
    for index in rng.permutation(len(names)):
        if len(held_back) >= wanted:
            break
        held_back += families[names[index]]
    held_names = {sound.name for sound in held_back}
    indexed = [sound for sound in sounds if sound.name not in held_names]
    twins = near_identical(held_back, indexed)
    return (indexed, [sound for sound in held_back if sound.name not in twins],
            [f"{name} (= {other}, ncc {correlation:.3f})" for name, (other, correlation) in twins.items()])


def near_identical(sounds: list[Sound], others: list[Sound]) -> dict[str, tuple[str, float]]:
    """Each of `sounds` whose peak normalised cross-correlation with one of `others` (of a similar length, at
    NCC_RATE over the first NCC_SECONDS) reaches NEAR_IDENTICAL_NCC: name -> (the other's name, the correlation).

    A waveform measure, independent of what the suite computes, and strict: a gain, a shift or a trimmed edge
    keeps it near 1, while variants of one effect (footsteps, hits) stay far under it."""
    def prepared(sound: Sound) -> np.ndarray:
        samples = resample_poly(sound.samples[: round(NCC_SECONDS * WORK_RATE)], NCC_RATE, WORK_RATE)
        return samples / (np.linalg.norm(samples) or 1.0)

    candidates = [(other.name, min(other.seconds, NCC_SECONDS), prepared(other)) for other in others]
    found: dict[str, tuple[str, float]] = {}
    for sound in sounds:
        seconds, samples = min(sound.seconds, NCC_SECONDS), prepared(sound)
        for name, other_seconds, other in candidates:
            if name == sound.name or not 0.8 <= seconds / other_seconds <= 1.25:
                continue
            correlation = float(np.max(np.abs(fftconvolve(samples, other[::-1]))))
            if correlation >= NEAR_IDENTICAL_NCC and correlation > found.get(sound.name, ("", 0.0))[1]:
                found[sound.name] = (name, correlation)
    return found


def twins_within(sounds: list[Sound]) -> dict[str, set[str]]:
    """The near-identical pairs among `sounds` (as `near_identical` judges them), each way: a search for one that
    finds the other first is right too. A random split leaves such a pair out of the index; the families split
    indexes both where they are of one family (`wp_ninja_hit-02` and `-03`) or of two (`bubble` and `fill`)."""
    twins: dict[str, set[str]] = {}
    for name, (other, _) in near_identical(sounds, sounds).items():
        twins.setdefault(name, set()).add(other)
        twins.setdefault(other, set()).add(name)
    return twins


# ----------------------------------------------------------------------------------------------- transforms


def wav(samples: np.ndarray, rate: int = WORK_RATE) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(samples, -1.0, 1.0), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def mp3(samples: np.ndarray, bitrate: str = "96k") -> bytes:
    result = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "wav", "-i", "pipe:0", "-c:a", "libmp3lame", "-b:a", bitrate, "-f", "mp3",
         "pipe:1"], input=wav(samples), capture_output=True, check=True, timeout=60)
    return result.stdout


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) or 1e-6


def at_level_below(signal: np.ndarray, reference: np.ndarray, decibels: float) -> np.ndarray:
    return signal * (rms(reference) * 10 ** (-decibels / 20) / rms(signal))


def bed_of(sounds: list[Sound], length: int, rng: np.random.Generator) -> np.ndarray:
    """`length` samples of other sounds one after another (looped when they are too few)."""
    pieces: list[np.ndarray] = []
    total = 0
    while total < length:
        piece = sounds[int(rng.integers(len(sounds)))].samples
        pieces.append(piece)
        total += len(piece)
    return np.concatenate(pieces)[:length]


class Transformer:
    """Makes query audio from a sound; held-back sounds supply the beds and the mixes."""

    def __init__(self, held_back: list[Sound], max_query_seconds: float,
                 excerpt_seconds: tuple[float, float] | None = None) -> None:
        self.excerpt_seconds = excerpt_seconds
        self._held_back = held_back
        self.max_samples = round(max_query_seconds * WORK_RATE)
        self._telephone = butter(4, [300, 3400], btype="bandpass", fs=WORK_RATE, output="sos")

    def make(self, transform: str, sound: Sound, expected: str, rng: np.random.Generator) -> QueryCase:
        source, origin = self.source(sound, rng)
        clip = source[: self.max_samples]
        others = [s for s in self._held_back if s.name != sound.name] or self._held_back
        shift, time_scale, variant = 0.0, 1.0, ""
        if transform == "mp3":
            audio = mp3(clip)
        elif transform == "gain":
            audio = wav(clip * 0.6)
        elif transform == "crop":
            clip, shift = self._crop(source, rng)
            audio = wav(clip)
        elif transform == "noise":
            audio = wav(clip + at_level_below(rng.standard_normal(len(clip)).astype(np.float32), clip, 20.0))
        elif transform == "telephone":
            audio = wav(sosfilt(self._telephone, clip).astype(np.float32))
        elif transform == "8k":
            audio = wav(resample_poly(clip, 80, 441).astype(np.float32), 8_000)
        elif transform == "offset":
            extra = round(rng.uniform(4.0, 10.0) * WORK_RATE)
            start = int(rng.integers(WORK_RATE // 2, extra - WORK_RATE // 2))
            query = at_level_below(bed_of(others, len(clip) + extra, rng), clip, 20.0)
            query[start : start + len(clip)] += clip
            audio, shift = wav(query), -start / WORK_RATE
            clip = query
        elif transform == "mix":
            other = bed_of([others[int(rng.integers(len(others)))]], len(clip), rng)
            audio = wav(clip + at_level_below(other, clip, 10.0))
        elif transform in transforms.NAMES:
            changed = transforms.apply(transform, source if transform in transforms.FROM_ANYWHERE else clip,
                                       WORK_RATE, rng)
            clip, shift, time_scale, variant = (changed.samples, changed.start_seconds, changed.time_scale,
                                                changed.variant)
            audio = wav(clip)
        else:
            raise ValueError(transform)
        # An excerpt's place is known for every transform; a whole sound's only matters where it moves.
        truth = origin + shift if self.excerpt_seconds or transform in ALIGNED_TRANSFORMS else None
        return QueryCase(transform, sound.name, expected, audio, len(clip) / WORK_RATE, truth, time_scale, variant)

    def source(self, sound: Sound, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        """What a query is made from and where it starts in the recording (s): the whole sound, or with
        `excerpt_seconds` an excerpt of a length drawn from that range, from a random place."""
        if self.excerpt_seconds is None:
            return sound.samples, 0.0
        return transforms.excerpt(sound.samples, WORK_RATE, rng.uniform(*self.excerpt_seconds), rng)

    def _crop(self, samples: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        if len(samples) <= MIN_CROP_SECONDS * WORK_RATE:
            return samples, 0.0
        length = int(rng.integers(round(MIN_CROP_SECONDS * WORK_RATE), min(len(samples), self.max_samples) + 1))
        start = int(rng.integers(0, len(samples) - length + 1))
        return samples[start : start + length], start / WORK_RATE


def make_cases(indexed: list[Sound], held_back: list[Sound], ids: dict[str, str], transformer: Transformer,
               queries_per_transform: int, seed: int, chosen_transforms: tuple[str, ...] = TRANSFORMS
               ) -> list[QueryCase]:
    """Positives: each chosen transform of (a seeded sample of) the indexed sounds. Negatives: every held-back sound
    as it is and once transformed (the chosen transforms taken in turn). A transform's queries are the same
    whichever others are chosen."""
    cases: list[QueryCase] = []
    for number, transform in enumerate(TRANSFORMS):
        if transform not in chosen_transforms:
            continue
        chosen = range(len(indexed))
        if queries_per_transform and queries_per_transform < len(indexed):
            chosen = sorted(np.random.default_rng([seed, number]).choice(len(indexed), queries_per_transform,
                                                                         replace=False))
        # Each query has its own random stream, so a smaller sample holds exactly the same queries.
        cases += [transformer.make(transform, indexed[i], ids[indexed[i].name],
                                   np.random.default_rng([seed, number, int(i)])) for i in chosen]
    for number, sound in enumerate(held_back):
        clean = transformer.source(sound, np.random.default_rng([seed, len(TRANSFORMS) + 1, number]))[0][
            : transformer.max_samples]
        cases.append(QueryCase("clean", sound.name, "", wav(clean), len(clean) / WORK_RATE))
        transform = chosen_transforms[number % len(chosen_transforms)]
        cases.append(transformer.make(transform, sound, "", np.random.default_rng([seed, len(TRANSFORMS), number])))
    return cases


# ----------------------------------------------------------------------------------------------- the suite


def ensure_collection(client: audiosearch_pb2_grpc.AudioSearchServiceStub, name: str) -> pb.Collection:
    try:
        return client.CreateCollection(pb.CreateCollectionRequest(
            name=name, description="bench.quality")).collection
    except grpc.RpcError as error:
        if reason_of(error) != "COLLECTION_EXISTS":
            raise
        return client.GetCollection(pb.GetCollectionRequest(name=name)).collection


def ingest(client: audiosearch_pb2_grpc.AudioSearchServiceStub, collection: str, sound: Sound
           ) -> pb.AudioRecord | str:
    """The stored record, or why the gateway refused the file."""
    messages = ingest_messages(collection, sound.name, sound.data, {"bench": "quality"})
    try:
        return client.IngestAudio(iter(messages), timeout=600).audio
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
            raise
        return f"{sound.name} (refused by the gateway: {error.details()})"


def run_parallel(function: Callable, items: list, workers: int, label: str) -> list:
    results = []
    started = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        for number, result in enumerate(pool.map(function, items), 1):
            results.append(result)
            if number % 50 == 0 or number == len(items):
                print(f"  {label}: {number}/{len(items)} ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    return results


# ----------------------------------------------------------------------------------------------- scoring


def evaluate(client: audiosearch_pb2_grpc.AudioSearchServiceStub, collection: str, case: QueryCase,
             names: dict[str, str]) -> Outcome:
    reply = client.SearchAudio(pb.SearchAudioRequest(collection=collection, audio_content=case.audio, top_k=10,
                                                     min_score=-1.0), timeout=600)
    matches = list(reply.matches)
    ids = [match.audio.id for match in matches]
    rank = ids.index(case.expected) if case.expected in ids else None
    top = matches[0] if matches else None
    outcome = Outcome(
        case.transform, case.source, bool(case.expected), case.seconds, rank,
        top.score if top else None, names.get(top.audio.id, top.audio.name) if top else "",
        matches[rank].score if rank is not None else None, top.landmarks if top else 0,
        aligned=case.truth_offset is not None, variant=case.variant)
    if not case.expected:
        # Any match may clear, not only the top one: the order can put a landmark leader under the threshold first.
        outcome.evidence = [(match.score, match.landmarks, match.landmark_share) for match in matches]
    if top is not None:
        outcome.top_landmark_share = top.landmark_share
        outcome.top_decided_by = pb.MatchEvidence.Name(top.decided_by)
    if rank == 0 and top is not None:
        ref, qry = top.reference_range, top.query_range
        outcome.reference_range = (round(ref.start_seconds, 3), round(ref.end_seconds, 3))
        outcome.query_range = (round(qry.start_seconds, 3), round(qry.end_seconds, 3))
        if case.truth_offset is not None:
            # Speed and tempo scale the query's timeline: the truth is where the query's start lands in it.
            expected_start = case.truth_offset + qry.start_seconds * case.time_scale
            outcome.offset_error = abs(ref.start_seconds - expected_start)
    return outcome


def clears(score: float, landmarks: int, landmark_share: float, collection: pb.Collection) -> bool:
    """A match is a match by the collection's thresholds: its score, or its landmarks (the gateway's own rule)."""
    by_landmarks = LandmarkThresholds(collection.landmark_threshold, collection.landmark_share_threshold)
    return score >= collection.score_threshold or by_landmarks.confirm(landmarks, landmark_share)


def summarise(outcomes: list[Outcome], calibrated: dict[str, pb.Collection], hop: float,
              twins: dict[str, set[str]] | None = None) -> dict:
    """The figures; `calibrated` holds the collection as each target (by name) calibrated it, the one that stays
    last: its figures also stand alone (`top1_above_threshold`, `true_negative_rate`), each target's under `_at`.
    With `twins` (twins_within), the positives' figures once more with a near-identical twin first counted right."""
    def cleared(outcome: Outcome, collection: pb.Collection) -> bool:
        """The top match is a match by the collection's thresholds."""
        return outcome.top_score is not None and clears(outcome.top_score, outcome.top_landmarks,
                                                        outcome.top_landmark_share, collection)

    def answered(outcome: Outcome, collection: pb.Collection) -> bool:
        return any(clears(score, landmarks, share, collection) for score, landmarks, share in outcome.evidence)

    kept = list(calibrated)[-1]

    rows = {}
    positives = [o for o in outcomes if o.positive]
    for transform in (*TRANSFORMS, "all"):
        group = [o for o in positives if transform in ("all", o.transform)]
        if not group:
            continue
        row = {
            "n": len(group),
            "top1": _mean(o.rank == 0 for o in group),
            "recall_at_10": _mean(o.rank is not None for o in group),
            "top1_above_threshold_at": {target: _mean(o.rank == 0 and cleared(o, collection) for o in group)
                                        for target, collection in calibrated.items()},
        }
        row["top1_above_threshold"] = row["top1_above_threshold_at"][kept]
        if any(o.aligned for o in group):
            errors = [o.offset_error if o.offset_error is not None else float("inf") for o in group]
            row["offset_within_hop"] = _mean(e <= hop + 1e-6 for e in errors)
            row["offset_within_half_second"] = _mean(e <= 0.5 + 1e-6 for e in errors)
            row["median_offset_error_s"] = float(np.median(errors))
        rows[transform] = row
    aligned = [o for o in positives if o.aligned]
    negatives = [o for o in outcomes if not o.positive]
    right_or_twin = [o for o in positives if o.rank == 0 or o.top_name in (twins or {}).get(o.source, set())]
    twin_row = {"n": len(right_or_twin) - sum(o.rank == 0 for o in positives),  # queries a twin answered
                "top1": len(right_or_twin) / len(positives) if positives else float("nan"),
                "top1_above_threshold_at": {target: _mean(o in right_or_twin and cleared(o, collection)
                                                          for o in positives)
                                            for target, collection in calibrated.items()}}
    true_negative_rate = {target: _mean(not answered(o, collection) for o in negatives)
                          for target, collection in calibrated.items()}
    true_negative_rate_clean = {target: _mean(not answered(o, collection) for o in negatives if o.transform == "clean")
                                for target, collection in calibrated.items()}
    return {
        "transforms": rows,
        "twin_counted_right": twin_row,
        "offset_within_hop": _mean(o.offset_error is not None and o.offset_error <= hop + 1e-6 for o in aligned),
        "offset_within_half_second": _mean(o.offset_error is not None and o.offset_error <= 0.5 + 1e-6
                                           for o in aligned),
        "negatives": len(negatives),
        "true_negative_rate": true_negative_rate[kept],
        "true_negative_rate_clean": true_negative_rate_clean[kept],
        "true_negative_rate_at": true_negative_rate,
        "true_negative_rate_clean_at": true_negative_rate_clean,
    }


def _mean(values: Iterator[bool] | list[bool]) -> float:
    values = list(values)
    return float(np.mean(values)) if values else float("nan")


def table(summary: dict, info: dict) -> str:
    targets = list(info["calibrations"])
    above = " ".join(f"{'>=thr@' + target:>10s}" for target in targets)
    lines = [
        f"{'transform':10s} {'n':>5s} {'top-1':>6s} {'R@10':>6s} {above} {'offset<=hop':>11s} {'offset<=0.5s':>12s}",
    ]
    for transform, row in summary["transforms"].items():
        source = summary if transform == "all" else row
        offset = (f"{source['offset_within_hop']:11.3f} {source['offset_within_half_second']:12.3f}"
                  if "offset_within_hop" in row or transform == "all" else "")
        cleared = " ".join(f"{row['top1_above_threshold_at'][target]:10.3f}" for target in targets)
        lines.append(f"{transform:10s} {row['n']:5d} {row['top1']:6.3f} {row['recall_at_10']:6.3f} {cleared} {offset}")
    twin = summary.get("twin_counted_right")
    if twin and twin["n"]:
        cleared = " ".join(f"{twin['top1_above_threshold_at'][target]:10.3f}" for target in targets)
        lines += [f"{'all/twin':10s} {twin['n']:5d} {twin['top1']:6.3f} {'':6s} {cleared}",
                  f"all/twin: a near-identical twin found first counts as right (n: the queries a twin answered; "
                  f"{'; '.join(info.get('indexed_twins', []))})"]
    for target, calibration in info["calibrations"].items():
        rate, clean = summary["true_negative_rate_at"][target], summary["true_negative_rate_clean_at"][target]
        lines.append(f"target {target}: true-negative rate {rate:.3f} over {summary['negatives']} held-back queries "
                     f"(as they are: {clean:.3f}); threshold {calibration['threshold']:.4f}, landmarks "
                     f"{calibration['landmark_threshold']}, share {calibration['landmark_share_threshold']:.4f} "
                     f"({calibration['threshold_source']})")
    lines += [
        f"split {info['split']}: {info['indexed']} indexed, {info['held_back']} held back "
        f"({len(info['near_identical_left_out'])} more left out: near-identical to an indexed sound), "
        f"{info['skipped']} skipped; model {info['model']}; hop {info['hop']:g} s; seed {info['seed']}",
        f"time: ingest {info['ingest_seconds']:.0f} s, calibrate {info['calibrate_seconds']:.0f} s, "
        f"queries {info['query_seconds']:.0f} s, total {info['total_seconds']:.0f} s",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- main


def run(args: argparse.Namespace, gateway: str) -> dict:
    started = time.monotonic()
    rng = np.random.default_rng(args.seed)
    sounds, skipped = load_sounds(args.sounds, args.limit, rng)
    if len(sounds) < 10:
        raise SystemExit(f"{args.sounds} holds {len(sounds)} usable sounds; at least 10 are needed")
    if args.split == "families":
        indexed, held_back, left_out = split_by_family(sounds, np.random.default_rng([args.seed, 1]))
    else:
        indexed, held_back, left_out = split(sounds)
    default_name = f"bench_quality_s{args.seed}_n{len(sounds)}"
    collection_name = args.collection or (default_name if args.split == "random" else f"{default_name}_{args.split}")
    print(f"{len(sounds)} sounds ({len(skipped)} skipped): {len(indexed)} indexed, {len(held_back)} held back; "
          f"collection {collection_name!r} at {gateway}", file=sys.stderr)
    for line in left_out:
        print(f"  held back but left out: {line}", file=sys.stderr)
    twins = twins_within(indexed)
    with grpc.insecure_channel(gateway, options=[("grpc.max_send_message_length", 256 * 1024 * 1024)]) as channel:
        client = audiosearch_pb2_grpc.AudioSearchServiceStub(channel)
        collection = ensure_collection(client, collection_name)
        clock = time.monotonic()
        records = run_parallel(lambda sound: ingest(client, collection_name, sound), indexed, args.workers, "ingest")
        ingest_seconds = time.monotonic() - clock
        skipped += [record for record in records if isinstance(record, str)]
        indexed = [sound for sound, record in zip(indexed, records, strict=True) if not isinstance(record, str)]
        records = [record for record in records if not isinstance(record, str)]
        ids = {sound.name: record.id for sound, record in zip(indexed, records, strict=True)}
        names = {record.id: sound.name for sound, record in zip(indexed, records, strict=True)}

        clock = time.monotonic()
        calibrations = {f"{target:g}": client.CalibrateCollection(pb.CalibrateCollectionRequest(
            collection=collection_name, target_false_positive_rate=target), timeout=1800)
            for target in dict.fromkeys([DEFAULT_TARGET_FPR, args.target_fpr])}  # the last one stays
        calibrate_seconds = time.monotonic() - clock
        collection = list(calibrations.values())[-1].collection

        transformer = Transformer(held_back, args.max_query_seconds, args.excerpt_seconds)
        cases = make_cases(indexed, held_back, ids, transformer, args.queries, args.seed, args.transforms)
        clock = time.monotonic()
        outcomes = run_parallel(lambda case: evaluate(client, collection_name, case, names), cases, args.workers,
                                "queries")
        query_seconds = time.monotonic() - clock

    hop = collection.segment_config.hop_seconds
    summary = summarise(outcomes, {target: reply.collection for target, reply in calibrations.items()}, hop,
                        twins)
    info = {
        "sounds": str(args.sounds), "split": args.split, "transforms": args.transforms, "seed": args.seed,
        "indexed": len(indexed),
        "excerpt_seconds": args.excerpt_seconds, "held_back": len(held_back), "skipped": len(skipped),
        "near_identical_left_out": left_out,
        "indexed_twins": sorted(f"{name} = {other}" for name, others in twins.items() for other in others
                                if name < other),
        "collection": collection_name, "target_fpr": args.target_fpr,
        "model": f"{collection.model.name}:{collection.model.version}", "untrained": collection.model.untrained,
        "hop": hop, "window": collection.segment_config.window_seconds,
        # the calibration that stays (--target-fpr), then each target's
        "threshold": collection.score_threshold, "landmark_threshold": collection.landmark_threshold,
        "landmark_share_threshold": collection.landmark_share_threshold,
        "threshold_source": collection.threshold_source,
        "calibrations": {target: {"threshold": reply.collection.score_threshold,
                                  "landmark_threshold": reply.collection.landmark_threshold,
                                  "landmark_share_threshold": reply.collection.landmark_share_threshold,
                                  "threshold_source": reply.collection.threshold_source,
                                  "negative_queries": reply.negative_queries,
                                  "variant_queries": reply.variant_queries,
                                  "positive_queries": reply.positive_queries,
                                  "true_positive_rate": reply.true_positive_rate,
                                  "false_positive_rate": reply.false_positive_rate}
                         for target, reply in calibrations.items()},
        "ingest_seconds": ingest_seconds, "calibrate_seconds": calibrate_seconds, "query_seconds": query_seconds,
        "total_seconds": time.monotonic() - started,
    }
    return {"info": info, "summary": summary, "skipped": skipped, "outcomes": [asdict(o) for o in outcomes]}


def transform_names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in TRANSFORMS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown transform {', '.join(unknown) or '(none)'}; choose from "
                                         f"{', '.join(TRANSFORMS)}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sounds", type=Path, default=DEFAULT_SOUNDS, help="folder of sounds (default %(default)s)")
    parser.add_argument("--split", choices=SPLITS, default="random",
                        help="random: a random fifth held back (default); families: a catalog with variants, each "
                             "family of numbered takes indexed or held back whole")
    parser.add_argument("--transforms", type=transform_names, default=TRANSFORMS, metavar="NAME,...",
                        help="only these transforms, comma-separated (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, help="use at most N sounds (a seeded random choice)")
    parser.add_argument("--queries", type=int, default=100,
                        help="queries per transform, a seeded sample of the indexed sounds (default %(default)s; "
                             "0: every indexed sound)")
    parser.add_argument("--gateway", help="a running gateway to use instead of starting a suite")
    parser.add_argument("--collection", help="collection name (default bench_quality_s<seed>_n<sounds>, and "
                                              "_families after it for that split)")
    parser.add_argument("--target-fpr", type=float, default=0.05,
                        help=f"calibration target, after the CLI's default {DEFAULT_TARGET_FPR:g} (default "
                             "%(default)s); this calibration orders the matches")
    parser.add_argument("--max-query-seconds", type=float, default=10.0)
    parser.add_argument("--excerpt-seconds", type=float, nargs=2, metavar=("MIN", "MAX"),
                        help="index the recordings whole and make every query from an excerpt of MIN-MAX s at a "
                             "random place (music: --sounds /tmp/dev-music --excerpt-seconds 5 10)")
    parser.add_argument("--workers", type=int, default=2, help="requests in flight (default %(default)s)")
    parser.add_argument("--json", type=Path, help="write the summary and every query's outcome here")
    parser.add_argument("--keep-state", action="store_true", help="keep the temporary suite's state directory")
    parser.add_argument("--precision", choices=["auto", *get_args(Precision)], default="auto",
                        help="the own suite's EMBEDDER_PRECISION (default: the embedder's own choice)")
    args = parser.parse_args()
    if not args.sounds.is_dir():
        raise SystemExit(f"no folder {args.sounds}; get the dev sounds with "
                         "`scripts/fetch-dev-sounds.sh /tmp/dev-sounds`")
    if args.gateway:
        result = run(args, args.gateway)
    else:
        overrides = {} if args.precision == "auto" else {"EMBEDDER_PRECISION": args.precision}
        with own_suite(overrides, keep_state=args.keep_state) as bench:
            gateway = bench.gateway
            result = run(args, gateway)
    print(table(result["summary"], result["info"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
