"""MonitorAudio: a feed of any length in, every play of a collection's recordings out, as it happens.

The feed is decoded as it arrives (audio/feed.py) into a ring of its most recent `monitor_window_seconds`. Each
time `monitor_hop_seconds` of new feed have arrived, the stretch ending there is searched exactly as a SearchAudio
query is (the same windows, landmarks, lookups and the same decision by the collection's thresholds, or the
header's), and its matches, moved to feed time, go to the occurrence tracker (query/occurrences.py), whose starts
and ends are sent as they happen. Stretches overlap, so a play that starts anywhere lies whole in some stretch and
is found with the start of its first matched stretch. Memory is the ring, the decoder's bounded queue and the
open occurrences, never the feed's length.

A stretch's windows differ from a SearchAudio query's in one way: they lie on one grid of the feed, a stored hop
apart (`WINDOWS_PER_STORED_HOP`), not a sixteenth of a window apart from the stretch's start, and each is embedded
once: the next stretch, which overlaps this one, takes the vectors of the windows they share (`_WindowVectors`).
Embedding is nearly all of a monitor's cost (the Cnn14 embedder takes ~31 s of audio a second on two cores, and
a query's density embeds each feed second sixteen times over two stretches), while landmarks, which align a play
to a frame, are extracted from the whole stretch as a query's are; docs/benchmarks.md (bench.monitor) has the
measurements. The short sounds a stretch holds are looped into windows of their own, as a query's are.

The gateway holds at most `max_concurrent_monitors` at once (RESOURCE_EXHAUSTED beyond). On shutdown each stream
ends its open detections and then the call with UNAVAILABLE (SHUTTING_DOWN) and the feed second to stream again
from: the start of the stretch after the last one searched, less the overlap, so the resumed feed's first
stretch holds the same context.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import numpy as np
from google.protobuf import timestamp_pb2

from audiosearch.common.errors import InvalidArgument, ResourceExhausted, Unavailable
from audiosearch.gateway import validation
from audiosearch.gateway.audio.decoding import SILENCE_PEAK, AudioError, DecodedAudio, resample
from audiosearch.gateway.audio.feed import Feed, RawFormat
from audiosearch.gateway.audio.pipeline import AudioPipeline, EmbeddedAudio
from audiosearch.gateway.audio.segments import Segments, cut_segments, event_segments, event_spans
from audiosearch.gateway.backends.admission import Work
from audiosearch.gateway.backends.embedder import Embeddings
from audiosearch.gateway.collections import Collections
from audiosearch.gateway.ingest.uploads import within_idle_limit
from audiosearch.gateway.query.matching import Evidence
from audiosearch.gateway.query.occurrences import OccurrenceEvent, OccurrenceState, OccurrenceTracker, StretchMatch
from audiosearch.gateway.query.search import Query
from audiosearch.gateway.settings import GatewaySettings
from audiosearch.gateway.stages import stage
from audiosearch.v1 import audiosearch_pb2 as pb

log = logging.getLogger(__name__)

STRETCH_TOP_K = 10
# A stretch's regular windows start every stored hop / this on the feed's grid (a query's start every window / 8).
WINDOWS_PER_STORED_HOP = 1
# A monitor behind its feed (the audio of several stretches already arrived) embeds their windows in one request:
# bigger batches, and chunks for both embedder instances. Caught up, it searches each stretch as it completes.
MAX_STRETCHES_TOGETHER = 4
MAX_FEED_LABEL_CHARS = 512
# A match's landmarks may begin a frame or two before the span of the short sound that holds them.
EVENT_EDGE_SLACK_SECONDS = 0.05
_WAIT_SECONDS = 0.25
_SAMPLE_FORMATS = {pb.SAMPLE_FORMAT_S16LE: "s16le", pb.SAMPLE_FORMAT_F32LE: "f32le"}
_EVIDENCE = {pb.MATCH_EVIDENCE_EMBEDDING: Evidence.EMBEDDING, pb.MATCH_EVIDENCE_LANDMARKS: Evidence.LANDMARKS,
             pb.MATCH_EVIDENCE_BOTH: Evidence.BOTH}
_EVIDENCE_MESSAGE = {evidence: value for value, evidence in _EVIDENCE.items()}
_STATES = {OccurrenceState.STARTED: pb.DETECTION_STATE_STARTED, OccurrenceState.ENDED: pb.DETECTION_STATE_ENDED}


class Monitors:
    """The gateway's monitor streams: a bounded number at once, each drained when the gateway shuts down."""

    def __init__(self, settings: GatewaySettings, collections: Collections, query: Query,
                 pipeline: AudioPipeline) -> None:
        self._settings = settings
        self._collections = collections
        self._query = query
        self._pipeline = pipeline
        self._slots = threading.BoundedSemaphore(settings.max_concurrent_monitors)
        self._draining = threading.Event()

    def monitor(self, requests: Iterator[pb.MonitorAudioRequest], context: grpc.ServicerContext
                ) -> Iterator[pb.MonitorAudioResponse]:
        requests = within_idle_limit(requests, self._settings.upload_idle_seconds)
        first = next(requests, None)
        if first is None or first.WhichOneof("payload") != "header":
            raise InvalidArgument("the first message of MonitorAudio must be the header", field="header")
        header = first.header
        raw_format = _checked_header(header)
        if self._draining.is_set():
            raise _shutting_down(header.feed_offset_seconds)
        with self._slot():
            collection = _with_thresholds(self._collections.get_for_model(header.collection), header.thresholds)
            threshold = (header.thresholds.score_threshold if header.thresholds.HasField("score_threshold")
                         else collection.score_threshold)
            session = _Session(self._settings, self._query, self._pipeline, collection, threshold, header,
                               self._draining)
            feed = Feed(_chunks(requests), raw_format, collection.model.sample_rate_hz)
            context.add_callback(session.stop)
            context.add_callback(feed.close)
            try:
                yield from session.run(feed)
            finally:
                feed.close()

    def drain(self) -> None:
        """Shutting down: every stream ends its open detections, then the call with where to resume."""
        self._draining.set()

    @contextmanager
    def _slot(self) -> Iterator[None]:
        if not self._slots.acquire(blocking=False):
            raise ResourceExhausted(f"{self._settings.max_concurrent_monitors} monitors are running on this "
                                    "gateway; retry shortly or on another", reason="OVERLOADED")
        try:
            yield
        finally:
            self._slots.release()


