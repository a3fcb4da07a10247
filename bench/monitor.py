"""Broadcast monitoring through the public API: an hour of synthetic feed with catalog sounds played in it.

    python -m bench.monitor [--sounds DIR] [--music DIR] [--minutes 60] [--insertions 120] [--seed 0]
                            [--realtime-minutes 5] [--limit N] [--tracks N] [--gateway ADDR] [--misses]
                            [--json FILE]

Indexes the dev sounds (a family split as bench.quality's `--split families`: a fifth of the families of takes held
back, so no held-back take has a sibling in the catalog) and four fifths of the dev music tracks, calibrates the
collection the way a user does (`audiosearch calibrate` with its defaults: CalibrateCollection at the CLI's target
false-positive rate), then builds a feed of `--minutes`:

    bed         held-back sounds, held-back music, speech (espeak-ng sentences in a few voices) and brown noise,
                one after another at -30..-18 dBFS, over a noise floor at -60 dBFS
    insertions  `--insertions` plays of indexed recordings at seeded random times, at least MIN_GAP_SECONDS of bed
                apart: whole dev sounds (their first MAX_SOUND_SECONDS at most), and music excerpts of 10-60 s
                from a random place in a track (a third of the plays); each under one of bench.quality's
                transforms (mp3, gain, noise, telephone, 8k, mix, taken in turn); REPLAYED_SHARE of the
                recordings are played twice, CUT_SHORT_SHARE of the plays stop at 40-70 % of their length.
                A play replaces the bed while it lasts.

The feed goes through MonitorAudio as 16-bit PCM at 44.1 kHz in 0.25 s chunks, once at full speed (the whole
feed) and once paced at 1x real time (its first `--realtime-minutes`; 0 skips it). Each play's truth is its
audible range in the feed (within 60 dB of its loudest 10 ms, the range ingest loops a short sound over) and
the recording time at its first sample. A detection (its final, ENDED range) finds a play when it names the
play's recording and their feed ranges overlap; each play counts once. Reported:

    recall / precision   plays found / plays; detections that found a play / detections
    false per hour       detections overlapping no play, per hour of bed (feed time outside the plays)
    start / end error    |detected feed start (end) - the play's audible start (end)|, median, p95 and the share
                         within 0.5 s
    latency              from the moment the play's last audible sample was sent to the arrival of its STARTED
                         detection (negative: detected while it still played), at full speed and at 1x
    real-time factor     feed seconds / seconds from the first chunk sent to the last reply
    stages               the gateway's seconds per stage over the full-speed run (audiosearch_stage_duration_seconds)
    memory               each service's RSS (the process and its children) every MEMORY_INTERVAL_SECONDS over the
                         full-speed run; flat when the least-squares trend after the first sample rises less than
                         bench.load's MEMORY_GROWTH_LIMIT

With `--misses`, each play the full-speed run missed is searched with SearchAudio (top MISS_TOP_K, no score
threshold) twice: as the monitor's stretch that holds it (at the default stretches, 10 s every 5 s) and as its
audible range alone; each line says where its recording ranks there, its score, landmarks and share, and whether
the collection's thresholds take it: a miss that the stretch's search takes is the monitor's; one that only the
sound alone clears lost its evidence to the bed around it; one that neither clears is the search's.

By default it starts its own suite (bench.support.own_suite); with `--gateway` it uses that one and reports no
memory and no stages.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
import numpy as np
from scipy.ndimage import uniform_filter1d

from audiosearch.cli.main import DEFAULT_TARGET_FPR
from audiosearch.gateway.audio.decoding import AudioLimits, decode_audio
from audiosearch.gateway.audio.segments import audible_bounds
from audiosearch.v1 import audiosearch_pb2 as pb
from audiosearch.v1 import audiosearch_pb2_grpc
from bench import quality
from bench.load import MEMORY_GROWTH_LIMIT, memory_growth
from bench.metrics import emit, percentiles, scrape
from bench.support import machine, own_suite, shared_load_note, tree_rss_bytes

RATE = quality.WORK_RATE
DEFAULT_MUSIC = Path("/tmp/dev-music")
TRANSFORMS = ("mp3", "gain", "noise", "telephone", "8k", "mix")
MUSIC_SHARE = 1 / 3
MUSIC_EXCERPT_SECONDS = (10.0, 60.0)
MAX_SOUND_SECONDS = 60.0
REPLAYED_SHARE = 0.15
CUT_SHORT_SHARE = 0.15
CUT_SHORT_FRACTION = (0.4, 0.7)
MIN_GAP_SECONDS = 8.0  # of bed between plays: longer than a monitor's end_after and a stored window
BED_LEVEL_DBFS = (-30.0, -18.0)
NOISE_FLOOR_DBFS = -60.0
BED_PIECE_SECONDS = (2.0, 20.0)
CHUNK_SECONDS = 0.25
TOLERANCE_SECONDS = 0.5
MEMORY_INTERVAL_SECONDS = 10.0
SPEECH_VOICES = ("en-us", "en", "de", "fr", "es")
SPEECH_SENTENCES = 24
_WORDS = ("the", "weather", "today", "will", "be", "cloudy", "with", "rain", "in", "north", "and", "sun", "later",
          "afternoon", "traffic", "is", "heavy", "on", "ring", "road", "after", "an", "accident", "near", "bridge",
          "our", "next", "guest", "has", "written", "a", "book", "about", "gardens", "rivers", "old", "railways",
          "call", "us", "now", "your", "questions", "market", "closed", "higher", "tonight", "team", "won", "three",
          "games", "row")


# ----------------------------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Recording:
    """An indexed recording that may be played: its name and length (s)."""

    name: str
    seconds: float
    music: bool


@dataclass(frozen=True)
class Play:
    """One insertion of a recording into the feed, as planned: `clip_seconds` of it from `reference_start`."""

    recording: str
    music: bool
    transform: str
    feed_start: float
    clip_seconds: float
    reference_start: float
    cut_short: bool
    replay: bool  # the recording's second play

    @property
    def feed_end(self) -> float:
        return self.feed_start + self.clip_seconds


def plan_plays(recordings: list[Recording], feed_seconds: float, count: int, rng: np.random.Generator
               ) -> list[Play]:
    """`count` plays at random times, in feed order, at least MIN_GAP_SECONDS apart and from the feed's edges.

    A third are music excerpts (of the recordings marked music) where there are any; REPLAYED_SHARE of the
    recordings played are played twice (another excerpt, another transform); CUT_SHORT_SHARE of the plays are cut
    to CUT_SHORT_FRACTION of their length. Transforms are taken in turn over a shuffled order."""
    music = [recording for recording in recordings if recording.music]
    sounds = [recording for recording in recordings if not recording.music]
    replays = round(count * REPLAYED_SHARE)
    firsts = count - replays
    music_count = min(round(firsts * MUSIC_SHARE), len(music)) if music else 0
    if firsts - music_count > len(sounds) or music_count > len(music):
        raise ValueError(f"{count} plays need {firsts - music_count} sounds and {music_count} tracks; there are "
                         f"{len(sounds)} and {len(music)}")
    chosen = ([music[i] for i in rng.choice(len(music), music_count, replace=False)] if music_count else []) + \
        [sounds[i] for i in rng.choice(len(sounds), firsts - music_count, replace=False)]
    chosen += [chosen[i] for i in rng.choice(len(chosen), replays, replace=False)]
    replayed = [False] * firsts + [True] * replays
    transforms = [TRANSFORMS[i % len(TRANSFORMS)] for i in rng.permutation(count)]
    cut = set(rng.choice(count, round(count * CUT_SHORT_SHARE), replace=False).tolist())
    drafts = []
    for index, recording in enumerate(chosen):
        if recording.music:
            length = min(recording.seconds, rng.uniform(*MUSIC_EXCERPT_SECONDS))
            start = rng.uniform(0.0, recording.seconds - length)
        else:
            length, start = min(recording.seconds, MAX_SOUND_SECONDS), 0.0
        if index in cut:
            length *= rng.uniform(*CUT_SHORT_FRACTION)
        drafts.append((recording, transforms[index], float(length), float(start), index in cut, replayed[index]))
    order = rng.permutation(count)
    drafts = [drafts[i] for i in order]
    bed_seconds = feed_seconds - sum(draft[2] for draft in drafts)
    spare = bed_seconds - (count + 1) * MIN_GAP_SECONDS
    if spare < 0:
        raise ValueError(f"a feed of {feed_seconds:.0f} s cannot hold {count} plays of "
                         f"{feed_seconds - bed_seconds:.0f} s with {MIN_GAP_SECONDS:g} s of bed around each")
    gaps = MIN_GAP_SECONDS + spare * rng.dirichlet(np.ones(count + 1))
    plays = []
    position = 0.0
    for gap, (recording, transform, length, start, cut_short, replay) in zip(gaps, drafts, strict=False):
        position += float(gap)
        plays.append(Play(recording.name, recording.music, transform, position, length, start, cut_short, replay))
        position += length
    return plays


# ----------------------------------------------------------------------------------------------- the audio


@dataclass(frozen=True)
class Placed:
    """A play as it sits in the rendered feed: its audible range there, and the recording time at its first sample."""

    play: Play
    audible: tuple[float, float]  # feed seconds

    @property
    def reference_range(self) -> tuple[float, float]:
        start = self.play.reference_start + self.audible[0] - self.play.feed_start
        return start, start + self.audible[1] - self.audible[0]


def clip_of(play: Play, sound: quality.Sound, transformer: quality.Transformer, rng: np.random.Generator
            ) -> np.ndarray:
    """The play's samples at RATE: its part of the recording, transformed as bench.quality transforms a query."""
    first = round(play.reference_start * RATE)
    part = quality.Sound(sound.name, b"", sound.samples[first : first + round(play.clip_seconds * RATE)])
    case = transformer.make(play.transform, part, "", rng)
    return decode_audio(case.audio, RATE, AudioLimits(max_duration_seconds=3600.0)).samples


