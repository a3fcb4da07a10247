"""MonitorAudio through the public API: a minute of feed with catalog sounds played in it, streamed in chunks.

The collection is calibrated the way a user does it (CalibrateCollection with its defaults), so what is detected
is what SearchAudio would call a match, not what thresholds tuned for this feed let through.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import numpy as np
import pytest

from audiosearch.common.errors import error_info
from audiosearch.v1 import audiosearch_pb2 as pb
from devtools.support import sounds
from devtools.support.gateway import CHUNK, ensure_collection, ingest

COLLECTION = "monitor_library"
RATE = sounds.RATE
RECORDING_SECONDS = 8.0
RECORDINGS = 8
FEED_SECONDS = 60.0
# (recording index, feed second): recording 0 is played twice, recording 3 once; the others never.
PLAYS = ((0, 7.3), (3, 21.6), (0, 41.1))
START_TOLERANCE_SECONDS = 1.0
FEED_START = datetime(2026, 1, 5, 8, 0, 0, tzinfo=UTC)


def piece(rng: np.random.Generator, kind: int, seconds: float) -> np.ndarray:
    """A distinct synthetic sound that does not repeat itself: every call draws its own frequencies and times."""
    t = np.arange(int(seconds * RATE)) / RATE
    if kind == 0:  # harmonic tone with vibrato, gliding
        f0, rate = rng.uniform(110, 600), rng.uniform(3, 8)
        glide = rng.uniform(0.02, 0.08) * t**2
        phase = 2 * np.pi * f0 * (t + glide) + rng.uniform(2, 10) * np.sin(2 * np.pi * rate * t)
        signal = sum(np.sin(k * phase) / k for k in range(1, 6))
    elif kind == 1:  # decaying hits at irregular times, each its own pitch
        signal = np.zeros_like(t)
        n = int(0.3 * RATE)
        for start in np.sort(rng.uniform(0, seconds - 0.3, int(rng.integers(8, 16)))):
            index = int(start * RATE)
            hit = np.sin(2 * np.pi * rng.uniform(150, 3000) * t[:n]) * np.exp(-t[:n] * 15)
            signal[index : index + n] += hit
    else:  # a melody of random notes of random lengths
        signal = np.zeros_like(t)
        position = 0
        while position < len(t):
            length = int(rng.uniform(0.15, 0.6) * RATE)
            note = t[: min(length, len(t) - position)]
            frequency = rng.uniform(200, 2500)
            signal[position : position + len(note)] = np.sin(2 * np.pi * frequency * note) * np.hanning(len(note))
            position += length
    return (0.4 * signal / np.max(np.abs(signal))).astype(np.float32)


def recording(rng: np.random.Generator, index: int) -> np.ndarray:
    half = RECORDING_SECONDS / 2
    return np.concatenate([piece(rng, index % 3, half), piece(rng, (index + 1) % 3, half)])


def bed(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Low brown-ish noise, 26 dB under the sounds' peaks, for the whole feed."""
    noise = np.cumsum(rng.standard_normal(int(seconds * RATE)))
    noise -= np.convolve(noise, np.ones(441) / 441, mode="same")  # no drift, keeps the low rumble
    return (0.02 * noise / np.max(np.abs(noise))).astype(np.float32)


@dataclass(frozen=True)
class MonitorRun:
    responses: list[pb.MonitorAudioResponse]
    seconds: float

    def detections(self, state: int) -> list[pb.MonitorDetection]:
        return [r.detection for r in self.responses if r.WhichOneof("event") == "detection"
                and r.detection.state == state]

    def progress(self) -> list[pb.MonitorProgress]:
        return [r.progress for r in self.responses if r.WhichOneof("event") == "progress"]


def requests(header: pb.MonitorAudioHeader, data: bytes) -> list[pb.MonitorAudioRequest]:
    return [pb.MonitorAudioRequest(header=header)] + [
        pb.MonitorAudioRequest(chunk=data[i : i + CHUNK]) for i in range(0, len(data), CHUNK)]


@pytest.fixture(scope="module")
def library(client) -> list[tuple[pb.AudioRecord, np.ndarray]]:
    ensure_collection(client, COLLECTION)
    rng = np.random.default_rng(31)
    library = []
    for index in range(RECORDINGS):
        samples = recording(rng, index)
        library.append((ingest(client, COLLECTION, f"sound_{index}.wav", sounds.to_bytes(samples)).audio, samples))
    client.CalibrateCollection(pb.CalibrateCollectionRequest(collection=COLLECTION), timeout=600)
    return library


@pytest.fixture(scope="module")
def feed(library) -> np.ndarray:
    samples = bed(np.random.default_rng(7), FEED_SECONDS)
    for index, start in PLAYS:
        played = library[index][1]
        first = int(start * RATE)
        samples[first : first + len(played)] += played
    return samples


@pytest.fixture(scope="module")
def monitored(client, feed) -> MonitorRun:
    header = pb.MonitorAudioHeader(collection=COLLECTION, feed_label="station-1")
    header.start_time.FromDatetime(FEED_START)
    started = time.monotonic()
    responses = list(client.MonitorAudio(iter(requests(header, sounds.to_bytes(feed))), timeout=600))
    return MonitorRun(responses, time.monotonic() - started)


