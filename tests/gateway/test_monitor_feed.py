"""Incremental decoding of a monitored feed: raw PCM in the process, containers through a streaming ffmpeg."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest

from audiosearch.gateway.audio.decoding import AudioError
from audiosearch.gateway.audio.feed import QUEUE_BLOCKS, Feed, RawFormat, RawPcmDecoder
from devtools.support import sounds

MODEL_RATE = 32_000


def chunked(data: bytes, size: int = 4099) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def decode_all(feed: Feed, deadline_seconds: float = 30.0) -> np.ndarray:
    blocks = []
    deadline = time.monotonic() + deadline_seconds
    while not feed.ended:
        assert time.monotonic() < deadline, "the feed never ended"
        block = feed.next_block(0.5)
        if block is not None:
            blocks.append(block)
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


@pytest.fixture(scope="module")
def siren() -> np.ndarray:
    return sounds.synth("siren", seconds=4.0).astype(np.float32)


def test_s16le_stereo_split_inside_frames_decodes_to_the_mono_mix(siren):
    stereo = np.stack([siren, siren * 0.5], axis=1)
    data = np.round(stereo * 32767).astype("<i2").tobytes()
    decoded = decode_all(Feed(chunked(data, 1001), RawFormat(sounds.RATE, 2, "s16le"), MODEL_RATE))
    assert len(decoded) == len(siren)
    np.testing.assert_allclose(decoded, siren * 0.75, atol=1e-4)


def test_f32le_keeps_its_declared_rate(siren):
    feed = Feed(chunked(siren.astype("<f4").tobytes()), RawFormat(sounds.RATE, 1, "f32le"), MODEL_RATE)
    assert feed.sample_rate_hz == sounds.RATE
    np.testing.assert_array_equal(decode_all(feed), siren)


@pytest.mark.parametrize("label", ["wav", "mp3", "flac", "ogg"])
def test_a_streamed_container_decodes_to_mono_at_the_model_rate(siren, label):
    feed = Feed(chunked(sounds.encode_as(label, siren)), None, MODEL_RATE)
    assert feed.sample_rate_hz == MODEL_RATE
    assert len(decode_all(feed)) / MODEL_RATE == pytest.approx(4.0, abs=0.06)


def test_bytes_that_are_not_audio_end_the_feed_with_a_reason():
    feed = Feed(chunked(b"definitely not audio " * 5000), None, MODEL_RATE)
    with pytest.raises(AudioError, match="could not be decoded"):
        decode_all(feed)


def test_non_finite_samples_are_refused_with_the_second_they_arrive_at():
    good = np.zeros(8000 * 3, "<f4")
    good[::7] = 0.1
    data = good.tobytes() + np.array([np.nan], "<f4").tobytes()
    with pytest.raises(AudioError, match=r"NaN or infinite samples \(near second 3\.0\)"):
        decode_all(Feed(chunked(data), RawFormat(8000, 1, "f32le"), MODEL_RATE))


def test_a_feed_that_ends_inside_a_frame_is_refused():
    decoder = RawPcmDecoder(RawFormat(16000, 2, "s16le"))
    decoder.decode(b"\x00" * 6)
    with pytest.raises(AudioError, match="ends inside a frame"):
        decoder.finish()


def test_a_failing_client_stream_reaches_the_consumer_after_the_audio_before_it(siren):
    def failing() -> Iterator[bytes]:
        yield from chunked(sounds.to_bytes(siren))
        raise RuntimeError("the client went away")

    feed = Feed(failing(), None, MODEL_RATE)
    with pytest.raises(RuntimeError, match="went away"):
        decode_all(feed)


@pytest.mark.parametrize("raw", [(500, 1, "s16le"), (16000, 0, "s16le"), (16000, 1, "u8")])
def test_an_impossible_raw_format_is_refused(raw):
    with pytest.raises(AudioError):
        RawFormat(*raw)


def test_close_stops_a_feed_that_is_still_arriving():
    def endless() -> Iterator[bytes]:
        while True:
            yield b"\x00\x01" * 4096

    feed = Feed(endless(), RawFormat(16000, 1, "s16le"), MODEL_RATE)
    assert feed.next_block(5.0) is not None
    feed.close()
    taken = 0
    while feed.next_block(0.5) is not None:  # what was queued before the close, then nothing more
        taken += 1
        assert taken <= QUEUE_BLOCKS + 1