def placed(play: Play, clip: np.ndarray) -> Placed:
    first, last = audible_bounds(clip, RATE)
    return Placed(play, (play.feed_start + first / RATE, play.feed_start + last / RATE))


def at_dbfs(samples: np.ndarray, level_dbfs: float) -> np.ndarray:
    return (samples * (10 ** (level_dbfs / 20) / quality.rms(samples))).astype(np.float32)


def brown_noise(length: int, rng: np.random.Generator) -> np.ndarray:
    noise = np.cumsum(rng.standard_normal(length))
    noise -= uniform_filter1d(noise, 441)  # no drift, keeps the low rumble
    return noise.astype(np.float32)


def speech(rng: np.random.Generator, count: int = SPEECH_SENTENCES) -> list[np.ndarray]:
    """Sentences of random words spoken by espeak-ng in a few voices and speeds, at RATE."""
    spoken = []
    with tempfile.TemporaryDirectory(prefix="bench-monitor-speech-") as folder:
        wav = Path(folder) / "sentence.wav"  # --stdout would leave the WAV header's length unset
        for number in range(count):
            words = " ".join(rng.choice(_WORDS, int(rng.integers(8, 30))))
            voice = SPEECH_VOICES[number % len(SPEECH_VOICES)]
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(int(rng.integers(130, 200))), "-w", str(wav), words],
                           capture_output=True, check=True, timeout=60)
            spoken.append(decode_audio(wav.read_bytes(), RATE, AudioLimits(max_duration_seconds=600.0)).samples)
    return spoken


