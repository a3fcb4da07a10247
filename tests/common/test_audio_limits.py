"""The decoder's bounds on hostile input: claims checked before allocating, decoding counted while it runs,
truncated and corrupt files refused instead of stored half, in both the libsndfile and the ffmpeg path."""

from __future__ import annotations

import io
import struct
import subprocess
import time
import tracemalloc

import numpy as np
import pytest
import soundfile

from audiosearch.gateway.audio.decoding import AudioError, AudioLimits, decode_audio

RATE = 44_100


def tone(seconds: float = 3.0, rate: int = RATE, frequency: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def encode(samples: np.ndarray, fmt: str = "WAV", rate: int = RATE, subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def ffmpeg(data: bytes, tmp_path, extension: str, *args: str) -> bytes:
    source, target = tmp_path / "in.wav", tmp_path / f"out.{extension}"
    source.write_bytes(data)
    subprocess.run(["ffmpeg", "-y", "-v", "error", "-i", str(source), *args, str(target)], check=True)
    return target.read_bytes()


def flac_claiming(frames: int) -> bytes:
    """A real 3 s FLAC whose STREAMINFO claims `frames` samples."""
    data = bytearray(encode(tone(), "FLAC"))
    data[21] = (data[21] & 0xF0) | ((frames >> 32) & 0x0F)
    struct.pack_into(">I", data, 22, frames & 0xFFFFFFFF)
    return bytes(data)


def corrupt_middle(data: bytes) -> bytes:
    damaged = bytearray(data)
    quarter = len(data) // 4
    damaged[quarter : 3 * quarter] = np.random.default_rng(7).bytes(2 * quarter)
    return bytes(damaged)


def refused(data: bytes, reason: str = "INVALID_AUDIO", limits: AudioLimits | None = None) -> AudioError:
    with pytest.raises(AudioError) as failure:
        decode_audio(data, 32_000, limits)
    assert failure.value.reason == reason, str(failure.value)
    assert "audiosearch-decode" not in str(failure.value)  # no server paths in what the caller reads
    return failure.value


@pytest.mark.parametrize("frames", [10 * 3600 * RATE, 2**35])
def test_a_header_claiming_hours_is_refused_before_anything_is_allocated(frames):
    tracemalloc.start()
    started = time.perf_counter()
    try:
        refused(flac_claiming(frames), "AUDIO_TOO_LONG")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 1.0
    assert peak < 50 * 1024**2


def test_the_decoded_size_budget_bounds_high_sample_rates():
    data = encode(tone(2.0, 96_000), rate=96_000)
    limits = AudioLimits(max_decoded_bytes=4 * 96_000)  # one second at 96 kHz
    assert "MiB" in str(refused(data, "AUDIO_TOO_LONG", limits))
    assert decode_audio(data, 32_000).duration_seconds == pytest.approx(2.0, abs=0.01)


def test_ffmpeg_output_is_cut_off_at_the_duration_limit(tmp_path):
    adts = ffmpeg(encode(tone(4.0)), tmp_path, "aac")  # raw AAC: no declared length, decoded to find out
    refused(adts, "AUDIO_TOO_LONG", AudioLimits(max_duration_seconds=1.0))
    assert decode_audio(adts, 32_000).duration_seconds == pytest.approx(4.0, abs=0.1)


def test_a_declared_length_over_the_limit_is_refused_before_ffmpeg_decodes(tmp_path):
    wavpack = ffmpeg(encode(tone(4.0)), tmp_path, "wv")
    refused(wavpack, "AUDIO_TOO_LONG", AudioLimits(max_duration_seconds=1.0))


@pytest.mark.parametrize("label", ["flac_half", "flac_corrupt", "wv_half", "ogg_half", "opus_half", "opus_corrupt",
                                   "mp3_corrupt", "m4a_corrupt"])
def test_truncated_and_corrupt_files_are_refused_not_stored_half(label, tmp_path):
    wav = encode(tone())
    whole = {
        "flac": encode(tone(), "FLAC"), "ogg": encode(tone(), "OGG", subtype="VORBIS"),
        "opus": encode(tone(3.0, 48_000), "OGG", 48_000, "OPUS"), "mp3": encode(tone(), "MP3"),
    }
    kind, damage = label.split("_")
    if kind in ("wv", "m4a"):
        whole[kind] = ffmpeg(wav, tmp_path, kind)
    data = whole[kind]
    assert decode_audio(data, 32_000).duration_seconds == pytest.approx(3.0, abs=0.1)
    refused(data[: len(data) // 2] if damage == "half" else corrupt_middle(data))


def test_64_channels_are_refused_before_reading():
    refused(encode(np.tile(tone(0.1)[:, None], (1, 64))))


def test_channels_are_mixed_down_block_by_block_to_their_mean(tmp_path):
    channels = np.stack([tone(3.0, frequency=f) for f in (220.0, 330.0, 440.0)], axis=1)
    expected = channels.mean(axis=1)
    decoded = decode_audio(encode(channels, subtype="FLOAT"), RATE)
    assert decoded.channels == 3
    np.testing.assert_allclose(decoded.samples, expected, atol=1e-6)
    via_ffmpeg = decode_audio(ffmpeg(encode(channels, subtype="FLOAT"), tmp_path, "wv"), RATE)
    assert via_ffmpeg.channels == 3
    np.testing.assert_allclose(via_ffmpeg.samples, expected, atol=1e-4)


def test_nan_in_one_channel_is_refused():
    channels = np.stack([tone(), tone()], axis=1)
    channels[RATE * 2, 1] = np.nan
    assert "NaN" in str(refused(encode(channels, subtype="FLOAT")))