def test_every_play_is_one_detection_with_its_start_in_the_feed(library, monitored):
    ended = sorted(monitored.detections(pb.DETECTION_STATE_ENDED), key=lambda d: d.feed_range.start_seconds)
    assert [d.audio.id for d in ended] == [library[index][0].id for index, _ in PLAYS]
    for detection, (_, start) in zip(ended, PLAYS, strict=True):
        assert detection.feed_range.start_seconds == pytest.approx(start, abs=START_TOLERANCE_SECONDS)
        assert detection.feed_range.end_seconds == pytest.approx(start + RECORDING_SECONDS, abs=2.0)
        assert detection.reference_range.start_seconds == pytest.approx(0.0, abs=START_TOLERANCE_SECONDS)
        assert detection.decided_by != pb.MATCH_EVIDENCE_UNSPECIFIED
        assert detection.feed_label == "station-1"


def test_recordings_not_played_are_never_detected(library, monitored):
    played = {library[index][0].id for index, _ in PLAYS}
    detected = {d.audio.id for d in monitored.detections(pb.DETECTION_STATE_STARTED)}
    assert detected == played


def test_each_detection_starts_once_and_ends_once_with_the_same_id(monitored):
    started = [d.detection_id for d in monitored.detections(pb.DETECTION_STATE_STARTED)]
    ended = [d.detection_id for d in monitored.detections(pb.DETECTION_STATE_ENDED)]
    assert sorted(started) == sorted(ended)
    assert len(set(started)) == len(PLAYS)


def test_detections_carry_wall_clock_times_from_the_header(monitored):
    for detection in monitored.detections(pb.DETECTION_STATE_ENDED):
        expected = FEED_START + timedelta(seconds=detection.feed_range.start_seconds)
        assert abs(detection.feed_start_time.ToDatetime(UTC) - expected) < timedelta(milliseconds=1)


def test_progress_reaches_the_end_of_the_feed(client, monitored):
    progress = monitored.progress()
    assert progress
    assert progress[-1].audio_seconds == pytest.approx(FEED_SECONDS, abs=0.05)
    assert progress[-1].open_detections == 0
    assert progress[-1].real_time_factor > 0
    calibrated = client.GetCollection(pb.GetCollectionRequest(name=COLLECTION)).collection
    print(f"\ncalibrated: score {calibrated.score_threshold:.4f}, landmarks {calibrated.landmark_threshold} at "
          f"share {calibrated.landmark_share_threshold:.4f}")
    print(f"monitor: {FEED_SECONDS:.0f} s of feed in {monitored.seconds:.1f} s "
          f"({progress[-1].real_time_factor:.2f}x real time)")
    for detection in monitored.detections(pb.DETECTION_STATE_ENDED):
        print(f"  {detection.audio.name}: feed {detection.feed_range.start_seconds:.2f}-"
              f"{detection.feed_range.end_seconds:.2f} s, recording {detection.reference_range.start_seconds:.2f}-"
              f"{detection.reference_range.end_seconds:.2f} s, landmarks {detection.landmarks}, "
              f"score {detection.score:.3f}, {pb.MatchEvidence.Name(detection.decided_by)}")


def test_raw_pcm_is_monitored_like_a_container(client, library):
    played = library[3][1]
    samples = bed(np.random.default_rng(8), 14.0)
    samples[int(3.0 * RATE) : int(3.0 * RATE) + len(played)] += played
    header = pb.MonitorAudioHeader(collection=COLLECTION, feed_offset_seconds=100.0, raw_format=pb.RawAudioFormat(
        sample_rate_hz=RATE, channels=1, sample_format=pb.SAMPLE_FORMAT_S16LE))
    data = np.round(np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    responses = list(client.MonitorAudio(iter(requests(header, data)), timeout=300))
    ended = [r.detection for r in responses
             if r.WhichOneof("event") == "detection" and r.detection.state == pb.DETECTION_STATE_ENDED]
    assert [d.audio.id for d in ended] == [library[3][0].id]
    assert ended[0].feed_range.start_seconds == pytest.approx(103.0, abs=START_TOLERANCE_SECONDS)


def expect_status(call, code: grpc.StatusCode, reason: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as failure:
        call()
    assert failure.value.code() == code, failure.value.details()
    info = error_info(failure.value)
    assert info is not None
    assert info.reason == reason, failure.value.details()
    return failure.value


def test_an_unknown_collection_is_not_found(client):
    header = pb.MonitorAudioHeader(collection="no_such_monitor_collection")
    expect_status(lambda: list(client.MonitorAudio(iter(requests(header, b"\x00" * 1000)), timeout=60)),
                  grpc.StatusCode.NOT_FOUND, "COLLECTION_NOT_FOUND")


def test_bytes_that_are_not_audio_end_the_stream_with_invalid_audio(client, library):
    header = pb.MonitorAudioHeader(collection=COLLECTION)
    error = expect_status(lambda: list(client.MonitorAudio(iter(requests(header, b"not audio at all " * 20000)),
                                                           timeout=60)),
                          grpc.StatusCode.INVALID_ARGUMENT, "INVALID_AUDIO")
    assert "could not be decoded" in error.details()


def test_bad_samples_mid_stream_end_it_with_invalid_audio_after_what_came_before(client, library):
    samples = bed(np.random.default_rng(9), 12.0)
    data = samples.astype("<f4").tobytes() + np.full(100, np.nan, "<f4").tobytes()
    header = pb.MonitorAudioHeader(collection=COLLECTION, raw_format=pb.RawAudioFormat(
        sample_rate_hz=RATE, channels=1, sample_format=pb.SAMPLE_FORMAT_F32LE))
    error = expect_status(lambda: list(client.MonitorAudio(iter(requests(header, data)), timeout=120)),
                          grpc.StatusCode.INVALID_ARGUMENT, "INVALID_AUDIO")
    assert "near second 12.0" in error.details()


def test_a_stream_without_a_header_first_is_refused(client):
    expect_status(lambda: list(client.MonitorAudio(iter([pb.MonitorAudioRequest(chunk=b"abc")]), timeout=30)),
                  grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")
