"""The `audiosearch` CLI as a subprocess against the running suite (fixture `gateway_address`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from devtools.support.sounds import RATE, synth

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SECONDS = 4.0


def cli_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "AUDIOSEARCH_GATEWAY"}
    paths = [str(REPO)]
    env["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, [env.get("PYTHONPATH")])])
    return env


def run_cli(gateway: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "audiosearch.cli.main", "--gateway", gateway, *args],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def run_json(gateway: str, *args: str) -> Any:
    result = run_cli(gateway, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


SOUNDS = {"siren.wav": "siren", "drums.wav": "drums", "chord.wav": "chord"}


def write_sounds(directory: Path) -> dict[str, Path]:
    """Three distinct generated sounds as wav files, plus a text file the directory walk must skip."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, kind in SOUNDS.items():
        paths[name] = directory / name
        sf.write(paths[name], synth(kind, seconds=SECONDS), RATE, subtype="PCM_16")
    (directory / "README.txt").write_text("not audio: skipped by the directory walk\n")
    return paths


@pytest.fixture(scope="module")
def collection(gateway_address: str) -> Iterator[str]:
    name = f"cli_it_{uuid.uuid4().hex[:10]}"
    created = run_json(
        gateway_address, "collections", "create", name, "--description", "cli integration test"
    )
    assert created["name"] == name
    yield name
    run_cli(gateway_address, "collections", "delete", name)


def test_ingest_search_list_delete(gateway_address: str, collection: str, tmp_path: Path) -> None:
    sounds = write_sounds(tmp_path / "sounds")
    common = ["--collection", collection]

    ingest = run_cli(
        gateway_address, "ingest", str(tmp_path / "sounds"), "--meta", "suite=cli", *common, "--json"
    )
    assert ingest.returncode == 0, ingest.stderr
    report = json.loads(ingest.stdout)
    assert report["failed"] == []
    assert report["summary"]["ingested"] == 3
    assert report["summary"]["audio_seconds"] == pytest.approx(3 * SECONDS, abs=0.1)
    by_name = {record["name"]: record for record in report["ingested"]}
    assert set(by_name) == set(sounds)
    for name, record in by_name.items():
        assert record["status"] == "READY"
        assert record["collection"] == collection
        assert record["metadata"] == {"path": str(sounds[name]), "suite": "cli"}
        assert record["duration_seconds"] == pytest.approx(SECONDS, abs=0.05)

    again = run_json(gateway_address, "ingest", *map(str, sounds.values()), *common)
    assert again["summary"]["already_existed"] == 3
    assert {record["id"] for record in again["ingested"]} == {record["id"] for record in by_name.values()}

    found = run_json(gateway_address, "search", str(sounds["siren.wav"]), *common)
    assert list(found) == ["matches", "score_threshold", "query_duration_seconds", "model_untrained"]
    assert found["model_untrained"] is True  # the suite's embedder runs untrained
    best = found["matches"][0]
    assert best["name"] == "siren.wav"
    assert best["id"] == by_name["siren.wav"]["id"]
    assert best["score"] > 0.99
    assert list(best) == ["id", "name", "score", "landmarks", "landmark_share", "decided_by", "reference_range",
                          "query_range", "tags", "metadata"]
    assert best["decided_by"] in ("embedding", "landmarks", "both")

    listed = run_json(gateway_address, "list", *common)
    assert sorted(record["name"] for record in listed["audios"]) == sorted(sounds)
    assert listed["model_untrained"] is True
    assert len(run_json(gateway_address, "list", "--all", "--page-size", "2", *common)["audios"]) == 3
    assert run_json(gateway_address, "stats", *common)["audio_count"] == 3
    assert run_json(gateway_address, "get", by_name["chord.wav"]["id"], *common)["name"] == "chord.wav"
    tagged = run_json(gateway_address, "tag", str(sounds["chord.wav"]), "--top-k", "3")
    assert tagged["tags"]
    assert tagged["model_untrained"] is True
    as_text = run_cli(gateway_address, "tag", str(sounds["chord.wav"]))
    assert as_text.returncode == 0, as_text.stderr
    assert "is untrained (a seeded random init): its tags are not classifications" in as_text.stderr

    siren_id = by_name["siren.wav"]["id"]
    deleted = run_cli(gateway_address, "delete", siren_id, *common)
    assert deleted.returncode == 0, deleted.stderr
    after = run_json(gateway_address, "search", str(sounds["siren.wav"]), *common)
    assert siren_id not in {match["id"] for match in after["matches"]}
    assert len(run_json(gateway_address, "list", *common)["audios"]) == 2

    missing = run_cli(gateway_address, "get", siren_id, *common)
    assert missing.returncode == 2
    assert "AUDIO_NOT_FOUND" in missing.stderr


def test_undecodable_file_is_a_partial_failure(gateway_address: str, collection: str, tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.wav"
    bogus.write_bytes(np.random.default_rng(1).bytes(50_000))
    result = run_cli(gateway_address, "ingest", str(bogus), "--collection", collection, "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["ingested"] == []
    assert [(failure["path"], failure["reason"]) for failure in report["failed"]] == [
        (str(bogus), "INVALID_AUDIO")
    ]
    assert "INVALID_AUDIO" in result.stderr


def test_unknown_collection_exits_2(gateway_address: str, tmp_path: Path) -> None:
    query = write_sounds(tmp_path / "query")["chord.wav"]
    missing = ["--collection", f"missing_{uuid.uuid4().hex[:8]}"]
    for command in (["search", str(query)], ["ingest", str(query)], ["list"], ["stats"]):
        result = run_cli(gateway_address, *command, *missing)
        assert result.returncode == 2, (command, result.stderr)
        assert result.stderr.startswith("error: NOT_FOUND COLLECTION_NOT_FOUND"), (command, result.stderr)
        assert result.stdout == ""
