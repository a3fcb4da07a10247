"""Turning responses into JSON-ready dicts, plain-text tables, and a live progress line."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from google.protobuf import timestamp_pb2

from audiosearch.v1 import audiosearch_pb2 as pb

JsonDict = dict[str, Any]
STATUS_PREFIX = "AUDIO_STATUS_"


# JSON-ready dicts


def score(value: float) -> float:
    """A float32 score without its binary noise (0.8999999761581421 -> 0.9)."""
    return round(float(value), 6)


def rfc3339(stamp: timestamp_pb2.Timestamp) -> str | None:
    """An RFC 3339 UTC timestamp, or None when unset."""
    if stamp.seconds == 0 and stamp.nanos == 0:
        return None
    return stamp.ToJsonString()


def status_name(status: int) -> str:
    return pb.AudioStatus.Name(status).removeprefix(STATUS_PREFIX)


def tags_to_list(tags: Iterable[pb.Tag]) -> list[JsonDict]:
    return [{"label": tag.label, "score": score(tag.score)} for tag in tags]


def time_range(span: pb.TimeRange) -> list[float]:
    return [span.start_seconds, span.end_seconds]


def record_to_dict(record: pb.AudioRecord) -> JsonDict:
    """The one JSON shape of a stored recording, used by every command."""
    return {
        "id": record.id,
        "collection": record.collection,
        "name": record.name,
        "sha256": record.sha256,
        "duration_seconds": record.duration_seconds,
        "sample_rate_hz": record.sample_rate_hz,
        "channels": record.channels,
        "codec": record.codec,
        "size_bytes": record.size_bytes,
        "metadata": dict(sorted(record.metadata.items())),
        "tags": tags_to_list(record.tags),
        "status": status_name(record.status),
        "segment_count": record.segment_count,
        "create_time": rfc3339(record.create_time),
    }


def collection_to_dict(collection: pb.Collection) -> JsonDict:
    model = collection.model
    return {
        "name": collection.name,
        "description": collection.description,
        "model": {
            "name": model.name,
            "version": model.version,
            "embedding_dim": model.embedding_dim,
            "sample_rate_hz": model.sample_rate_hz,
            "untrained": model.untrained,
        },
        "segment_config": {
            "window_seconds": collection.segment_config.window_seconds,
            "hop_seconds": collection.segment_config.hop_seconds,
        },
        "score_threshold": score(collection.score_threshold),
        "threshold_source": collection.threshold_source,
        "landmark_threshold": collection.landmark_threshold,
        "landmark_share_threshold": score(collection.landmark_share_threshold),
        "audio_count": collection.audio_count,
        "create_time": rfc3339(collection.create_time),
    }


def match_to_dict(match: pb.Match) -> JsonDict:
    return {
        "id": match.audio.id,
        "name": match.audio.name,
        "score": score(match.score),
        "landmarks": match.landmarks,
        "landmark_share": score(match.landmark_share),
        "decided_by": decided_by(match),
        "reference_range": time_range(match.reference_range),
        "query_range": time_range(match.query_range),
        "tags": tags_to_list(match.audio.tags),
        "metadata": dict(sorted(match.audio.metadata.items())),
    }


def decided_by(match: pb.Match) -> str:
    """Which evidence made it a match: "embedding", "landmarks" or "both" ("" from a gateway that does not say)."""
    return pb.MatchEvidence.Name(match.decided_by).removeprefix("MATCH_EVIDENCE_").lower().replace("unspecified", "")


def search_to_dict(response: pb.SearchAudioResponse) -> JsonDict:
    return {
        "matches": [match_to_dict(match) for match in response.matches],
        "score_threshold": score(response.score_threshold),
        "query_duration_seconds": response.query_duration_seconds,
        "model_untrained": response.model.untrained,
    }


def tagging_to_dict(response: pb.TagAudioResponse) -> JsonDict:
    return {
        "tags": tags_to_list(response.tags),
        "segments": [
            {"range": time_range(segment.range), "tags": tags_to_list(segment.tags)}
            for segment in response.segments
        ],
        "duration_seconds": response.duration_seconds,
        "model_untrained": response.model.untrained,
    }


def stats_to_dict(collection: str, response: pb.GetCollectionStatsResponse) -> JsonDict:
    return {
        "collection": collection,
        "audio_count": response.audio_count,
        "total_duration_seconds": response.total_duration_seconds,
        "segment_count": response.segment_count,
        "tags": [
            {
                "label": tag.label,
                "audio_count": tag.audio_count,
                "total_duration_seconds": tag.total_duration_seconds,
            }
            for tag in response.tags
        ],
    }


def calibration_to_dict(response: pb.CalibrateCollectionResponse) -> JsonDict:
    return {
        "collection": collection_to_dict(response.collection),
        "negative_queries": response.negative_queries,
        "positive_queries": response.positive_queries,
        "true_positive_rate": score(response.true_positive_rate),
        "false_positive_rate": score(response.false_positive_rate),
        "variant_queries": response.variant_queries,
    }


def import_result_to_dict(result: pb.ImportFileResult) -> JsonDict:
    if result.WhichOneof("outcome") == "error":
        error = result.error
        return {"index": result.index, "name": result.name,
                "error": {"code": error.code, "reason": error.reason or None, "message": error.message}}
    return {"index": result.index, "name": result.name, "already_existed": result.already_existed,
            **record_to_dict(result.audio)}


def import_progress_to_dict(progress: pb.ImportProgress) -> JsonDict:
    return {
        "files_total": progress.files_total, "files_done": progress.files_done,
        "ingested": progress.files_ingested, "already_existed": progress.files_already_existed,
        "failed": progress.errors, "audio_seconds": round(progress.audio_seconds, 3),
        "wall_seconds": round(progress.elapsed_seconds, 3), "rate": round(progress.audio_seconds_per_second, 3),
    }


def import_progress_text(progress: pb.ImportProgress) -> str:
    total = f"/{progress.files_total}" if progress.files_total else ""
    return (
        f"{progress.files_done}{total} files: ingested {progress.files_ingested}, already existed "
        f"{progress.files_already_existed}, failed {progress.errors}; audio {progress.audio_seconds:.1f}s in "
        f"{progress.elapsed_seconds:.1f}s wall ({progress.audio_seconds_per_second:.1f} s/s)"
    )


def print_json(value: object, stream: TextIO | None = None) -> None:
    (stream or sys.stdout).write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


# Plain text


def seconds(value: float) -> str:
    return f"{value:.1f}s"


def span(value: pb.TimeRange) -> str:
    return f"{value.start_seconds:.1f}-{value.end_seconds:.1f}s"


def untrained_note(model: pb.ModelIdentity) -> str:
    """The line printed beside the tags of an untrained model."""
    return (f"note: model {model.name} {model.version} is untrained (a seeded random init): "
            "its tags are not classifications")


def tag_labels(tags: Iterable[pb.Tag], limit: int = 3) -> str:
    return ", ".join(tag.label for tag in list(tags)[:limit])


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A left-aligned plain-text table; the last column is not padded."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(header), *(len(row[index]) for row in cells)]) for index, header in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        padded = [value.ljust(width) for value, width in zip(values[:-1], widths[:-1], strict=True)]
        return "  ".join([*padded, values[-1]]).rstrip()

    return "\n".join([line(list(headers)), line(["-" * width for width in widths]), *map(line, cells)])


def key_values(pairs: Iterable[tuple[str, object]]) -> str:
    items = list(pairs)
    width = max((len(key) for key, _ in items), default=0)
    return "\n".join(f"{key.ljust(width)}  {value}" for key, value in items)


def metadata_text(metadata: dict[str, str]) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted(metadata.items())) or "-"


def record_text(record: pb.AudioRecord) -> str:
    return key_values(
        [
            ("id", record.id),
            ("collection", record.collection),
            ("name", record.name),
            ("status", status_name(record.status)),
            ("duration", seconds(record.duration_seconds)),
            ("format", f"{record.codec}, {record.sample_rate_hz} Hz, {record.channels} ch"),
            ("size", f"{record.size_bytes} bytes"),
            ("sha256", record.sha256),
            ("segments", record.segment_count),
            ("tags", ", ".join(f"{tag.label} ({tag.score:.2f})" for tag in record.tags) or "-"),
            ("metadata", metadata_text(dict(record.metadata))),
            ("created", rfc3339(record.create_time) or "-"),
        ]
    )


def collection_text(collection: pb.Collection) -> str:
    model = collection.model
    untrained = " (untrained)" if model.untrained else ""
    return key_values(
        [
            ("name", collection.name),
            ("description", collection.description or "-"),
            (
                "model",
                f"{model.name} {model.version}{untrained}, dim {model.embedding_dim}, "
                f"{model.sample_rate_hz} Hz",
            ),
            (
                "segments",
                f"window {collection.segment_config.window_seconds:g}s, "
                f"hop {collection.segment_config.hop_seconds:g}s",
            ),
            ("threshold", f"{collection.score_threshold:.4f} ({collection.threshold_source or '-'})"),
            ("landmark threshold", landmark_thresholds_text(collection)),
            ("recordings", collection.audio_count),
            ("created", rfc3339(collection.create_time) or "-"),
        ]
    )


def landmark_thresholds_text(collection: pb.Collection) -> str:
    if not collection.landmark_threshold:
        return "off"
    if not collection.landmark_share_threshold:
        return f"{collection.landmark_threshold} landmarks"
    return f"{collection.landmark_threshold} landmarks and a share of {collection.landmark_share_threshold:.4f}"


# Progress


class Progress:
    """Counts an ingest run; when `live`, redraws one status line on `stream` a few times a second."""

    def __init__(self, total: int, stream: TextIO, live: bool, interval: float = 0.2) -> None:
        self.total = total
        self.stream = stream
        self.live = live
        self.interval = interval
        self.started = time.monotonic()
        self.done = 0
        self.failed = 0
        self.audio_seconds = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Progress:
        if self.live:
            self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def add(self, audio_seconds: float = 0.0, failed: bool = False) -> None:
        with self._lock:
            self.done += 1
            self.failed += int(failed)
            self.audio_seconds += audio_seconds

    def line(self) -> str:
        with self._lock:
            done, failed, audio = self.done, self.failed, self.audio_seconds
        elapsed = self.elapsed()
        rate = audio / elapsed if elapsed > 0 else 0.0
        return (
            f"{done}/{self.total} files  {audio:.1f}s audio  {rate:.1f} s/s  "
            f"{failed} error{'s' if failed != 1 else ''}  {elapsed:.0f}s"
        )

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.stream.write("\r\x1b[K" + self.line())
            self.stream.flush()
