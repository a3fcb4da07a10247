"""The public gRPC contract works from Go and Java: example clients generated from protos/ only.

scripts/build_clients.sh generates Go and Java code from protos/ (nothing generated is committed) and
builds clients/go and clients/java against Debian's grpc-go / grpc-java. Each client creates a
collection, ingests a file with the client-streaming IngestAudio, searches with the same file (reporting whether
the model that tagged it is untrained), and reads the google.rpc.ErrorInfo reason of a GetAudio on an unknown id.
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

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build_clients.sh"
TOOLS = ("protoc", "go", "protoc-gen-go-grpc", "grpc_java_plugin", "javac", "java")
BUILD_TIMEOUT_S = 300
RUN_TIMEOUT_S = 300


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