def _chunks(requests: Iterator[pb.MonitorAudioRequest]) -> Iterator[bytes]:
    for request in requests:
        if request.WhichOneof("payload") != "chunk":
            raise InvalidArgument("only the first message of MonitorAudio may be a header", field="header")
        yield request.chunk


def _checked_header(header: pb.MonitorAudioHeader) -> RawFormat | None:
    validation.collection_name(header.collection, field="header.collection")
    validation.audio_filter(header.filter)
    if len(header.feed_label) > MAX_FEED_LABEL_CHARS:
        raise InvalidArgument(f"feed_label has {len(header.feed_label)} characters, at most {MAX_FEED_LABEL_CHARS}",
                              field="header.feed_label")
    if not 0.0 <= header.feed_offset_seconds < 1e9:
        raise InvalidArgument(f"feed_offset_seconds {header.feed_offset_seconds} is outside [0, 1e9)",
                              field="header.feed_offset_seconds")
    thresholds = header.thresholds
    if thresholds.HasField("score_threshold"):
        validation.score_threshold(thresholds.score_threshold, field="header.thresholds.score_threshold")
    if thresholds.HasField("landmark_threshold") and thresholds.landmark_threshold < 0:
        raise InvalidArgument("landmark_threshold may not be negative", field="header.thresholds.landmark_threshold")
    if thresholds.HasField("landmark_share_threshold") and not 0.0 <= thresholds.landmark_share_threshold <= 1.0:
        raise InvalidArgument("landmark_share_threshold is outside [0, 1]",
                              field="header.thresholds.landmark_share_threshold")
    if not header.HasField("raw_format"):
        return None
    raw = header.raw_format
    if raw.sample_format not in _SAMPLE_FORMATS:
        raise InvalidArgument("raw_format.sample_format must be S16LE or F32LE", field="header.raw_format")
    try:
        return RawFormat(raw.sample_rate_hz, raw.channels, _SAMPLE_FORMATS[raw.sample_format])
    except AudioError as error:
        raise InvalidArgument(f"raw_format: {error}", field="header.raw_format") from None