def bed(length: int, held_back: list[np.ndarray], spoken: list[np.ndarray], rng: np.random.Generator
        ) -> np.ndarray:
    """`length` samples of held-back audio, speech and noise one after another, over a noise floor."""
    feed = at_dbfs(rng.standard_normal(length).astype(np.float32), NOISE_FLOOR_DBFS)
    position = 0
    while position < length:
        kind = int(rng.integers(3))
        seconds = rng.uniform(*BED_PIECE_SECONDS)
        if kind == 0:
            source = held_back[int(rng.integers(len(held_back)))]
            start = int(rng.integers(0, max(1, len(source) - round(seconds * RATE))))
            piece = source[start : start + round(seconds * RATE)]
        elif kind == 1:
            piece = spoken[int(rng.integers(len(spoken)))]
        else:
            piece = brown_noise(round(seconds * RATE), rng)
        piece = piece[: length - position]
        if quality.rms(piece) > 1e-5:
            feed[position : position + len(piece)] += at_dbfs(piece, rng.uniform(*BED_LEVEL_DBFS))
        position += len(piece)
    return feed


def render(feed_seconds: float, plays: list[Play], clips: list[np.ndarray], bed_samples: np.ndarray
           ) -> tuple[np.ndarray, list[Placed]]:
    """The bed with each play's clip in place of it from the play's start (a clip that a codec made longer or
    shorter keeps its own length)."""
    feed = bed_samples[: round(feed_seconds * RATE)].copy()
    places = []
    for play, whole in zip(plays, clips, strict=True):
        first = round(play.feed_start * RATE)
        clip = whole[: len(feed) - first]
        feed[first : first + len(clip)] = clip
        places.append(placed(play, clip))
    return feed, places


# ----------------------------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Detection:
    detection_id: str
    recording: str
    feed_range: tuple[float, float]
    reference_range: tuple[float, float]
    started_at: float  # monotonic arrival of its STARTED message
    evidence: str
    landmarks: int
    score: float


@dataclass
class Scored:
    plays: int
    found: int
    detections: int
    right: int
    bed_false: int
    wrong: int  # overlapping a play, another recording (or a second detection of one play)
    bed_hours: float
    start_errors: list[float] = field(default_factory=list)
    end_errors: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    false: list[str] = field(default_factory=list)
    missed_plays: list[int] = field(default_factory=list)  # indexes into the places
    off: list[str] = field(default_factory=list)  # found plays whose start or end is off by more than the tolerance


def overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    return min(a[1], b[1]) - max(a[0], b[0])


def score(places: list[Placed], detections: list[Detection], feed_seconds: float, names: dict[str, str],
          sent_at: Callable[[float], float]) -> Scored:
    """Each detection finds the play of its recording it overlaps (or touches: landmarks of a short sound can align
    at one frame) most that no earlier detection found; `sent_at(t)` is when feed second t was sent."""
    taken: dict[int, Detection] = {}
    wrong = bed_false = 0
    false: list[str] = []
    for detection in sorted(detections, key=lambda d: d.feed_range[0]):
        candidates = [(overlap(place.audible, detection.feed_range), index) for index, place in enumerate(places)
                      if place.play.recording == names.get(detection.recording) and index not in taken
                      and overlap(place.audible, detection.feed_range) >= 0]
        if candidates:
            taken[max(candidates)[1]] = detection
            continue
        under = [place for place in places if overlap(place.audible, detection.feed_range) >= 0]
        if under:
            wrong += 1
        else:
            bed_false += 1
        over = "".join(f" over {place.play.recording} ({place.play.transform})" for place in under)
        false.append(f"{names.get(detection.recording, detection.recording)} at {detection.feed_range[0]:.1f}-"
                     f"{detection.feed_range[1]:.1f} s ({detection.evidence}, {detection.landmarks} landmarks, "
                     f"score {detection.score:.3f}){over}")
    play_seconds = sum(place.play.clip_seconds for place in places)
    scored = Scored(len(places), len(taken), len(detections), len(taken), bed_false, wrong,
                    (feed_seconds - play_seconds) / 3600, false=false)
    for index, place in enumerate(places):
        detection = taken.get(index)
        if detection is None:
            scored.missed_plays.append(index)
            scored.missed.append(f"{place.play.recording} ({place.play.transform}"
                                 f"{', cut short' if place.play.cut_short else ''}) at {place.audible[0]:.1f} s")
            continue
        scored.start_errors.append(abs(detection.feed_range[0] - place.audible[0]))
        scored.end_errors.append(abs(detection.feed_range[1] - place.audible[1]))
        if max(scored.start_errors[-1], scored.end_errors[-1]) > TOLERANCE_SECONDS:
            scored.off.append(f"{place.play.recording} ({place.play.transform}) at {place.audible[0]:.1f}-"
                              f"{place.audible[1]:.1f} s found at {detection.feed_range[0]:.1f}-"
                              f"{detection.feed_range[1]:.1f} s ({detection.evidence}, {detection.landmarks} "
                              "landmarks)")
        scored.latencies.append(detection.started_at - sent_at(place.audible[1]))
    return scored


def summary(scored: Scored) -> dict:
    def errors(values: list[float]) -> dict:
        if not values:
            return {}
        return {"median_s": float(np.median(values)), "p95_s": float(np.percentile(values, 95)),
                "within_0_5_s": float(np.mean(np.asarray(values) <= TOLERANCE_SECONDS + 1e-9))}

    return {
        "plays": scored.plays, "found": scored.found, "detections": scored.detections,
        "recall": scored.found / scored.plays if scored.plays else float("nan"),
        "precision": scored.right / scored.detections if scored.detections else float("nan"),
        "false_on_bed": scored.bed_false, "wrong_on_plays": scored.wrong,
        "false_per_bed_hour": scored.bed_false / scored.bed_hours if scored.bed_hours else float("nan"),
        "start_error": errors(scored.start_errors), "end_error": errors(scored.end_errors),
        "latency_s": {**percentiles(scored.latencies, (50, 95)), "max": max(scored.latencies, default=float("nan"))},
        "missed": scored.missed, "false": scored.false, "off": scored.off,
    }


# ----------------------------------------------------------------------------------------------- misses

# The monitor's stretches at the gateway's defaults (GatewaySettings.monitor_window_seconds, monitor_hop_seconds).
STRETCH_SECONDS, STRETCH_HOP_SECONDS = 10.0, 5.0
MISS_TOP_K = 50


@dataclass(frozen=True)
class Seen:
    """How SearchAudio ranks a play's recording for one query (before any threshold): its rank (None: not among
    the first MISS_TOP_K), score, landmarks and landmark share, and whether the collection's thresholds take it."""

    rank: int | None
    score: float = 0.0
    landmarks: int = 0
    share: float = 0.0
    clears: bool = False

    def __str__(self) -> str:
        if self.rank is None:
            return "not found"
        return (f"rank {self.rank + 1}, {self.landmarks} landmarks, share {self.share:.3f}, score {self.score:.3f}"
                + (", clears" if self.clears else ""))


