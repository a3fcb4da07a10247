"""The public gRPC contract works from Go and Java: example clients generated from protos/ only.

scripts/build_clients.sh generates Go and Java code from protos/ (nothing generated is committed) and
builds clients/go and clients/java against Debian's grpc-go / grpc-java. Each client creates a
collection, ingests a file with the client-streaming IngestAudio, searches with the same file (reporting whether
the model that tagged it is untrained), and reads the google.rpc.ErrorInfo reason of a GetAudio on an unknown id.
Their `monitor` command streams a feed file through the bidirectional MonitorAudio and prints each detection as a
JSON line as it arrives.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiosearch.v1 import audiosearch_pb2 as pb
from devtools.support.gateway import ensure_collection, ingest, stub

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build_clients.sh"
TOOLS = ("protoc", "go", "protoc-gen-go-grpc", "grpc_java_plugin", "javac", "java")
BUILD_TIMEOUT_S = 300
RUN_TIMEOUT_S = 300
MONITOR_RATE = 32_000
MONITOR_RECORDING_SECONDS = 8.0
MONITOR_FEED_SECONDS = 31.0
# (recording index, feed second): recording 0 is played twice, recording 1 once.
MONITOR_PLAYS = ((0, 2.5), (1, 12.0), (0, 21.5))
MONITOR_START_TOLERANCE_S = 1.0
# Recordings ingested and never played: calibration needs five or more, and none of them may be detected.
MONITOR_DECOYS = 4


@dataclass(frozen=True)
class Clients:
    go: Path
    java: Path


@pytest.fixture(scope="session")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Clients:
    """Builds both clients once per session with scripts/build_clients.sh."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing and os.environ.get("AUDIOSEARCH_REQUIRE_CLIENT_TOOLCHAINS") != "1":
        pytest.skip(f"client toolchains not installed (missing {', '.join(missing)}); see scripts/build_clients.sh")
    out = tmp_path_factory.mktemp("clients")
    build = subprocess.run(
        ["bash", str(BUILD_SCRIPT), str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    assert build.returncode == 0, f"build_clients.sh failed:\n{build.stdout}\n{build.stderr}"
    built = Clients(go=out / "bin" / "audiosearch-go-client", java=out / "bin" / "audiosearch-java-client")
    for binary in (built.go, built.java):
        assert os.access(binary, os.X_OK), f"{binary} was not built"
    return built


@pytest.fixture(scope="session")
def sample_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five seconds of a distinctive 16-bit mono sound: a chirp, a pulsed chord and noise bursts."""
    rate = 32_000
    t = np.arange(5 * rate) / rate
    chirp = 0.3 * np.sin(2 * np.pi * (300 * t + 270 * t**2))  # 300 Hz rising to 3 kHz
    chord = sum(np.sin(2 * np.pi * f * t) for f in (523.25, 659.25, 783.99)) / 3
    pulses = 0.3 * chord * (np.sin(2 * np.pi * 3 * t) > 0)
    rng = np.random.default_rng(20240611)
    bursts = 0.2 * rng.standard_normal(t.size) * ((t % 1.0) < 0.12)
    signal = np.clip(chirp + pulses + bursts, -1, 1)
    path = tmp_path_factory.mktemp("audio") / "client_contract_sample.wav"
    sf.write(path, signal, rate, subtype="PCM_16")
    return path


def run_client(binary: Path, gateway: str, collection: str, audio: Path) -> tuple[dict, dict]:
    """Runs a client and returns its two JSON lines: the search result and the error reason."""
    run = subprocess.run(
        [str(binary), "--gateway", gateway, "--collection", collection, "--file", str(audio)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert run.returncode == 0, f"{binary.name} exited {run.returncode}:\n{run.stdout}\n{run.stderr}"
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    assert len(lines) == 2, f"expected two JSON lines from {binary.name}, got:\n{run.stdout}"
    return lines[0], lines[1]


@pytest.mark.parametrize(("language", "collection"), [("go", "go_client"), ("java", "java_client")])
def test_client_ingests_searches_and_branches_on_error_reason(
    clients: Clients, gateway_address: str, sample_wav: Path, language: str, collection: str
) -> None:
    binary = getattr(clients, language)

    result, error = run_client(binary, gateway_address, collection, sample_wav)
    assert result["audio_id"]
    assert result["top_match_id"] == result["audio_id"]
    assert result["top_name"] == sample_wav.name
    assert result["top_score"] > 0.99
    assert result["top_decided_by"] in ("MATCH_EVIDENCE_EMBEDDING", "MATCH_EVIDENCE_LANDMARKS", "MATCH_EVIDENCE_BOTH")
    assert result["model_untrained"] is True  # the suite's embedder is a seeded random init
    assert error == {"error_reason": "AUDIO_NOT_FOUND"}

    # Again: CreateCollection now fails with reason COLLECTION_EXISTS, which the client accepts, and
    # the same bytes are recognised as already stored under the same id.
    again, error = run_client(binary, gateway_address, collection, sample_wav)
    assert again["collection_existed"] is True
    assert again["already_existed"] is True
    assert again["audio_id"] == result["audio_id"]
    assert again["top_match_id"] == result["audio_id"]
    assert again["top_score"] > 0.99
    assert error == {"error_reason": "AUDIO_NOT_FOUND"}


def monitor_sound(rng: np.random.Generator, kind: int) -> np.ndarray:
    """Eight seconds that never repeat themselves: a melody of random notes, or decaying hits at random times."""
    n = int(MONITOR_RECORDING_SECONDS * MONITOR_RATE)
    t = np.arange(n) / MONITOR_RATE
    signal = np.zeros(n)
    if kind == 0:
        position = 0
        while position < n:
            length = min(int(rng.uniform(0.15, 0.6) * MONITOR_RATE), n - position)
            note = np.sin(2 * np.pi * rng.uniform(200, 2500) * t[:length]) * np.hanning(length)
            signal[position : position + length] = note
            position += length
    else:
        hit = int(0.3 * MONITOR_RATE)
        for start in np.sort(rng.uniform(0, MONITOR_RECORDING_SECONDS - 0.3, 24)):
            first = int(start * MONITOR_RATE)
            signal[first : first + hit] += np.sin(2 * np.pi * rng.uniform(150, 3000) * t[:hit]) * np.exp(-t[:hit] * 15)
    return 0.4 * signal / np.max(np.abs(signal))


@dataclass(frozen=True)
class MonitorLibrary:
    collection: str
    ids: list[str]
    names: list[str]
    feed: Path


def monitor_library(gateway: str, collection: str, folder: Path) -> MonitorLibrary:
    """Two generated sounds and MONITOR_DECOYS never played ingested into the collection, calibrated the way a user
    does it (CalibrateCollection with its defaults; the default thresholds let an untrained embedder's look-alikes
    through), and a feed WAV: a noise bed with the first sound played twice and the second once."""
    client = stub(gateway)
    ensure_collection(client, collection)
    rng = np.random.default_rng(31)
    sounds = [monitor_sound(rng, index % 2) for index in range(2 + MONITOR_DECOYS)]
    ids, names = [], []
    for index, samples in enumerate(sounds):
        name = f"{collection}_sound_{index}.wav"
        path = folder / name
        sf.write(path, samples, MONITOR_RATE, subtype="PCM_16")
        ids.append(ingest(client, collection, name, path.read_bytes()).audio.id)
        names.append(name)
    client.CalibrateCollection(pb.CalibrateCollectionRequest(collection=collection), timeout=600)
    bed = np.cumsum(rng.standard_normal(int(MONITOR_FEED_SECONDS * MONITOR_RATE)))
    bed -= np.convolve(bed, np.ones(441) / 441, mode="same")  # brown-ish rumble without drift
    feed = 0.02 * bed / np.max(np.abs(bed))
    for index, start in MONITOR_PLAYS:
        first = int(start * MONITOR_RATE)
        feed[first : first + len(sounds[index])] += sounds[index]
    path = folder / f"{collection}_feed.wav"
    sf.write(path, np.clip(feed, -1, 1), MONITOR_RATE, subtype="PCM_16")
    return MonitorLibrary(collection, ids, names, path)


@pytest.mark.parametrize(("language", "collection"), [("go", "go_monitor"), ("java", "java_monitor")])
def test_client_monitor_prints_each_play_as_it_is_detected(
    clients: Clients, gateway_address: str, tmp_path: Path, language: str, collection: str
) -> None:
    library = monitor_library(gateway_address, collection, tmp_path)
    binary = getattr(clients, language)
    run = subprocess.run(
        [str(binary), "monitor", "--gateway", gateway_address, "--collection", collection, str(library.feed)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert run.returncode == 0, f"{binary.name} monitor exited {run.returncode}:\n{run.stdout}\n{run.stderr}"
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    assert lines, run.stderr
    assert lines[-1]["event"] == "summary", run.stdout
    *detections, summary = lines

    started = sorted((d for d in detections if d["event"] == "started"), key=lambda d: d["feed_range"][0])
    assert [d["id"] for d in started] == [library.ids[index] for index, _ in MONITOR_PLAYS], run.stdout
    assert [d["name"] for d in started] == [library.names[index] for index, _ in MONITOR_PLAYS]
    for detection, (_, start) in zip(started, MONITOR_PLAYS, strict=True):
        assert detection["feed_range"][0] == pytest.approx(start, abs=MONITOR_START_TOLERANCE_S)
        assert detection["feed_label"] == library.feed.name
        assert detection["score"] > 0
        assert detection["landmarks"] >= 0
        assert detection["decided_by"] in ("MATCH_EVIDENCE_EMBEDDING", "MATCH_EVIDENCE_LANDMARKS",
                                           "MATCH_EVIDENCE_BOTH")

    # Each play ends once (the half-close ends the last), under the id it started with, with its final ranges.
    ended = {d["detection_id"]: d for d in detections if d["event"] == "ended"}
    assert sorted(ended) == sorted(d["detection_id"] for d in started)
    for detection, (_, start) in zip(started, MONITOR_PLAYS, strict=True):
        final = ended[detection["detection_id"]]
        assert final["id"] == detection["id"]
        assert final["feed_range"][0] == pytest.approx(start, abs=MONITOR_START_TOLERANCE_S)
        assert final["feed_range"][1] == pytest.approx(start + MONITOR_RECORDING_SECONDS, abs=2.0)
        assert final["reference_range"][0] == pytest.approx(0.0, abs=MONITOR_START_TOLERANCE_S)

    assert summary["started"] == summary["ended"] == len(MONITOR_PLAYS)
    assert summary["audio_seconds"] == pytest.approx(MONITOR_FEED_SECONDS, abs=0.1)
    assert "progress: analysed" in run.stderr
