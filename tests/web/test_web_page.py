"""The web page in a real browser (headless Chromium driven by Playwright) against the real suite.

Screenshots land in build/artifacts/ (web-search.png, web-phone.png). Without Debian's `chromium` the tests
skip, except in CI (CI set), where they must run.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from audiosearch.common.errors import build_status
from audiosearch.v1 import audiosearch_pb2 as pb
from audiosearch.v1 import audiosearch_pb2_grpc
from devtools.support import sounds
from tests.web.conftest import Watched, WebServer, chromium

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "artifacts"
COLLECTION = "web_page"
KINDS = ["siren", "chord", "drums", "rain", "chirp"]
PLAYER = "document.getElementById('player')"


@pytest.fixture(scope="module")
def samples() -> dict[str, object]:
    return {kind: sounds.synth(kind, 4.0, seed=40 + index) for index, kind in enumerate(KINDS)}


@pytest.fixture(scope="module")
def browser(tmp_path_factory, samples) -> Iterator[object]:
    microphone = tmp_path_factory.mktemp("microphone") / "chirp.wav"
    microphone.write_bytes(sounds.to_bytes(samples["chirp"], fmt="WAV", subtype="PCM_16"))
    with chromium(microphone) as browser:
        yield browser


@pytest.fixture(scope="module")
def library(http, samples) -> dict[str, dict]:
    http.delete(f"/v1/collections/{COLLECTION}")
    assert http.post("/v1/collections", json={"name": COLLECTION}).status_code == 201
    records = {}
    for kind in KINDS:
        reply = http.post(f"/v1/collections/{COLLECTION}/audio", data={"meta": [f"kind={kind}"]},
                          files={"file": (f"{kind}.wav", sounds.to_bytes(samples[kind]), "audio/wav")})
        assert reply.status_code == 201, reply.text
        records[kind] = reply.json()["audio"]
    return records


def write_clip(folder: Path, name: str, samples, start: float, end: float) -> Path:
    path = folder / name
    path.write_bytes(sounds.to_bytes(samples[int(start * sounds.RATE):int(end * sounds.RATE)]))
    return path


def test_upload_a_clip_see_the_top_result_play_it_and_delete_it(browser, web_url, http, library, samples, tmp_path):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    siren = library["siren"]
    watched = Watched(browser, web_url, COLLECTION, viewport={"width": 1280, "height": 900})
    page = watched.page
    top = watched.search_with(write_clip(tmp_path, "siren-excerpt.wav", samples["siren"], 1.0, 3.5))

    expect(top.locator(".name")).to_have_text("siren.wav")
    expect(top.locator(".rank")).to_have_text("1")
    assert float(top.locator(".score").inner_text()) > 0.5
    expect(top.locator(".chip.tag").first).to_be_visible()
    expect(top.locator(".chip.meta")).to_have_text("kind=siren")
    expect(page.locator("#recordings .card")).to_have_count(len(KINDS))
    expect(page.locator("#more")).to_be_hidden()  # one page holds them all
    inked = top.locator("canvas.wave").evaluate(
        "canvas => canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data"
        ".filter((value, index) => index % 4 === 3 && value > 0).length")
    assert inked > 1000, "the waveform of the top result is drawn"
    page.screenshot(path=str(ARTIFACTS / "web-search.png"), full_page=True)

    top.locator(".play").click()
    page.wait_for_function(f"() => !{PLAYER}.paused && {PLAYER}.currentTime > 0.3", timeout=15_000)
    expect(top.locator(".play")).to_have_text("Pause")
    top.locator(".play-part").click()
    start = page.evaluate(f"() => {PLAYER}.currentTime")
    assert start == pytest.approx(1.0, abs=1.0)
    page.wait_for_function(f"() => {PLAYER}.paused", timeout=15_000)  # stops at the end of the matched part
    end = page.evaluate(f"() => {PLAYER}.currentTime")
    assert end == pytest.approx(3.5, abs=1.2)

    top.locator(".delete").click()
    expect(page.locator("#confirm")).to_be_visible()
    expect(page.locator("#confirm-text")).to_contain_text("siren.wav")
    page.locator("#confirm-delete").click()
    expect(page.locator(f'.card[data-id="{siren["id"]}"]')).to_have_count(0)
    expect(page.locator("#recordings .card")).to_have_count(len(KINDS) - 1)
    assert http.get(f"/v1/collections/{COLLECTION}/audio/{siren['id']}").status_code == 404
    page.reload()
    expect(page.locator("#recordings .card")).to_have_count(len(KINDS) - 1)
    expect(page.locator("#recordings")).not_to_contain_text("siren.wav")
    watched.close(web_url)


def test_a_cancelled_delete_keeps_the_recording(browser, web_url, library):
    from playwright.sync_api import expect

    watched = Watched(browser, web_url, COLLECTION)
    page = watched.page
    chord = page.locator(f'#recordings .card[data-id="{library["chord"]["id"]}"]')
    chord.locator(".delete").click()
    page.locator("#confirm button[value=cancel]").click()
    expect(page.locator("#confirm")).to_be_hidden()
    expect(chord).to_have_count(1)
    watched.close(web_url)


def test_browse_filters_by_tag_chip_and_metadata(browser, web_url, http, library):
    from playwright.sync_api import expect

    watched = Watched(browser, web_url, COLLECTION)
    page = watched.page
    page.fill("#filter-meta", "kind=drums")
    page.click("#filters button[type=submit]")
    expect(page.locator("#recordings .card")).to_have_count(1)
    expect(page.locator("#recordings .card .name")).to_have_text("drums.wav")
    page.locator("#recordings .card .chip.tag").first.click()
    tag = page.input_value("#filter-tag")
    expect(page.locator("#recordings .card").first).to_be_visible()
    with_tag = http.get(f"/v1/collections/{COLLECTION}/audio", params={"tag": tag}).json()["audios"]
    assert with_tag
    expect(page.locator("#recordings .card")).to_have_count(len(with_tag))
    watched.close(web_url)


def test_recording_from_the_microphone_finds_the_sound(browser, web_url, library):
    from playwright.sync_api import expect

    watched = Watched(browser, web_url, COLLECTION)
    page = watched.page
    page.click("#record")
    expect(page.locator("#record")).to_have_text("Stop")
    page.wait_for_timeout(5_000)  # the fake microphone loops chirp.wav
    page.click("#record")
    top = page.locator("#results .card").first
    top.wait_for(timeout=60_000)
    expect(page.locator("#query")).to_contain_text("recording.")
    expect(top.locator(".name")).to_have_text("chirp.wav")
    watched.close(web_url)


def test_the_page_fits_a_phone_screen(browser, web_url, library, samples, tmp_path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    watched = Watched(browser, web_url, COLLECTION, viewport={"width": 390, "height": 844}, device_scale_factor=2,
                      is_mobile=True, has_touch=True)
    page = watched.page
    top = watched.search_with(write_clip(tmp_path, "rain-excerpt.wav", samples["rain"], 0.5, 3.0))
    assert top.locator(".name").inner_text() == "rain.wav"
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    box = top.bounding_box()
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= 390
    page.screenshot(path=str(ARTIFACTS / "web-phone.png"), full_page=False)
    watched.close(web_url)


def test_an_untrained_model_says_its_tags_are_not_classifications(browser, web_url, library, samples, tmp_path):
    from playwright.sync_api import expect

    watched = Watched(browser, web_url, COLLECTION)  # the suite's embedder runs untrained
    page = watched.page
    banner = page.locator("#untrained-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("untrained-seed0")
    expect(banner).to_contain_text("tags are not classifications")
    expect(page.locator("#recordings .card .chip.tag.untrained").first).to_be_visible()
    expect(page.locator("#recordings .chip.tag:not(.untrained)")).to_have_count(0)
    expect(page.locator("#recordings .chip.tag b")).to_have_count(0)  # no "51%" that reads like a classification
    expect(page.locator("#recordings .card .chips-label").first).to_have_text("untrained tags:")
    expect(page.locator("#stats")).to_contain_text("most frequent untrained tags (not classifications)")
    top = watched.search_with(write_clip(tmp_path, "drums-excerpt.wav", samples["drums"], 0.5, 3.0))
    expect(page.locator("#query")).to_contain_text("untrained tags (not classifications)")
    expect(top.locator(".chip.tag.untrained").first).to_be_visible()
    watched.close(web_url)


TRAINED = pb.ModelIdentity(name="panns_cnn14", version="sha256=abcd", embedding_dim=2048, sample_rate_hz=32000)
TRAINED_RECORD = pb.AudioRecord(
    id="c" * 32, collection=COLLECTION, name="engine.wav", sha256="ab" * 32, duration_seconds=2.0,
    sample_rate_hz=32000, channels=1, codec="wav/pcm_16", size_bytes=128000, status=pb.AUDIO_STATUS_READY,
    segment_count=1, tags=[pb.Tag(label="Fire engine, fire truck (siren)", score=0.51)])


class TrainedGateway(audiosearch_pb2_grpc.AudioSearchServiceServicer):
    """A stand-in gateway whose one collection is bound to a trained model."""

    def ListCollections(self, request, context):
        return pb.ListCollectionsResponse(collections=[pb.Collection(
            name=COLLECTION, model=TRAINED, score_threshold=0.5, audio_count=1,
            segment_config=pb.SegmentConfig(window_seconds=2.0, hop_seconds=2.0))])

    def ListAudio(self, request, context):
        return pb.ListAudioResponse(audios=[TRAINED_RECORD])

    def GetCollectionStats(self, request, context):
        return pb.GetCollectionStatsResponse(audio_count=1, total_duration_seconds=2.0, segment_count=1, tags=[
            pb.TagStatistics(label=TRAINED_RECORD.tags[0].label, audio_count=1, total_duration_seconds=2.0)])

    def GetAudioContent(self, request, context):
        context.abort_with_status(build_status(grpc.StatusCode.NOT_FOUND, "not kept", "CONTENT_NOT_FOUND"))


@pytest.fixture
def trained_web_url() -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    audiosearch_pb2_grpc.add_AudioSearchServiceServicer_to_server(TrainedGateway(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    web = WebServer(f"127.0.0.1:{port}").start()
    try:
        yield web.url
    finally:
        web.stop()
        server.stop(None)


def test_a_trained_models_tags_are_shown_as_classifications(browser, trained_web_url):
    from playwright.sync_api import expect

    watched = Watched(browser, trained_web_url, COLLECTION)
    page = watched.page
    chip = page.locator("#recordings .card .chip.tag")
    expect(chip).to_have_text("Fire engine, fire truck (siren)51%")
    expect(page.locator("#untrained-banner")).to_be_hidden()
    expect(page.locator("#recordings .chip.tag.untrained, #recordings .chips-label")).to_have_count(0)
    expect(page.locator("#stats")).to_contain_text("mostly Fire engine")
    watched.close(trained_web_url)
