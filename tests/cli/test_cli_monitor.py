"""`audiosearch monitor` as a subprocess against the running suite: a file, and raw PCM on stdin."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from devtools.support.gateway import ensure_collection, ingest, stub
from devtools.support.sounds import RATE, synth, to_bytes

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PLAY_START = 3.0


@pytest.fixture(scope="module")
def library(gateway_address: str) -> tuple[str, str, np.ndarray]:
    """A collection of one recording, so the untrained embedding (every sound alike) cannot confuse it."""
    client = stub(gateway_address)
    name = f"cli_monitor_{uuid.uuid4().hex[:8]}"
    ensure_collection(client, name)
    samples = synth("birds", seconds=6.0, seed=5).astype(np.float32)
    record = ingest(client, name, "birds.wav", to_bytes(samples)).audio
    return name, record.id, samples


def feed(samples: np.ndarray) -> np.ndarray:
    """Silence, the recording at PLAY_START, silence."""
    return np.concatenate([np.zeros(int(PLAY_START * RATE), np.float32), samples,
                           np.zeros(int(4.0 * RATE), np.float32)])


def run_monitor(gateway: str, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "audiosearch.cli.main", "--gateway", gateway, "monitor", *args],
                          input=stdin, capture_output=True, timeout=600, check=False,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_monitor_prints_json_lines_of_each_play_and_progress_on_stderr(gateway_address, library, tmp_path):
    collection, audio_id, samples = library
    path = tmp_path / "feed.wav"
    sf.write(path, feed(samples), RATE, subtype="PCM_16")

    result = run_monitor(gateway_address, "--collection", collection, "--json", "--start-time",
                         "2026-01-05T08:00:00+00:00", str(path))

    assert result.returncode == 0, result.stderr.decode()
    events = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [event["event"] for event in events] == ["started", "ended"]
    assert {event["id"] for event in events} == {audio_id}
    assert events[0]["detection_id"] == events[1]["detection_id"]
    assert events[1]["feed_label"] == "feed.wav"
    assert events[1]["feed_range"][0] == pytest.approx(PLAY_START, abs=1.0)
    assert events[1]["feed_start_time"].startswith("2026-01-05T08:00:0")
    assert "analysed" in result.stderr.decode()


def test_monitor_reads_raw_pcm_from_stdin_and_prints_text(gateway_address, library):
    collection, _, samples = library
    pcm = np.round(feed(samples) * 32767).astype("<i2").tobytes()

    result = run_monitor(gateway_address, "--collection", collection, "--raw-rate", str(RATE), "--label", "mic",
                         "-", stdin=pcm)

    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    assert [line.split()[0] for line in lines] == ["STARTED", "ENDED"]
    assert "birds.wav" in lines[1]


def test_monitor_of_an_unknown_collection_exits_2(gateway_address, tmp_path):
    path = tmp_path / "feed.wav"
    sf.write(path, np.zeros(RATE, np.float32), RATE)
    result = run_monitor(gateway_address, "--collection", "no_such_monitored", str(path))
    assert result.returncode == 2
    assert "COLLECTION_NOT_FOUND" in result.stderr.decode()
