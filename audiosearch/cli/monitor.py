"""`audiosearch monitor`: stream a feed (a file, or stdin from ffmpeg or arecord) and print each play as it is
detected: a line when it starts and one when it ends, or JSON lines with --json; progress goes to stderr."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import BinaryIO

from audiosearch.cli import output
from audiosearch.cli.client import CHUNK_BYTES
from audiosearch.v1 import audiosearch_pb2 as pb

STDIN = "-"
RAW_FORMATS = {"s16le": pb.SAMPLE_FORMAT_S16LE, "f32le": pb.SAMPLE_FORMAT_F32LE}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="FILE|-", help="the feed: an audio file, or - to read it from stdin")
    parser.add_argument("--label", default="", metavar="TEXT", help="the feed's name, echoed in each detection "
                        "(default: the file name, or 'stdin')")
    parser.add_argument("--start-time", type=wall_clock, default=None, metavar="TIME",
                        help="wall-clock time of the feed's start (ISO 8601, or 'now'): detections get wall-clock "
                        "times as well")
    parser.add_argument("--feed-offset", type=float, default=0.0, metavar="SECONDS",
                        help="feed seconds before the first byte sent (to resume a feed where a gateway left it)")
    parser.add_argument("--min-score", type=float, default=None, metavar="X",
                        help="score threshold overriding the collection's")
    parser.add_argument("--raw-rate", type=int, default=0, metavar="HZ",
                        help="the feed is headerless PCM at this sample rate (default: a container ffmpeg reads)")
    parser.add_argument("--raw-channels", type=int, default=1, metavar="N", help="channels of raw PCM (default: 1)")
    parser.add_argument("--raw-format", choices=sorted(RAW_FORMATS), default="s16le",
                        help="sample format of raw PCM (default: s16le)")


def wall_clock(text: str) -> datetime:
    if text == "now":
        return datetime.now(UTC)
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 time or 'now', got {text!r}") from None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def header_from(args: argparse.Namespace) -> pb.MonitorAudioHeader:
    label = args.label or ("stdin" if args.source == STDIN else args.source.rsplit("/", 1)[-1])
    header = pb.MonitorAudioHeader(collection=args.collection, feed_label=label,
                                   feed_offset_seconds=args.feed_offset,
                                   filter=pb.AudioFilter(tags=args.tag, metadata=args.meta))
    if args.start_time is not None:
        header.start_time.FromDatetime(args.start_time)
    if args.min_score is not None:
        header.thresholds.score_threshold = args.min_score
    if args.raw_rate:
        header.raw_format.CopyFrom(pb.RawAudioFormat(sample_rate_hz=args.raw_rate, channels=args.raw_channels,
                                                     sample_format=RAW_FORMATS[args.raw_format]))
    return header


@contextmanager
def opened_feed(source: str) -> Iterator[BinaryIO]:
    """The feed's byte stream: stdin for `-`, else the file (OSError when it cannot be opened)."""
    if source == STDIN:
        yield sys.stdin.buffer
        return
    with open(source, "rb") as handle:
        yield handle


def chunks_of(stream: BinaryIO) -> Iterator[bytes]:
    """The feed's bytes as they become readable: a live pipe is sent as it arrives, not when it ends."""
    read = getattr(stream, "read1", stream.read)
    while chunk := read(CHUNK_BYTES):
        yield chunk


def detection_to_dict(detection: pb.MonitorDetection) -> output.JsonDict:
    return {
        "event": pb.DetectionState.Name(detection.state).removeprefix("DETECTION_STATE_").lower(),
        "detection_id": detection.detection_id,
        "id": detection.audio.id,
        "name": detection.audio.name,
        "feed_label": detection.feed_label,
        "feed_range": output.time_range(detection.feed_range),
        "feed_start_time": output.rfc3339(detection.feed_start_time),
        "feed_end_time": output.rfc3339(detection.feed_end_time),
        "reference_range": output.time_range(detection.reference_range),
        "score": output.score(detection.score),
        "landmarks": detection.landmarks,
        "landmark_share": output.score(detection.landmark_share),
        "decided_by": pb.MatchEvidence.Name(detection.decided_by).removeprefix("MATCH_EVIDENCE_").lower(),
        "metadata": dict(sorted(detection.audio.metadata.items())),
    }


def detection_line(detection: pb.MonitorDetection) -> str:
    state = pb.DetectionState.Name(detection.state).removeprefix("DETECTION_STATE_")
    feed, reference = detection.feed_range, detection.reference_range
    when = f"{feed.start_seconds:9.2f}-{feed.end_seconds:<9.2f}s"
    if detection.HasField("feed_start_time"):
        when += f" ({output.rfc3339(detection.feed_start_time)})"
    evidence = pb.MatchEvidence.Name(detection.decided_by).removeprefix("MATCH_EVIDENCE_").lower()
    return (f"{state:<8} {when}  {detection.audio.name}  recording {reference.start_seconds:.2f}-"
            f"{reference.end_seconds:.2f} s  score {detection.score:.3f}  landmarks {detection.landmarks}  "
            f"by {evidence}  id {detection.detection_id}")


def progress_line(progress: pb.MonitorProgress) -> str:
    return (f"analysed {progress.audio_seconds:.1f} s of feed, {progress.real_time_factor:.2f}x real time, "
            f"lag {progress.lag_seconds:.1f} s, {progress.open_detections} playing")


def print_events(events: Iterator[pb.MonitorAudioResponse], as_json: bool) -> int:
    """Prints detections on stdout as they arrive and progress on stderr; returns the number of plays ended."""
    live = sys.stderr.isatty()
    ended = 0
    for event in events:
        if event.WhichOneof("event") == "progress":
            line = progress_line(event.progress)
            sys.stderr.write(f"\r\x1b[K{line}" if live else f"{line}\n")
            sys.stderr.flush()
            continue
        if live:
            sys.stderr.write("\r\x1b[K")
        detection = event.detection
        ended += detection.state == pb.DETECTION_STATE_ENDED
        sys.stdout.write((json.dumps(detection_to_dict(detection)) if as_json else detection_line(detection)) + "\n")
        sys.stdout.flush()
    if live:
        sys.stderr.write("\n")
    return ended