def seen_by_search(client: audiosearch_pb2_grpc.AudioSearchServiceStub, collection: pb.Collection,
                   samples: np.ndarray, audio_id: str) -> Seen:
    reply = client.SearchAudio(pb.SearchAudioRequest(collection=collection.name, audio_content=quality.wav(samples),
                                                     top_k=MISS_TOP_K, min_score=-1.0), timeout=600)
    ids = [match.audio.id for match in reply.matches]
    if audio_id not in ids:
        return Seen(None)
    rank = ids.index(audio_id)
    match = reply.matches[rank]
    return Seen(rank, match.score, match.landmarks, match.landmark_share,
                quality.clears(match.score, match.landmarks, match.landmark_share, collection))


def monitor_stretch(audible: tuple[float, float]) -> tuple[float, float]:
    """The first of the monitor's stretches that holds the play's audible range whole, else one holding most of it."""
    ends = np.arange(STRETCH_HOP_SECONDS, audible[1] + STRETCH_SECONDS + STRETCH_HOP_SECONDS, STRETCH_HOP_SECONDS)
    stretches = [(max(0.0, float(end) - STRETCH_SECONDS), float(end)) for end in ends]
    return max(stretches, key=lambda stretch: (round(overlap(stretch, audible), 3), -stretch[0]))


def explain_misses(client: audiosearch_pb2_grpc.AudioSearchServiceStub, collection: pb.Collection,
                   feed: np.ndarray, places: list[Placed], missed: list[int], ids: dict[str, str]) -> list[str]:
    """For each missed play, how SearchAudio sees its recording in the monitor's stretch that holds it and in the
    play's audible range alone: whether the search finds it at all, and which evidence falls short."""
    lines = []
    for index in missed:
        place = places[index]
        stretch = monitor_stretch(place.audible)
        audio_id = ids[place.play.recording]
        in_stretch = seen_by_search(client, collection, feed[round(stretch[0] * RATE) : round(stretch[1] * RATE)],
                                    audio_id)
        alone = seen_by_search(client, collection,
                               feed[round(place.audible[0] * RATE) : round(place.audible[1] * RATE)], audio_id)
        lines.append(f"{place.play.recording} ({place.play.transform}{', cut short' if place.play.cut_short else ''})"
                     f" at {place.audible[0]:.1f} s, {place.audible[1] - place.audible[0]:.2f} s: in stretch "
                     f"{stretch[0]:.0f}-{stretch[1]:.0f} s {in_stretch}; alone {alone}")
    return lines


# ----------------------------------------------------------------------------------------------- streaming


@dataclass
class StreamRun:
    detections: list[Detection]
    feed_seconds: float
    wall_seconds: float
    sent: list[tuple[float, float]]  # (feed seconds sent so far, monotonic time)
    gateway_rtf: float

    def sent_at(self, feed_second: float) -> float:
        ends = np.array([end for end, _ in self.sent])
        index = min(int(np.searchsorted(ends, feed_second)), len(self.sent) - 1)
        return self.sent[index][1]


