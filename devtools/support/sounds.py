"""Distinct test sounds, generated (no downloads), and encoders for every supported format."""

from __future__ import annotations

import io
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile

from devtools.demo import synth  # noqa: F401 - one generator of test sounds, shared with `make run`

RATE = 44_100


KINDS = ["siren", "drums", "chord", "chirp", "rain", "morse", "hum", "birds"]


def to_bytes(samples: np.ndarray, rate: int = RATE, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def ffmpeg_convert(data: bytes, extension: str, *args: str) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "in.wav", Path(folder) / f"out.{extension}"
        source.write_bytes(data)
        subprocess.run(["ffmpeg", "-y", "-v", "error", "-i", str(source), *args, str(target)], check=True)
        return target.read_bytes()


# Every format the public API promises, as (label, encoder of a float32 mono/stereo clip).
def encode_as(label: str, samples: np.ndarray, rate: int = RATE) -> bytes:
    libsndfile = {
        "wav": ("WAV", "PCM_16"),
        "flac": ("FLAC", "PCM_16"),
        "ogg": ("OGG", "VORBIS"),
        "opus": ("OGG", "OPUS"),
        "aiff": ("AIFF", "PCM_16"),
    }
    if label == "opus":  # Opus runs at 48 kHz only
        samples, rate = _resample_linear(samples, rate, 48_000), 48_000
    if label in libsndfile:
        fmt, subtype = libsndfile[label]
        return to_bytes(samples, rate, fmt, subtype)
    extension, codec = {"mp3": ("mp3", "libmp3lame"), "m4a": ("m4a", "aac")}[label]
    return ffmpeg_convert(to_bytes(samples, rate), extension, "-c:a", codec)


def _resample_linear(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    positions = np.arange(int(len(samples) * target / rate)) * rate / target
    if samples.ndim == 2:
        return np.stack([_resample_linear(channel, rate, target) for channel in samples.T], axis=1)
    return np.interp(positions, np.arange(len(samples)), samples).astype(np.float32)


FORMATS = ["wav", "flac", "ogg", "opus", "mp3", "m4a", "aiff"]