def _with_thresholds(collection: pb.Collection, thresholds: pb.MonitorThresholds) -> pb.Collection:
    """The collection as the monitor searches it: the header's landmark thresholds in place of its own."""
    searched = pb.Collection()
    searched.CopyFrom(collection)
    if thresholds.HasField("landmark_threshold"):
        searched.landmark_threshold = thresholds.landmark_threshold
    if thresholds.HasField("landmark_share_threshold"):
        searched.landmark_share_threshold = thresholds.landmark_share_threshold
    return searched


def _shutting_down(resume_from_seconds: float) -> Unavailable:
    return Unavailable(f"the gateway is shutting down; stream the feed again from second {resume_from_seconds:.3f} "
                       "(as feed_offset_seconds)", reason="SHUTTING_DOWN",
                       resume_from_seconds=f"{resume_from_seconds:.3f}")


def _next_block(feed: Feed, wait_seconds: float = _WAIT_SECONDS) -> np.ndarray | None:
    try:
        return feed.next_block(wait_seconds)
    except AudioError as error:
        raise InvalidArgument(str(error), reason=error.reason) from error


def grid_segments(samples: np.ndarray, sample_rate_hz: int, window_seconds: float, grid_seconds: float,
                  origin: int, final: bool) -> tuple[Segments, list[int | bytes]]:
    """A stretch's windows: those starting on the feed's grid (every `grid_seconds` from the feed's first sample;
    `origin` is the feed frame of the stretch's first sample) that fit in it, and at the feed's end (`final`) one
    more reaching its last sample; then its short sounds, looped (segments.event_segments). With each window, what
    identifies it across stretches: the feed frame where a grid window starts, the digest of any other window's
    samples (a loop of a short sound that the next stretch, overlapping this one, may loop the same)."""
    window, grid = round(window_seconds * sample_rate_hz), round(grid_seconds * sample_rate_hz)
    skip = -origin % grid
    fitting = (len(samples) - skip - window) // grid + 1
    if fitting < 1:
        regular = cut_segments(samples, sample_rate_hz, window_seconds, grid_seconds)
        keys: list[int | bytes] = [_digest(looped) for looped in regular.windows]
        skip = 0
    else:
        # Cut to the grid windows' extent, so cut_segments adds no window off the grid (but at the feed's end).
        last = len(samples) if final else skip + (fitting - 1) * grid + window
        regular = cut_segments(samples[skip:last], sample_rate_hz, window_seconds, grid_seconds)
        keys = [origin + skip + round(start * sample_rate_hz) for start in regular.starts_seconds]
    shift = skip / sample_rate_hz
    events = event_segments(samples, sample_rate_hz, window_seconds)
    segments = Segments(np.concatenate([regular.windows, events.windows]),
                        np.concatenate([regular.starts_seconds + shift, events.starts_seconds]),
                        np.concatenate([regular.ends_seconds + shift, events.ends_seconds]))
    return segments, keys + [_digest(looped) for looped in events.windows]