def stream(client: audiosearch_pb2_grpc.AudioSearchServiceStub, collection: str, pcm: np.ndarray,
           paced: bool) -> StreamRun:
    """The feed through MonitorAudio as s16le in CHUNK_SECONDS chunks; `paced` sends it at 1x real time."""
    data = (np.clip(pcm, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    chunk_bytes = round(CHUNK_SECONDS * RATE) * 2
    sent: list[tuple[float, float]] = []
    header = pb.MonitorAudioHeader(collection=collection, feed_label="bench.monitor", raw_format=pb.RawAudioFormat(
        sample_rate_hz=RATE, channels=1, sample_format=pb.SAMPLE_FORMAT_S16LE))
    started = time.monotonic()

    def requests() -> Iterator[pb.MonitorAudioRequest]:
        yield pb.MonitorAudioRequest(header=header)
        for offset in range(0, len(data), chunk_bytes):
            end_seconds = (offset + chunk_bytes) / 2 / RATE
            if paced:
                time.sleep(max(0.0, started + end_seconds - time.monotonic()))
            yield pb.MonitorAudioRequest(chunk=data[offset : offset + chunk_bytes])
            sent.append((min(end_seconds, len(pcm) / RATE), time.monotonic()))

    detections: dict[str, Detection] = {}
    started_at: dict[str, float] = {}
    rtf = 0.0
    for response in client.MonitorAudio(requests()):
        if response.WhichOneof("event") == "progress":
            rtf = response.progress.real_time_factor
            continue
        found = response.detection
        started_at.setdefault(found.detection_id, time.monotonic())
        if found.state == pb.DETECTION_STATE_ENDED:
            detections[found.detection_id] = Detection(
                found.detection_id, found.audio.id, (found.feed_range.start_seconds, found.feed_range.end_seconds),
                (found.reference_range.start_seconds, found.reference_range.end_seconds),
                started_at[found.detection_id], pb.MatchEvidence.Name(found.decided_by), found.landmarks,
                found.score)
    return StreamRun(list(detections.values()), len(pcm) / RATE, time.monotonic() - started, sent, rtf)


class MemorySampler:
    """Each service's RSS every MEMORY_INTERVAL_SECONDS while the block runs."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = pids
        self.samples: dict[str, list[int]] = {name: [] for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._read()

    def _run(self) -> None:
        while True:
            self._read()
            if self._stop.wait(MEMORY_INTERVAL_SECONDS):
                return

    def _read(self) -> None:
        for name, pid in self._pids.items():
            self.samples[name].append(round((tree_rss_bytes(pid) or 0) / 2**20))

    def verdicts(self) -> dict[str, dict]:
        verdicts = {}
        for name, samples in self.samples.items():
            if len(samples) < 4:
                continue
            growth = memory_growth(samples[1:])  # the first reading is before the stream starts
            verdicts[name] = {**growth, "flat": growth["trend"] <= MEMORY_GROWTH_LIMIT, "samples": len(samples)}
        return verdicts


STAGE_SUM = "audiosearch_stage_duration_seconds_sum"


def stage_seconds(before: dict, after: dict) -> dict[str, float]:
    """Seconds per (flow/stage) between two scrapes of the gateway."""
    seconds: dict[str, float] = {}
    for (name, labels), value in after.items():
        if name == STAGE_SUM:
            key = "/".join(value for _, value in labels)
            seconds[key] = round(value - before.get((name, labels), 0.0), 3)
    return {key: value for key, value in sorted(seconds.items()) if value > 0}


# ----------------------------------------------------------------------------------------------- main


def load(folder: Path, limit: int | None, rng: np.random.Generator) -> list[quality.Sound]:
    sounds, skipped = quality.load_sounds(folder, limit, rng)
    for line in skipped:
        print(f"  skipped {line}", file=sys.stderr)
    return sounds


def index(client: audiosearch_pb2_grpc.AudioSearchServiceStub, collection: str, sounds: list[quality.Sound],
          workers: int) -> dict[str, str]:
    """name -> audio id of the sounds the gateway took."""
    records = quality.run_parallel(lambda sound: quality.ingest(client, collection, sound), sounds, workers, "ingest")
    return {sound.name: record.id for sound, record in zip(sounds, records, strict=True)
            if not isinstance(record, str)}


def run(args: argparse.Namespace, gateway: str, pids: dict[str, int], metrics_port: int | None) -> dict:
    started = time.monotonic()
    before = machine()
    rng = np.random.default_rng(args.seed)
    sounds = load(args.sounds, args.limit, rng)
    indexed, held_back, _ = quality.split_by_family(sounds, np.random.default_rng([args.seed, 1]))
    tracks = load(args.music, args.tracks, rng)
    held_tracks = max(1, round(len(tracks) * quality.HELD_BACK_FRACTION)) if tracks else 0
    indexed_tracks, held_back_tracks = tracks[held_tracks:], tracks[:held_tracks]
    print(f"{len(indexed)} sounds and {len(indexed_tracks)} tracks to index; {len(held_back)} sounds and "
          f"{len(held_back_tracks)} tracks held back", file=sys.stderr)
    options = [("grpc.max_send_message_length", 256 * 1024 * 1024)]
    with grpc.insecure_channel(gateway, options=options) as channel:
        client = audiosearch_pb2_grpc.AudioSearchServiceStub(channel)
        quality.ensure_collection(client, args.collection)
        clock = time.monotonic()
        ids = index(client, args.collection, indexed + indexed_tracks, args.workers)
        ingest_seconds = time.monotonic() - clock
        clock = time.monotonic()
        calibrated = client.CalibrateCollection(pb.CalibrateCollectionRequest(
            collection=args.collection, target_false_positive_rate=DEFAULT_TARGET_FPR), timeout=3600).collection
        calibrate_seconds = time.monotonic() - clock
        names = {audio_id: name for name, audio_id in ids.items()}

        clock = time.monotonic()
        by_name = {sound.name: sound for sound in indexed + indexed_tracks if sound.name in ids}
        track_names = {track.name for track in indexed_tracks}
        recordings = [Recording(sound.name, sound.seconds, sound.name in track_names) for sound in by_name.values()]
        feed_seconds = args.minutes * 60
        plays = plan_plays(recordings, feed_seconds, args.insertions, np.random.default_rng([args.seed, 2]))
        transformer = quality.Transformer(held_back, max_query_seconds=MAX_SOUND_SECONDS + 1)
        clips = [clip_of(play, by_name[play.recording], transformer, np.random.default_rng([args.seed, 3, number]))
                 for number, play in enumerate(plays)]
        bed_rng = np.random.default_rng([args.seed, 4])
        bed_samples = bed(round(feed_seconds * RATE), [s.samples for s in held_back + held_back_tracks],
                          speech(bed_rng), bed_rng)
        feed, places = render(feed_seconds, plays, clips, bed_samples)
        del bed_samples, clips
        build_seconds = time.monotonic() - clock
        print(f"feed of {feed_seconds / 60:g} min with {len(plays)} plays built in {build_seconds:.0f} s",
              file=sys.stderr)

        runs: dict[str, dict] = {}
        scrape_before = scrape(metrics_port) if metrics_port else {}
        with MemorySampler(pids) as memory:
            full = stream(client, args.collection, feed, paced=False)
        stages = stage_seconds(scrape_before, scrape(metrics_port)) if metrics_port else {}
        runs["full"] = {**summary(score(places, full.detections, feed_seconds, names, full.sent_at)),
                        "feed_seconds": full.feed_seconds, "wall_seconds": full.wall_seconds,
                        "real_time_factor": full.feed_seconds / full.wall_seconds,
                        "gateway_real_time_factor": full.gateway_rtf}
        if args.misses:
            missed = score(places, full.detections, feed_seconds, names, full.sent_at).missed_plays
            runs["full"]["misses_explained"] = explain_misses(client, calibrated, feed, places, missed, ids)
        print(f"full speed: {full.feed_seconds:.0f} s of feed in {full.wall_seconds:.0f} s", file=sys.stderr)
        if args.realtime_minutes:
            paced_seconds = min(feed_seconds, args.realtime_minutes * 60)
            first = [place for place in places if place.play.feed_end <= paced_seconds]
            paced = stream(client, args.collection, feed[: round(paced_seconds * RATE)], paced=True)
            runs["paced"] = {**summary(score(first, paced.detections, paced_seconds, names, paced.sent_at)),
                             "feed_seconds": paced.feed_seconds, "wall_seconds": paced.wall_seconds,
                             "real_time_factor": paced.feed_seconds / paced.wall_seconds}
    return {
        "info": {"sounds": str(args.sounds), "music": str(args.music), "seed": args.seed, "minutes": args.minutes,
                 "realtime_minutes": args.realtime_minutes, "indexed_sounds": len(indexed),
                 "indexed_tracks": len(indexed_tracks), "held_back_sounds": len(held_back),
                 "held_back_tracks": len(held_back_tracks), "recordings_indexed": len(ids),
                 "model": f"{calibrated.model.name}:{calibrated.model.version}",
                 "untrained": calibrated.model.untrained, "threshold": calibrated.score_threshold,
                 "landmark_threshold": calibrated.landmark_threshold,
                 "landmark_share_threshold": calibrated.landmark_share_threshold,
                 "threshold_source": calibrated.threshold_source,
                 "ingest_seconds": ingest_seconds, "calibrate_seconds": calibrate_seconds,
                 "build_seconds": build_seconds, "total_seconds": time.monotonic() - started,
                 "plays_by_transform": {name: sum(play.transform == name for play in plays) for name in TRANSFORMS},
                 "music_plays": sum(play.music for play in plays), "replays": sum(play.replay for play in plays),
                 "cut_short": sum(play.cut_short for play in plays)},
        "runs": runs, "stages_seconds": stages, "memory_mb": memory.verdicts(),
        "machine_before": before, "machine_after": machine(),
        "plays": [asdict(place.play) | {"audible": place.audible, "reference_range": place.reference_range}
                  for place in places],
    }


def table(result: dict) -> str:
    info = result["info"]
    lines = [f"feed {info['minutes']:g} min: {sum(info['plays_by_transform'].values())} plays "
             f"({info['music_plays']} music excerpts, {info['replays']} replays, {info['cut_short']} cut short; "
             + ", ".join(f"{name} {count}" for name, count in info["plays_by_transform"].items()) + ")",
             f"{'run':6s} {'feed s':>7s} {'RTF':>6s} {'recall':>7s} {'prec':>6s} {'false/h':>7s} "
             f"{'start<=.5':>9s} {'end<=.5':>8s} {'start p50':>9s} {'lat p50':>7s} {'lat p95':>7s} {'lat max':>7s}"]
    for name, run_result in result["runs"].items():
        start, end, latency = run_result["start_error"], run_result["end_error"], run_result["latency_s"]
        lines.append(
            f"{name:6s} {run_result['feed_seconds']:7.0f} {run_result['real_time_factor']:6.2f} "
            f"{run_result['recall']:7.3f} {run_result['precision']:6.3f} {run_result['false_per_bed_hour']:7.2f} "
            f"{start.get('within_0_5_s', float('nan')):9.3f} {end.get('within_0_5_s', float('nan')):8.3f} "
            f"{start.get('median_s', float('nan')):9.2f} {latency.get('p50', float('nan')):7.2f} "
            f"{latency.get('p95', float('nan')):7.2f} {latency.get('max', float('nan')):7.2f}")
    for name, run_result in result["runs"].items():
        lines.append(f"{name}: {run_result['found']}/{run_result['plays']} plays found, {run_result['detections']} "
                     f"detections ({run_result['false_on_bed']} on the bed, {run_result['wrong_on_plays']} wrong "
                     "over a play)")
        lines += [f"  missed: {item}" for item in run_result["missed"][:12]]
        lines += [f"  false: {item}" for item in run_result["false"][:12]]
        lines += [f"  off: {item}" for item in run_result["off"][:12]]
        lines += [f"  search: {item}" for item in run_result.get("misses_explained", [])]
    if result["stages_seconds"]:
        feed_minutes = result["runs"]["full"]["feed_seconds"] / 60
        lines.append("gateway stages over the full-speed run, s per feed minute: " + ", ".join(
            f"{name} {seconds / feed_minutes:.2f}" for name, seconds in result["stages_seconds"].items()))
    for name, item in result["memory_mb"].items():
        lines.append(f"memory {name:8s} {item['after_warmup_mb']:6d} -> {item['end_mb']:6d} MB (peak "
                     f"{item['peak_mb']}, trend {item['trend']:+.1%} over {item['samples']} samples): "
                     f"{'flat' if item['flat'] else 'GROWING'}")
    lines += [f"calibrated (CLI defaults, target FPR {DEFAULT_TARGET_FPR:g}): threshold {info['threshold']:.4f}, "
              f"landmarks {info['landmark_threshold']}, share {info['landmark_share_threshold']:.4f}",
              f"catalog: {info['indexed_sounds']} sounds + {info['indexed_tracks']} tracks indexed "
              f"({info['recordings_indexed']} taken); bed from {info['held_back_sounds']} sounds and "
              f"{info['held_back_tracks']} tracks held back; model {info['model']}; seed {info['seed']}",
              f"time: ingest {info['ingest_seconds']:.0f} s, calibrate {info['calibrate_seconds']:.0f} s, build "
              f"{info['build_seconds']:.0f} s, total {info['total_seconds']:.0f} s",
              shared_load_note(result["machine_before"], result["machine_after"])]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.monitor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sounds", type=Path, default=quality.DEFAULT_SOUNDS)
    parser.add_argument("--music", type=Path, default=DEFAULT_MUSIC, help="dev music (scripts/fetch-dev-music.sh)")
    parser.add_argument("--minutes", type=float, default=60.0, help="feed length (default %(default)s)")
    parser.add_argument("--insertions", type=int, default=120, help="plays in the feed (default %(default)s)")
    parser.add_argument("--realtime-minutes", type=float, default=5.0,
                        help="the first minutes of the feed streamed again at 1x (default %(default)s; 0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, help="use at most N dev sounds (a seeded random choice)")
    parser.add_argument("--tracks", type=int, help="use at most N dev music tracks (a seeded random choice)")
    parser.add_argument("--collection", default="bench_monitor")
    parser.add_argument("--workers", type=int, default=2, help="ingests in flight (default %(default)s)")
    parser.add_argument("--gateway", help="a running gateway to use instead of starting a suite")
    parser.add_argument("--misses", action="store_true",
                        help="search each play the full-speed run missed, in its stretch and alone, with SearchAudio")
    parser.add_argument("--json", help="write the result here (- for stdout)")
    args = parser.parse_args()
    for folder in (args.sounds, args.music):
        if not folder.is_dir():
            raise SystemExit(f"no folder {folder}; see scripts/fetch-dev-sounds.sh and scripts/fetch-dev-music.sh")
    if args.gateway:
        result = run(args, args.gateway, {}, None)
    else:
        with own_suite() as suite:
            pids = {plan.name: process.pid for plan, process in zip(suite.suite.plans, suite.suite.processes,
                                                                    strict=True)}
            result = run(args, suite.gateway, pids, suite.ports.gateway_metrics)
    emit(table(result), result, args.json)


if __name__ == "__main__":
    main()
