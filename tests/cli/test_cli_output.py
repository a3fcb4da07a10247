"""Turning responses into JSON and text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import timestamp_pb2

from audiosearch.cli import ingest, output
from audiosearch.cli.client import GatewayError
from audiosearch.cli.files import AudioFile
from audiosearch.cli.ingest import Failure, Ingested, IngestReport
from audiosearch.v1 import audiosearch_pb2 as pb

RECORD_KEYS = [
    "id",
    "collection",
    "name",
    "sha256",
    "duration_seconds",
    "sample_rate_hz",
    "channels",
    "codec",
    "size_bytes",
    "metadata",
    "tags",
    "status",
    "segment_count",
    "create_time",
]


def _record(**overrides: object) -> pb.AudioRecord:
    fields: dict[str, object] = {
        "id": "a1",
        "collection": "music",
        "name": "song.mp3",
        "sha256": "ab" * 32,
        "duration_seconds": 12.5,
        "sample_rate_hz": 44100,
        "channels": 2,
        "codec": "mp3",
        "size_bytes": 123456,
        "metadata": {"path": "dir/song.mp3", "artist": "x"},
        "tags": [pb.Tag(label="Music", score=0.9), pb.Tag(label="Guitar", score=0.25)],
        "status": pb.AUDIO_STATUS_READY,
        "segment_count": 11,
        "create_time": timestamp_pb2.Timestamp(seconds=1_704_164_645),
    }
    fields.update(overrides)
    return pb.AudioRecord(**fields)


def test_record_to_dict() -> None:
    record = output.record_to_dict(_record())
    assert list(record) == RECORD_KEYS
    assert record["status"] == "READY"
    assert record["create_time"] == "2024-01-02T03:04:05Z"
    assert record["tags"] == [{"label": "Music", "score": 0.9}, {"label": "Guitar", "score": 0.25}]
    assert record["metadata"] == {"artist": "x", "path": "dir/song.mp3"}
    assert (record["duration_seconds"], record["size_bytes"], record["channels"]) == (12.5, 123456, 2)
    json.dumps(record)


def test_record_to_dict_edge_values() -> None:
    record = output.record_to_dict(
        _record(status=pb.AUDIO_STATUS_DELETING, create_time=timestamp_pb2.Timestamp(), metadata={}, tags=[])
    )
    assert record["status"] == "DELETING"
    assert record["create_time"] is None
    assert (record["metadata"], record["tags"]) == ({}, [])
    stamp = timestamp_pb2.Timestamp(seconds=1_704_164_645, nanos=500_000_000)
    assert output.rfc3339(stamp) == "2024-01-02T03:04:05.500Z"


def test_search_to_dict_has_exactly_the_documented_shape() -> None:
    response = pb.SearchAudioResponse(
        matches=[
            pb.Match(
                audio=_record(),
                score=0.97,
                reference_range=pb.TimeRange(start_seconds=3.0, end_seconds=7.0),
                query_range=pb.TimeRange(start_seconds=0.0, end_seconds=4.0),
                matched_segments=3,
                landmarks=24,
                landmark_share=0.31,
                decided_by=pb.MATCH_EVIDENCE_BOTH,
            )
        ],
        score_threshold=0.8,
        query_duration_seconds=4.0,
        model=pb.ModelIdentity(name="panns_cnn14", version="untrained-seed0", untrained=True),
    )
    result = output.search_to_dict(response)
    assert list(result) == ["matches", "score_threshold", "query_duration_seconds", "model_untrained"]
    assert result["model_untrained"] is True
    assert result["score_threshold"] == 0.8
    assert result["query_duration_seconds"] == 4.0
    assert result["matches"] == [
        {
            "id": "a1",
            "name": "song.mp3",
            "score": 0.97,
            "landmarks": 24,
            "landmark_share": 0.31,
            "decided_by": "both",
            "reference_range": [3.0, 7.0],
            "query_range": [0.0, 4.0],
            "tags": [{"label": "Music", "score": 0.9}, {"label": "Guitar", "score": 0.25}],
            "metadata": {"artist": "x", "path": "dir/song.mp3"},
        }
    ]


def test_collection_and_stats_dicts() -> None:
    collection = pb.Collection(
        name="music",
        model=pb.ModelIdentity(name="panns_cnn14", version="v1", embedding_dim=2048),
        segment_config=pb.SegmentConfig(window_seconds=2, hop_seconds=1),
        score_threshold=0.85,
        threshold_source="default",
        audio_count=4,
    )
    as_dict = output.collection_to_dict(collection)
    assert as_dict["model"]["embedding_dim"] == 2048
    assert as_dict["segment_config"] == {"window_seconds": 2.0, "hop_seconds": 1.0}
    assert as_dict["score_threshold"] == 0.85
    assert as_dict["create_time"] is None
    stats = output.stats_to_dict(
        "music",
        pb.GetCollectionStatsResponse(
            audio_count=4,
            total_duration_seconds=40,
            segment_count=36,
            tags=[pb.TagStatistics(label="Music", audio_count=3, total_duration_seconds=30)],
        ),
    )
    assert stats["tags"] == [{"label": "Music", "audio_count": 3, "total_duration_seconds": 30.0}]


def test_table_aligns_columns() -> None:
    text = output.table(["rank", "name"], [(1, "a.wav"), (10, "longer-name.flac")])
    assert text.splitlines() == [
        "rank  name",
        "----  ----------------",
        "1     a.wav",
        "10    longer-name.flac",
    ]


def test_ingest_report_json() -> None:
    new = Ingested("d/a.wav", pb.IngestAudioResponse(audio=_record(name="a.wav", duration_seconds=3.0)))
    old = Ingested(
        "d/b.wav",
        pb.IngestAudioResponse(audio=_record(name="b.wav", duration_seconds=5.0), already_existed=True),
    )
    failed = Failure("d/c.wav", "INVALID_ARGUMENT", "INVALID_AUDIO", "cannot decode")
    report = IngestReport(ingested=[new, old], failed=[failed], wall_seconds=2.0)
    result = report.to_dict()
    assert list(result) == ["ingested", "failed", "summary"]
    assert [item["name"] for item in result["ingested"]] == ["a.wav", "b.wav"]
    assert result["ingested"][1]["already_existed"] is True
    assert set(RECORD_KEYS) <= set(result["ingested"][0])
    assert result["failed"] == [
        {"path": "d/c.wav", "code": "INVALID_ARGUMENT", "reason": "INVALID_AUDIO", "message": "cannot decode"}
    ]
    summary = result["summary"]
    assert (summary["ingested"], summary["already_existed"], summary["failed"], summary["files"]) == (
        1,
        1,
        1,
        3,
    )
    assert summary["audio_seconds"] == 3.0
    assert summary["rate"] == 1.5
    json.dumps(result)


class FlakyClient:
    """Stands in for Client.ingest: fails with the given errors first, then succeeds."""

    def __init__(self, errors: list[GatewayError]) -> None:
        self.errors = errors
        self.calls: list[tuple[str, bytes, dict[str, str]]] = []

    def ingest(self, collection: str, name: str, chunks, metadata, *, timeout=None) -> pb.IngestAudioResponse:
        self.calls.append((name, b"".join(chunks), dict(metadata)))
        if self.errors:
            raise self.errors.pop(0)
        return pb.IngestAudioResponse(audio=_record(name=name))


def test_busy_gateway_is_retried_with_the_whole_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "RETRY_BASE_SECONDS", 0.0)
    path = tmp_path / "a.wav"
    path.write_bytes(b"x" * (ingest.CHUNK_BYTES * 2 + 5))
    client = FlakyClient(
        [
            GatewayError("RESOURCE_EXHAUSTED", "OVERLOADED", "8 ingests are running"),
            GatewayError("ABORTED", "INGEST_IN_PROGRESS", "retry shortly"),
        ]
    )
    outcome = ingest.ingest_one(client, "music", AudioFile(str(path)), {"k": "v"}, None)
    assert isinstance(outcome, Ingested)
    assert len(client.calls) == 3
    assert all(call == ("a.wav", path.read_bytes(), {"k": "v", "path": str(path)}) for call in client.calls)


def test_refusals_are_not_retried_and_retries_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "RETRY_BASE_SECONDS", 0.0)
    path = tmp_path / "a.wav"
    path.write_bytes(b"x")
    client = FlakyClient([GatewayError("INVALID_ARGUMENT", "INVALID_AUDIO", "cannot decode")])
    outcome = ingest.ingest_one(client, "music", AudioFile(str(path)), {}, None)
    assert outcome == Failure(str(path), "INVALID_ARGUMENT", "INVALID_AUDIO", "cannot decode")
    assert len(client.calls) == 1
    busy = FlakyClient([GatewayError("RESOURCE_EXHAUSTED", None, "busy")] * (ingest.RETRY_ATTEMPTS + 1))
    outcome = ingest.ingest_one(busy, "music", AudioFile(str(path)), {}, None)
    assert isinstance(outcome, Failure)
    assert outcome.code == "RESOURCE_EXHAUSTED"
    assert len(busy.calls) == ingest.RETRY_ATTEMPTS
    missing = ingest.ingest_one(busy, "music", AudioFile(str(tmp_path / "gone.wav")), {}, None)
    assert isinstance(missing, Failure)
    assert (missing.code, missing.reason) == ("LOCAL", "FILE_UNREADABLE")