def matched_span(query_range: tuple[float, float], offset: float, recording_seconds: float, stretch_seconds: float,
                 events: list[tuple[float, float]]) -> tuple[float, float]:
    """The stretch seconds a match covers: its query range, widened to the short sounds of the stretch that hold
    it; a range of no length that none holds, to the whole recording as the match places it (`offset`: recording
    time minus stretch time) when that is shorter than the stretch; never past the recording's ends nor the
    stretch's.

    Landmarks mark where peaks start, so they stop short of a sound's end, and a short sound's aligned landmarks
    can all start on one frame: a range of no length, where the audio that matched is the whole sound."""
    first, last = query_range
    holding = [(start, end) for start, end in events
               if start - EVENT_EDGE_SLACK_SECONDS <= first and last <= end + EVENT_EDGE_SLACK_SECONDS]
    if holding:
        first, last = min(first, *(start for start, _ in holding)), max(last, *(end for _, end in holding))
    elif last <= first and 0 < recording_seconds < stretch_seconds:
        first, last = min(first, -offset), max(last, recording_seconds - offset)
    recording_end = recording_seconds - offset if recording_seconds > 0 else stretch_seconds
    first = max(first, -offset, 0.0)
    last = min(last, recording_end, stretch_seconds)
    return (first, last) if last > first else query_range


def _digest(samples: np.ndarray) -> bytes:
    return hashlib.blake2b(samples.tobytes(), digest_size=16).digest()


class _WindowVectors:
    """The vectors (and tag probabilities) of the windows the last stretch embedded, by what identifies each
    (grid_segments): only those the next stretch shares are kept, so memory holds one stretch's worth."""

    def __init__(self, pipeline: AudioPipeline) -> None:
        self._pipeline = pipeline
        self._known: dict[int | bytes, tuple[np.ndarray, np.ndarray]] = {}

    def embedded(self, stretches: list[tuple[DecodedAudio, Segments, list[int | bytes]]], config: pb.SegmentConfig
                 ) -> list[EmbeddedAudio]:
        """Each stretch (its audio, windows and their keys, in feed order) with its vectors; the windows not seen
        before go to the embedder in one request, each once."""
        wanted: dict[int | bytes, np.ndarray] = {}
        for _, segments, keys in stretches:
            for window, key in zip(segments.windows, keys, strict=True):
                if key not in self._known and key not in wanted:
                    wanted[key] = window
        known = dict(self._known)
        if wanted:
            windows = np.stack(list(wanted.values()))
            batch = Segments(windows, np.zeros(len(windows)), np.zeros(len(windows)))
            fresh = self._pipeline.embed(stretches[0][0], config, lambda *_: batch, Work.MONITOR).embeddings
            known |= {key: (fresh.vectors[row], fresh.tag_probabilities[row]) for row, key in enumerate(wanted)}
        if stretches:
            self._known = {key: known[key] for key in stretches[-1][2]}
        return [EmbeddedAudio(audio, segments, Embeddings(np.stack([known[key][0] for key in keys]),
                                                          np.stack([known[key][1] for key in keys])))
                for audio, segments, keys in stretches]


def _read_ahead(feed: Feed, ring: _Ring, until: int, keep_from: int) -> None:
    """Adds the blocks that have already arrived, until the ring reaches stream frame `until`, without waiting."""
    while ring.end < until:
        block = _next_block(feed, wait_seconds=0.0)
        if block is None:
            return
        ring.append(block, keep_from=keep_from)


@dataclass
class _Ring:
    """The most recent samples of the feed; `start` is the feed frame of the first one held."""

    samples: np.ndarray
    start: int = 0

    @property
    def end(self) -> int:
        return self.start + len(self.samples)

    def append(self, block: np.ndarray, keep_from: int) -> None:
        """Adds a block, dropping what lies before feed frame `keep_from`."""
        drop = max(0, min(keep_from - self.start, len(self.samples)))
        self.samples = np.concatenate([self.samples[drop:], block])
        self.start += drop

    def between(self, first: int, last: int) -> np.ndarray:
        return self.samples[max(0, first - self.start) : max(0, last - self.start)]


