"""Distinct test sounds, generated (no downloads), and encoders for every supported format."""

from __future__ import annotations

import io
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile

RATE = 44_100


def synth(kind: str, seconds: float = 4.0, rate: int = RATE, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    if kind == "siren":
        signal = np.sin(2 * np.pi * (700 + 300 * np.sin(2 * np.pi * 0.5 * t)) * t)
    elif kind == "drums":
        signal = np.zeros_like(t)
        for beat in np.arange(0, seconds, 0.25):
            start = int(beat * rate)
            hit = rng.standard_normal(2000) * np.exp(-np.arange(2000) / 300)
            signal[start : start + 2000] += hit[: len(signal) - start]
    elif kind == "chord":
        signal = sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0)) / 3
    elif kind == "chirp":
        signal = np.sin(2 * np.pi * (200 * t + 900 * t**2))
    elif kind == "rain":
        signal = np.convolve(rng.standard_normal(len(t)), np.ones(8) / 8, mode="same")
    elif kind == "morse":
        signal = np.sin(2 * np.pi * 880 * t) * (np.sin(2 * np.pi * 3 * t) > 0.3)
    elif kind == "hum":
        signal = sum(np.sin(2 * np.pi * 50 * k * t) / k for k in range(1, 8)) + 0.05 * rng.standard_normal(len(t))
    elif kind == "birds":
        signal = np.zeros_like(t)
        for start in rng.uniform(0, seconds - 0.2, 12):
            n = int(0.15 * rate)
            tt = np.arange(n) / rate
            chirp = np.sin(2 * np.pi * (3000 + 8000 * tt) * tt) * np.hanning(n)
            index = int(start * rate)
            signal[index : index + n] += chirp
    else:
        raise ValueError(kind)
    return (0.4 * signal / np.max(np.abs(signal))).astype(np.float32)


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
