"""The monitor's WebSocket, relayed to MonitorAudio: against the real suite, against a stand-in gateway that shows
what reaches it (and that a closed socket cancels the call), and the page's Monitor view in headless Chromium.

The real suite's collection is calibrated the way a user does it, so what is detected is what SearchAudio would
call a match. Screenshot: build/artifacts/web-monitor.png.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from audiosearch.v1 import audiosearch_pb2 as pb
from audiosearch.v1 import audiosearch_pb2_grpc
from devtools.support import sounds
from tests.integration.test_monitor import bed, recording
from tests.web.conftest import Watched, WebServer, chromium

COLLECTION = "web_monitor"
RATE = sounds.RATE
RECORDINGS = 6
RECORDING_SECONDS = 8.0
FEED_SECONDS = 24.0
PLAYED, PLAYED_AT = 2, 7.0  # recording 2 is played once, at feed second 7
START_TOLERANCE_SECONDS = 1.0
CHUNK = 64 * 1024
PLAYER = "document.getElementById('player')"
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "artifacts"


@dataclass
class Session:
    """What the server sent on one socket, and how it closed."""

    events: list[dict] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""

    def detections(self, state: str) -> list[dict]:
        return [e["detection"] for e in self.events if "detection" in e and e["detection"]["state"] == state]

    def last(self) -> dict:
        return self.events[-1]


def socket_url(web_url: str, collection: str = COLLECTION) -> str:
    return f"{web_url.replace('http://', 'ws://')}/v1/collections/{collection}/monitor"


def read_all(socket: ClientConnection) -> Session:
    session = Session()
    try:
        while True:
            session.events.append(json.loads(socket.recv(timeout=300)))
    except ConnectionClosed as closed:
        session.close_code = closed.rcvd.code if closed.rcvd else None
        session.close_reason = closed.rcvd.reason if closed.rcvd else ""
    return session


def monitor(web_url: str, header: dict | str | bytes, data: bytes = b"", collection: str = COLLECTION) -> Session:
    """One monitor over the socket: the header, the feed in chunks, the end, and everything the server sent."""
    with connect(socket_url(web_url, collection), max_size=None) as socket:
        socket.send(json.dumps(header) if isinstance(header, dict) else header)
        try:
            for offset in range(0, len(data), CHUNK):
                socket.send(data[offset : offset + CHUNK])
            socket.send(json.dumps({"end": True}))
        except ConnectionClosed:
            pass  # the server refused early; what it sent says why
        return read_all(socket)


def f32le(samples: np.ndarray) -> bytes:
    return samples.astype("<f4").tobytes()


@pytest.fixture(scope="module")
def library(http) -> list[tuple[dict, np.ndarray]]:
    http.delete(f"/v1/collections/{COLLECTION}")
    assert http.post("/v1/collections", json={"name": COLLECTION}).status_code == 201
    rng = np.random.default_rng(31)
    library = []
    for index in range(RECORDINGS):
        samples = recording(rng, index)
        reply = http.post(f"/v1/collections/{COLLECTION}/audio",
                          files={"file": (f"sound_{index}.wav", sounds.to_bytes(samples), "audio/wav")})
        assert reply.status_code == 201, reply.text
        library.append((reply.json()["audio"], samples))
    assert http.post(f"/v1/collections/{COLLECTION}/calibrate").status_code == 200
    return library


@pytest.fixture(scope="module")
def feed(library) -> np.ndarray:
    samples = bed(np.random.default_rng(7), FEED_SECONDS)
    played = library[PLAYED][1]
    first = int(PLAYED_AT * RATE)
    samples[first : first + len(played)] += played
    return samples


# The real suite


def test_a_raw_pcm_feed_gets_its_play_started_then_ended_then_the_end(web_url, library, feed):
    header = {"feed_label": "desk mic", "raw_format": {"sample_rate_hz": RATE, "channels": 1,
                                                       "sample_format": "f32le"}}
    session = monitor(web_url, header, f32le(feed))

    assert session.close_code == 1000, session.events[-3:]
    started, ended = session.detections("STARTED"), session.detections("ENDED")
    played = library[PLAYED][0]
    assert [d["audio"]["id"] for d in started] == [played["id"]]
    assert [d["detection_id"] for d in ended] == [started[0]["detection_id"]]
    assert session.events.index({"detection": started[0]}) < session.events.index({"detection": ended[0]})
    final = ended[0]
    assert final["feed_range"]["start_seconds"] == pytest.approx(PLAYED_AT, abs=START_TOLERANCE_SECONDS)
    assert final["feed_range"]["end_seconds"] == pytest.approx(PLAYED_AT + RECORDING_SECONDS, abs=2.0)
    assert final["reference_range"]["start_seconds"] == pytest.approx(0.0, abs=START_TOLERANCE_SECONDS)
    assert final["feed_label"] == "desk mic"
    assert final["audio"]["content_url"] == played["content_url"]
    progress = [e["progress"] for e in session.events if "progress" in e]
    assert progress
    assert progress[-1]["audio_seconds"] == pytest.approx(FEED_SECONDS, abs=0.05)
    assert progress[-1]["real_time_factor"] > 0
    assert session.last() == {"end": {"detections": 1, "audio_seconds": pytest.approx(FEED_SECONDS, abs=0.05)}}


def test_a_container_feed_with_thresholds_and_a_filter_that_excludes_the_play_finds_nothing(web_url, library, feed):
    header = {"feed_label": "filtered", "metadata": {"kind": "nothing-has-this"},
              "thresholds": {"score_threshold": 0.5}}
    session = monitor(web_url, header, sounds.to_bytes(feed, subtype="PCM_16"))
    assert session.close_code == 1000
    assert session.detections("STARTED") == []
    assert session.last()["end"]["detections"] == 0


def test_bytes_that_are_not_audio_end_the_socket_with_invalid_audio(web_url, library):
    session = monitor(web_url, {"feed_label": "noise"}, b"not audio at all " * 20000)
    error = session.last()["error"]
    assert (error["code"], error["reason"]) == ("INVALID_ARGUMENT", "INVALID_AUDIO")
    assert "could not be decoded" in error["message"]
    assert (session.close_code, session.close_reason) == (4400, "INVALID_ARGUMENT INVALID_AUDIO")


def test_bad_samples_mid_feed_end_it_with_invalid_audio_after_what_came_before(web_url, library):
    samples = bed(np.random.default_rng(9), 12.0)
    header = {"raw_format": {"sample_rate_hz": RATE, "sample_format": "f32le"}}
    session = monitor(web_url, header, f32le(samples) + np.full(100, np.nan, "<f4").tobytes())
    assert session.last()["error"]["reason"] == "INVALID_AUDIO"
    assert "near second 12.0" in session.last()["error"]["message"]
    assert session.close_code == 4400


@pytest.mark.parametrize(("header", "field"), [
    ({"raw_format": {"sample_rate_hz": 5, "sample_format": "f32le"}}, "header.raw_format.sample_rate_hz"),
    ({"raw_format": {"sample_rate_hz": 16000, "sample_format": "u8"}}, "header.raw_format.sample_format"),
    ({"feed_label": "x", "collection": "elsewhere"}, "header.collection"),
    ({"thresholds": {"score_threshold": 3}}, "header.thresholds.score_threshold"),
    ("not json", "header"),
    (b"\x00\x01 audio before any header", "header"),
])
def test_a_bad_header_is_refused_with_the_field_at_fault(web_url, header, field):
    session = monitor(web_url, header)
    assert len(session.events) == 1
    error = session.last()["error"]
    assert (error["code"], error["reason"], error["metadata"]) == ("INVALID_ARGUMENT", "INVALID_FIELD",
                                                                   {"field": field})
    assert (session.close_code, session.close_reason) == (4400, "INVALID_ARGUMENT INVALID_FIELD")


def test_gateway_refusals_keep_their_code_and_reason(web_url):
    missing = monitor(web_url, {}, b"\x00" * 1000, collection="no_such_monitor_collection")
    assert (missing.last()["error"]["code"], missing.last()["error"]["reason"]) == ("NOT_FOUND", "COLLECTION_NOT_FOUND")
    assert (missing.close_code, missing.close_reason) == (4404, "NOT_FOUND COLLECTION_NOT_FOUND")
    bad_name = monitor(web_url, {}, b"\x00" * 1000, collection="Bad-Name")
    assert bad_name.last()["error"]["metadata"] == {"field": "header.collection"}
    assert bad_name.close_code == 4400


def test_text_other_than_the_end_after_the_header_is_refused(web_url, library):
    with connect(socket_url(web_url)) as socket:
        socket.send(json.dumps({"raw_format": {"sample_rate_hz": RATE}}))
        socket.send(f32le(np.zeros(RATE, np.float32)))
        socket.send("more please")
        session = read_all(socket)
    assert session.last()["error"]["metadata"] == {"field": "frame"}
    assert session.close_code == 4400


# A stand-in gateway: what the relay sends on, and a cancelled call when the socket closes


class RecordingGateway(audiosearch_pb2_grpc.AudioSearchServiceServicer):
    """Records the header, the chunks and the credentials of one MonitorAudio call, and whether it was cancelled."""

    def __init__(self) -> None:
        self.header = pb.MonitorAudioHeader()
        self.chunks: list[bytes] = []
        self.metadata: dict[str, str] = {}
        self.cancelled = threading.Event()
        self.three_chunks = threading.Event()

    def MonitorAudio(self, requests, context):
        context.add_callback(self.cancelled.set)
        self.metadata = dict(context.invocation_metadata())
        self.header = next(requests).header
        yield pb.MonitorAudioResponse(progress=pb.MonitorProgress(audio_seconds=0.0))
        for request in requests:
            self.chunks.append(request.chunk)
            if len(self.chunks) == 3:
                self.three_chunks.set()


@pytest.fixture
def stand_in() -> Iterator[tuple[RecordingGateway, str]]:
    gateway = RecordingGateway()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    audiosearch_pb2_grpc.add_AudioSearchServiceServicer_to_server(gateway, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    web = WebServer(f"127.0.0.1:{port}").start()
    try:
        yield gateway, web.url
    finally:
        web.stop()
        server.stop(None)


def test_the_header_reaches_the_gateway_and_closing_the_socket_cancels_the_call(stand_in):
    gateway, url = stand_in
    header = {"feed_label": "radio 1", "start_time": "2026-01-05T08:00:00Z", "feed_offset_seconds": 12.5,
              "thresholds": {"score_threshold": 0.8, "landmark_threshold": 0}, "tags": ["Music"],
              "metadata": {"label": "acme"}, "raw_format": {"sample_rate_hz": 48000, "channels": 2,
                                                            "sample_format": "s16le"}, "api_key": "k-123"}
    with connect(socket_url(url, "radio")) as socket:
        socket.send(json.dumps(header))
        assert json.loads(socket.recv(timeout=30)) == {"progress": {
            "audio_seconds": 0.0, "pending_seconds": 0.0, "elapsed_seconds": 0.0, "real_time_factor": 0.0,
            "lag_seconds": 0.0, "open_detections": 0}}
        for chunk in (b"one", b"two", b"three"):
            socket.send(chunk)
        assert gateway.three_chunks.wait(30)
        assert not gateway.cancelled.is_set()
    assert gateway.cancelled.wait(30), "closing the socket cancels MonitorAudio"
    assert gateway.chunks == [b"one", b"two", b"three"]
    sent = gateway.header
    assert (sent.collection, sent.feed_label, sent.feed_offset_seconds) == ("radio", "radio 1", 12.5)
    assert sent.start_time.ToJsonString() == "2026-01-05T08:00:00Z"
    assert sent.thresholds.score_threshold == pytest.approx(0.8)
    assert sent.thresholds.HasField("landmark_threshold")
    assert sent.thresholds.landmark_threshold == 0
    assert not sent.thresholds.HasField("landmark_share_threshold")
    assert (list(sent.filter.tags), dict(sent.filter.metadata)) == (["Music"], {"label": "acme"})
    assert sent.raw_format == pb.RawAudioFormat(sample_rate_hz=48000, channels=2,
                                                sample_format=pb.SAMPLE_FORMAT_S16LE)
    assert gateway.metadata["authorization"] == "Bearer k-123"


def test_the_monitor_socket_is_documented_with_its_frames(http):
    document = http.get("/openapi.json").json()
    assert "/v1/collections/{collection}/monitor" in document["info"]["description"]
    schemas = document["components"]["schemas"]
    assert {"MonitorHeader", "MonitorEvent", "MonitorDetection", "MonitorProgress"} <= set(schemas)
    assert set(schemas["MonitorEvent"]["properties"]) == {"detection", "progress", "end", "error"}


# The page's Monitor view in headless Chromium


MIC_PLAY_AT = 3.0


@pytest.fixture(scope="module")
def browser(tmp_path_factory, library) -> Iterator[object]:
    """Chromium whose microphone hears a bed with recording PLAYED from second MIC_PLAY_AT (the file loops)."""
    samples = bed(np.random.default_rng(11), 20.0)
    played = library[PLAYED][1]
    samples[int(MIC_PLAY_AT * RATE) : int(MIC_PLAY_AT * RATE) + len(played)] += played
    microphone = tmp_path_factory.mktemp("microphone") / "radio.wav"
    microphone.write_bytes(sounds.to_bytes(samples, subtype="PCM_16"))
    with chromium(microphone) as browser:
        yield browser


def test_monitor_a_file_see_the_play_on_the_timeline_and_play_both_sides(browser, web_url, library, feed, tmp_path):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    played = library[PLAYED][0]
    path = tmp_path / "broadcast.wav"
    path.write_bytes(sounds.to_bytes(feed, subtype="PCM_16"))
    watched = Watched(browser, web_url, COLLECTION, viewport={"width": 1280, "height": 1000})
    page = watched.page
    page.set_input_files("#monitor-file", str(path))
    row = page.locator("#monitor-detections .detection")
    expect(page.locator("#monitor-status")).to_contain_text("finished, 1 play detected", timeout=180_000)
    expect(row).to_have_count(1)
    expect(row).to_have_attribute("data-state", "ENDED")
    expect(row.locator(".name")).to_have_text(played["name"])
    expect(row.locator(".state")).to_have_text("ended")
    detection_id = row.get_attribute("data-detection-id")
    marker = page.locator(f'#monitor-timeline .marker[data-detection-id="{detection_id}"]')
    expect(marker).to_have_count(1)
    left = marker.evaluate("m => parseFloat(m.style.left)")
    assert left == pytest.approx(100 * PLAYED_AT / FEED_SECONDS, abs=100 * START_TOLERANCE_SECONDS / FEED_SECONDS)
    page.locator("#monitor-panel").screenshot(path=str(ARTIFACTS / "web-monitor.png"))

    recording_button = row.locator(".play-recording")
    assert recording_button.get_attribute("data-src") == played["content_url"]
    reference_start = float(recording_button.get_attribute("data-start"))
    reference_end = float(recording_button.get_attribute("data-end"))
    assert reference_start == pytest.approx(0.0, abs=START_TOLERANCE_SECONDS)
    recording_button.click()
    page.wait_for_function(f"() => {PLAYER}.dataset.id === '{played['id']}' && !{PLAYER}.paused")
    page.wait_for_function(f"() => {PLAYER}.paused", timeout=30_000)  # stops at the end of the range
    assert page.evaluate(f"() => {PLAYER}.currentTime") == pytest.approx(reference_end, abs=1.0)

    feed_button = row.locator(".play-feed")
    feed_start = float(feed_button.get_attribute("data-start"))
    feed_end = float(feed_button.get_attribute("data-end"))
    assert feed_start == pytest.approx(PLAYED_AT, abs=START_TOLERANCE_SECONDS)
    assert feed_button.get_attribute("data-src").startswith("blob:")  # the local file, never uploaded again
    feed_button.click()
    page.wait_for_function(f"() => {PLAYER}.src.startsWith('blob:') && {PLAYER}.dataset.id.startsWith('feed:')"
                           f" && !{PLAYER}.paused")
    assert page.evaluate(f"() => {PLAYER}.currentTime") == pytest.approx(feed_start, abs=1.0)
    page.wait_for_function(f"() => {PLAYER}.paused", timeout=30_000)
    assert page.evaluate(f"() => {PLAYER}.currentTime") == pytest.approx(feed_end, abs=1.0)
    watched.close(web_url)


def test_a_monitor_refused_by_the_gateway_says_why(browser, web_url, library, tmp_path):
    from playwright.sync_api import expect

    path = tmp_path / "broken.mp3"
    path.write_bytes(b"not audio at all " * 20000)
    watched = Watched(browser, web_url, COLLECTION)
    page = watched.page
    page.set_input_files("#monitor-file", str(path))
    expect(page.locator("#monitor-status")).to_contain_text("Monitor failed: INVALID_AUDIO", timeout=60_000)
    expect(page.locator("#monitor-status")).to_have_class("query muted error")
    expect(page.locator("#monitor-stop")).to_be_disabled()
    watched.close(web_url)


def test_monitor_the_microphone_and_play_the_feed_excerpt_kept_in_the_browser(browser, web_url, library):
    from playwright.sync_api import expect

    played = library[PLAYED][0]
    watched = Watched(browser, web_url, COLLECTION)
    page = watched.page
    page.click("#monitor-mic")
    expect(page.locator("#monitor-mic")).to_have_text("Stop the microphone")
    page.wait_for_function("() => monitor.analysed >= 15", timeout=120_000)  # the page's own state
    page.click("#monitor-mic")  # the end of the feed: open plays end, the monitor finishes
    expect(page.locator("#monitor-status")).to_contain_text("finished", timeout=120_000)
    row = page.locator(f'#monitor-detections .detection[data-audio-id="{played["id"]}"]').first
    expect(row).to_have_attribute("data-state", "ENDED")
    expect(row.locator(".name")).to_have_text(played["name"])
    feed_button = row.locator(".play-feed")
    assert feed_button.get_attribute("data-src") == "microphone"
    start = float(feed_button.get_attribute("data-start"))
    end = float(feed_button.get_attribute("data-end"))
    assert end - start > RECORDING_SECONDS / 2
    feed_button.click()
    # play() unpauses before the metadata has loaded, and duration is NaN until it has.
    page.wait_for_function(f"() => {PLAYER}.dataset.id.startsWith('feed:blob:') && !{PLAYER}.paused"
                           f" && Number.isFinite({PLAYER}.duration)")
    # The excerpt is a WAV made in the browser from the microphone's audio it kept: exactly the play's range.
    assert page.evaluate(f"() => {PLAYER}.duration") == pytest.approx(end - start, abs=0.05)
    watched.close(web_url)