class _Session:
    """One feed: stretches searched as the audio arrives, occurrences tracked, events and progress sent."""

    def __init__(self, settings: GatewaySettings, query: Query, pipeline: AudioPipeline, collection: pb.Collection,
                 score_threshold: float, header: pb.MonitorAudioHeader, draining: threading.Event) -> None:
        self._query = query
        self._pipeline = pipeline
        self._collection = collection
        self._threshold = score_threshold
        self._filter = header.filter
        self._label = header.feed_label
        self._offset = header.feed_offset_seconds
        self._start_time = header.start_time.ToDatetime(UTC) if header.HasField("start_time") else None
        self._window_seconds = settings.monitor_window_seconds
        self._hop_seconds = settings.monitor_hop_seconds
        self._progress_seconds = settings.monitor_progress_seconds
        self._draining = draining
        self._stopped = threading.Event()
        self._tracker = OccurrenceTracker()
        self._windows = _WindowVectors(pipeline)
        self._records: dict[str, pb.AudioRecord] = {}
        self._started = time.monotonic()
        self._analysed_seconds = self._offset  # feed seconds, the offset included
        self._received_seconds = 0.0  # since this stream's first byte

    def stop(self) -> None:
        self._stopped.set()

    def run(self, feed: Feed) -> Iterator[pb.MonitorAudioResponse]:
        rate = feed.sample_rate_hz
        window, hop = round(self._window_seconds * rate), round(self._hop_seconds * rate)
        ring = _Ring(np.zeros(0, np.float32))
        next_end = hop
        last_progress = time.monotonic()
        while not self._stopped.is_set():
            if self._draining.is_set():
                yield from self._drained(window, hop, rate)
            if ring.end >= next_end:
                _read_ahead(feed, ring, next_end + (MAX_STRETCHES_TOGETHER - 1) * hop, keep_from=next_end - window)
                self._received_seconds = ring.end / rate
                ends = range(next_end, min(ring.end, next_end + (MAX_STRETCHES_TOGETHER - 1) * hop) + 1, hop)
                yield from self._search(ring, [(max(0, end - window), end) for end in ends], rate, final=False)
                next_end = ends[-1] + hop
            else:
                block = _next_block(feed)
                if block is None and feed.ended:
                    break
                if block is not None:
                    ring.append(block, keep_from=next_end - window)
                    self._received_seconds = ring.end / rate
            if time.monotonic() - last_progress >= self._progress_seconds:
                last_progress = time.monotonic()
                yield pb.MonitorAudioResponse(progress=self._progress(len(self._tracker.open)))
        if self._stopped.is_set():
            return
        if ring.end == 0:
            raise InvalidArgument("the feed holds no audio", reason="INVALID_AUDIO")
        if ring.end > next_end - hop:
            yield from self._search(ring, [(max(0, ring.end - window), ring.end)], rate, final=True)
        yield from self._events(self._tracker.finish())
        yield pb.MonitorAudioResponse(progress=self._progress(0))
        log.info("monitor finished", extra={"collection": self._collection.name, "feed_label": self._label,
                                            "audio_seconds": round(self._analysed_seconds, 1),
                                            "elapsed_seconds": round(time.monotonic() - self._started, 1)})

    def _drained(self, window: int, hop: int, rate: int) -> Iterator[pb.MonitorAudioResponse]:
        yield from self._events(self._tracker.finish())
        overlap_seconds = (window - hop) / rate
        raise _shutting_down(self._offset + max(0.0, self._analysed_seconds - self._offset - overlap_seconds))

    def _search(self, ring: _Ring, stretches: list[tuple[int, int]], rate: int, final: bool
                ) -> Iterator[pb.MonitorAudioResponse]:
        """Stretches ([first, last) stream frames at the feed's `rate`) in feed order, their windows embedded in one
        request, then each searched and tracked in turn."""
        model_rate = self._collection.model.sample_rate_hz
        config = self._collection.segment_config
        audible: dict[int, tuple[DecodedAudio, Segments, list[int | bytes]]] = {}
        with stage("monitor", "embed"):
            for first, last in stretches:
                samples = ring.between(first, last)
                if len(samples) and float(np.abs(samples).max()) >= SILENCE_PEAK:
                    audio = DecodedAudio(resample(samples, rate, model_rate), model_rate, rate, 1, "feed")
                    audible[first] = (audio, *grid_segments(audio.samples, model_rate, config.window_seconds,
                                                            config.hop_seconds / WINDOWS_PER_STORED_HOP,
                                                            round(first * model_rate / rate), final))
            embedded = dict(zip(audible, self._windows.embedded(list(audible.values()), config), strict=True))
        for first, last in stretches:
            if self._draining.is_set() or self._stopped.is_set():
                return  # the stretches left are streamed again from the second to resume from
            matches = self._stretch_matches(embedded[first], self._offset + first / rate) if first in embedded else []
            self._analysed_seconds = self._offset + last / rate
            yield from self._events(self._tracker.observe(self._analysed_seconds, matches))

    def _stretch_matches(self, embedded: EmbeddedAudio, stretch_start: float) -> list[StretchMatch]:
        with stage("monitor", "match"):
            found = self._query.match(self._collection, embedded, STRETCH_TOP_K, self._threshold, self._filter)
        events = event_spans(embedded.segments, self._collection.segment_config.window_seconds)
        matches = []
        for match in found:
            self._records[match.audio.id] = match.audio
            query_range = (match.query_range.start_seconds, match.query_range.end_seconds)
            reference_range = (match.reference_range.start_seconds, match.reference_range.end_seconds)
            offset = reference_range[0] - query_range[0]
            spanned = matched_span(query_range, offset, match.audio.duration_seconds,
                                   embedded.audio.duration_seconds, events)
            if spanned != query_range:
                reference_range = (spanned[0] + offset, spanned[1] + offset)
            matches.append(StretchMatch(
                audio_id=match.audio.id, feed_range=(stretch_start + spanned[0], stretch_start + spanned[1]),
                reference_range=reference_range, score=match.score, landmarks=match.landmarks,
                landmark_share=match.landmark_share, evidence=_EVIDENCE[match.decided_by]))
        return matches

    def _events(self, events: list[OccurrenceEvent]) -> Iterator[pb.MonitorAudioResponse]:
        for event in events:
            yield pb.MonitorAudioResponse(detection=self._detection(event))
            if event.state is OccurrenceState.ENDED:
                still_open = {occurrence.audio_id for occurrence in self._tracker.open}
                if event.occurrence.audio_id not in still_open:
                    self._records.pop(event.occurrence.audio_id, None)

    def _detection(self, event: OccurrenceEvent) -> pb.MonitorDetection:
        occurrence = event.occurrence
        strongest = occurrence.strongest
        detection = pb.MonitorDetection(
            detection_id=occurrence.detection_id, state=_STATES[event.state],
            audio=self._records[occurrence.audio_id],
            feed_range=pb.TimeRange(start_seconds=occurrence.feed_range[0], end_seconds=occurrence.feed_range[1]),
            reference_range=pb.TimeRange(start_seconds=occurrence.reference_range[0],
                                         end_seconds=occurrence.reference_range[1]),
            score=strongest.score, landmarks=strongest.landmarks, landmark_share=strongest.landmark_share,
            decided_by=_EVIDENCE_MESSAGE[strongest.evidence], feed_label=self._label,
        )
        if self._start_time is not None:
            detection.feed_start_time.CopyFrom(self._wall_clock(occurrence.feed_range[0]))
            detection.feed_end_time.CopyFrom(self._wall_clock(occurrence.feed_range[1]))
        return detection

    def _wall_clock(self, feed_seconds: float) -> timestamp_pb2.Timestamp:
        assert self._start_time is not None
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime(self._start_time + timedelta(seconds=feed_seconds - self._offset))
        return stamp

    def _progress(self, open_detections: int) -> pb.MonitorProgress:
        elapsed = time.monotonic() - self._started
        analysed = self._analysed_seconds - self._offset
        pending = max(0.0, self._received_seconds - analysed)
        lag = pending
        if self._start_time is not None:
            lag = (datetime.now(UTC) - self._start_time).total_seconds() - analysed
        return pb.MonitorProgress(
            audio_seconds=self._analysed_seconds, pending_seconds=pending, elapsed_seconds=elapsed,
            real_time_factor=analysed / elapsed if elapsed > 0 else 0.0, lag_seconds=lag,
            open_detections=open_detections)
