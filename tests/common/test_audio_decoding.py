import io
import subprocess

import numpy as np
import pytest
import soundfile

from audiosearch.gateway.audio.decoding import AudioError, AudioLimits, decode_audio

RATE = 48_000


def tone(seconds: float = 2.0, rate: int = RATE, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return mono if channels == 1 else np.stack([mono] * channels, axis=1)


def encode(samples: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def ffmpeg_encode(wav: bytes, extension: str, tmp_path) -> bytes:
    source, target = tmp_path / "in.wav", tmp_path / f"out.{extension}"
    source.write_bytes(wav)
    subprocess.run(["ffmpeg", "-y", "-v", "error", "-i", str(source), str(target)], check=True)
    return target.read_bytes()


@pytest.mark.parametrize(("fmt", "subtype"), [("WAV", "PCM_16"), ("FLAC", "PCM_24"), ("OGG", "VORBIS"),
                                              ("OGG", "OPUS"), ("MP3", "MPEG_LAYER_III"), ("AIFF", "PCM_16")])
def test_libsndfile_formats_decode_to_mono_32k(fmt, subtype):
    decoded = decode_audio(encode(tone(channels=2), RATE, fmt, subtype), 32_000)
    assert decoded.sample_rate_hz == 32_000
    assert decoded.channels == 2
    assert decoded.original_sample_rate_hz == RATE
    assert decoded.samples.ndim == 1
    assert decoded.duration_seconds == pytest.approx(2.0, abs=0.08)


@pytest.mark.parametrize("extension", ["m4a", "wv"])
def test_ffmpeg_decodes_what_libsndfile_cannot(extension, tmp_path):
    decoded = decode_audio(ffmpeg_encode(encode(tone(), RATE, "WAV"), extension, tmp_path), 32_000)
    assert decoded.duration_seconds == pytest.approx(2.0, abs=0.1)
    assert extension[:2] in decoded.codec or "aac" in decoded.codec


@pytest.mark.parametrize("rate", [8_000, 11_025, 22_050, 96_000])
def test_any_rate_from_8_to_96_khz_is_resampled(rate):
    decoded = decode_audio(encode(tone(1.0, rate), rate, "WAV"), 32_000)
    assert len(decoded.samples) == pytest.approx(32_000, abs=2)
    spectrum = np.abs(np.fft.rfft(decoded.samples))
    assert np.argmax(spectrum) == pytest.approx(440, abs=2)


@pytest.mark.parametrize(("payload", "needle"), [
    (b"", "empty"),
    (b"this is not audio at all " * 40, "not a readable audio file"),
    (np.random.default_rng(0).bytes(20_000), "not a readable audio file"),
])
def test_garbage_is_rejected_with_a_reason(payload, needle):
    with pytest.raises(AudioError, match=needle) as failure:
        decode_audio(payload, 32_000)
    assert failure.value.reason == "INVALID_AUDIO"


def test_truncated_wav_is_rejected():
    wav = encode(tone(3.0), RATE, "WAV")
    with pytest.raises(AudioError, match="truncated"):
        decode_audio(wav[: len(wav) // 3], 32_000)


def test_silence_is_rejected():
    with pytest.raises(AudioError, match="silent"):
        decode_audio(encode(np.zeros(RATE, np.float32), RATE, "WAV"), 32_000)


def test_non_finite_samples_are_rejected():
    samples = tone(1.0)
    samples[100] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        decode_audio(encode(samples, RATE, "WAV", "FLOAT"), 32_000)


def test_too_long_is_refused_before_decoding():
    with pytest.raises(AudioError) as failure:
        decode_audio(encode(tone(5.0), RATE, "WAV"), 32_000, AudioLimits(max_duration_seconds=2.0))
    assert failure.value.reason == "AUDIO_TOO_LONG"


def test_one_sample_is_too_short():
    with pytest.raises(AudioError, match="at least"):
        decode_audio(encode(np.array([0.5], np.float32), RATE, "WAV"), 32_000)
