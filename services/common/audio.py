"""Decoding of untrusted audio bytes into float32 mono at the model's sample rate, bounded in size and time.

libsndfile (in-process, fast) reads wav, flac, ogg/vorbis, opus, mp3 and aiff; anything else goes through an
ffmpeg subprocess with a wall-clock timeout and an address-space limit, so a hostile file can neither hang nor
exhaust the caller.
"""

from __future__ import annotations

import io
import json
import math
import resource
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import soundfile
from scipy.signal import resample_poly

MIN_SAMPLE_RATE_HZ = 1_000
MAX_SAMPLE_RATE_HZ = 384_000
MAX_CHANNELS = 32
MIN_DURATION_SECONDS = 0.01
SILENCE_PEAK = 1e-4
_FFMPEG_MEMORY_BYTES = 2 * 1024**3


class AudioError(ValueError):
    """The bytes are not usable audio; `reason` is the ErrorInfo reason to report."""

    def __init__(self, message: str, reason: str = "INVALID_AUDIO") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class AudioLimits:
    max_duration_seconds: float = 3600.0
    decode_timeout_seconds: float = 60.0


@dataclass(frozen=True)
class DecodedAudio:
    samples: np.ndarray  # float32 mono at `sample_rate_hz`
    sample_rate_hz: int
    original_sample_rate_hz: int
    channels: int
    codec: str

    @property
    def duration_seconds(self) -> float:
        return len(self.samples) / self.sample_rate_hz


@dataclass(frozen=True)
class _RawAudio:
    frames: np.ndarray  # float32, shape (n, channels)
    sample_rate_hz: int
    codec: str


def decode_audio(data: bytes, target_rate_hz: int, limits: AudioLimits | None = None) -> DecodedAudio:
    """Decodes, validates, mixes down to mono and resamples; raises AudioError with a reason."""
    limits = limits or AudioLimits()
    if not data:
        raise AudioError("the audio is empty (0 bytes)")
    raw = _read_with_libsndfile(data, limits) or _read_with_ffmpeg(data, limits)
    channels = raw.frames.shape[1]
    mono = _validated_mono(raw.frames, raw.sample_rate_hz, limits)
    samples = resample(mono, raw.sample_rate_hz, target_rate_hz)
    return DecodedAudio(samples, target_rate_hz, raw.sample_rate_hz, channels, raw.codec)


def resample(samples: np.ndarray, from_rate_hz: int, to_rate_hz: int) -> np.ndarray:
    if from_rate_hz == to_rate_hz:
        return samples.astype(np.float32, copy=False)
    ratio = Fraction(to_rate_hz, from_rate_hz).limit_denominator(1000)
    return resample_poly(samples, ratio.numerator, ratio.denominator).astype(np.float32)


def _check_stream_shape(sample_rate_hz: int, channels: int, frames: int | None, limits: AudioLimits) -> None:
    if not MIN_SAMPLE_RATE_HZ <= sample_rate_hz <= MAX_SAMPLE_RATE_HZ:
        raise AudioError(
            f"sample rate {sample_rate_hz} Hz is outside {MIN_SAMPLE_RATE_HZ}-{MAX_SAMPLE_RATE_HZ} Hz"
        )
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(f"{channels} channels is outside 1-{MAX_CHANNELS}")
    if frames is not None and frames / sample_rate_hz > limits.max_duration_seconds:
        raise AudioError(
            f"the audio lasts {frames / sample_rate_hz:.0f} s, "
            f"more than the {limits.max_duration_seconds:.0f} s allowed",
            reason="AUDIO_TOO_LONG",
        )


def _declared_pcm_bytes(data: bytes) -> int | None:
    """The payload size a WAV or AIFF header promises, to tell a truncated file from a short one."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        chunk_id, size_format, position = b"data", "<I", 12
    elif data[:4] == b"FORM" and data[8:12] in (b"AIFF", b"AIFC"):
        chunk_id, size_format, position = b"SSND", ">I", 12
    else:
        return None
    while position + 8 <= len(data):
        (size,) = struct.unpack(size_format, data[position + 4 : position + 8])
        if data[position : position + 4] == chunk_id:
            return None if size in (0, 0xFFFFFFFF) else size
        position += 8 + size + (size & 1)
    return None


def _check_not_truncated(data: bytes) -> None:
    declared = _declared_pcm_bytes(data)
    if declared is not None and declared > len(data):
        raise AudioError(f"the file is truncated: its header declares {declared} bytes of audio, {len(data)} arrived")


def _read_with_libsndfile(data: bytes, limits: AudioLimits) -> _RawAudio | None:
    _check_not_truncated(data)
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as stream:
            _check_stream_shape(stream.samplerate, stream.channels, stream.frames, limits)
            frames = stream.read(dtype="float32", always_2d=True)
            codec = f"{stream.format}/{stream.subtype}".lower()
            sample_rate_hz = stream.samplerate
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        return None
    if stream.frames > 0 and len(frames) < stream.frames * 0.9:
        raise AudioError(f"the file is truncated: {len(frames)} of {stream.frames} frames readable")
    return _RawAudio(frames, sample_rate_hz, codec)


def _limit_child_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (_FFMPEG_MEMORY_BYTES, _FFMPEG_MEMORY_BYTES))


def _run_bounded(command: list[str], limits: AudioLimits) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            command, capture_output=True, timeout=limits.decode_timeout_seconds,
            preexec_fn=_limit_child_memory, check=False, stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as error:
        raise AudioError(f"decoding took longer than {limits.decode_timeout_seconds:.0f} s") from error


def _probe(path: str, limits: AudioLimits) -> dict[str, object]:
    command = ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
               "stream=codec_name,sample_rate,channels:format=format_name", "-of", "json", "-i", path]
    result = _run_bounded(command, limits)
    try:
        info = json.loads(result.stdout or b"{}")
    except json.JSONDecodeError:
        info = {}
    streams = info.get("streams") or []
    if result.returncode != 0 or not streams:
        detail = result.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError("not a readable audio file" + (f": {detail[-1]}" if detail else ""))
    return {**streams[0], "format_name": info.get("format", {}).get("format_name", "unknown")}


def _read_with_ffmpeg(data: bytes, limits: AudioLimits) -> _RawAudio:
    # A file, not a pipe: MP4/M4A keep their index at the end and need seeking.
    with tempfile.NamedTemporaryFile(prefix="audiosearch-decode-") as upload:
        upload.write(data)
        upload.flush()
        return _decode_file_with_ffmpeg(upload.name, limits)


def _decode_file_with_ffmpeg(path: str, limits: AudioLimits) -> _RawAudio:
    stream = _probe(path, limits)
    sample_rate_hz = int(str(stream.get("sample_rate") or 0))
    channels = int(str(stream.get("channels") or 0))
    _check_stream_shape(sample_rate_hz, channels, None, limits)
    max_seconds = limits.max_duration_seconds + 1
    command = ["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-map", "0:a:0", "-t", f"{max_seconds:.3f}",
               "-f", "f32le", "-acodec", "pcm_f32le", "-ac", str(channels), "-ar", str(sample_rate_hz), "pipe:1"]
    result = _run_bounded(command, limits)
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError("the audio could not be decoded" + (f": {detail[-1]}" if detail else ""))
    frames = np.frombuffer(result.stdout, dtype="<f4")
    frames = frames[: len(frames) - len(frames) % channels].reshape(-1, channels)
    if len(frames) / sample_rate_hz > limits.max_duration_seconds:
        raise AudioError(
            f"the audio lasts more than the {limits.max_duration_seconds:.0f} s allowed", reason="AUDIO_TOO_LONG"
        )
    codec = f"{str(stream['format_name']).split(',')[0]}/{stream.get('codec_name', 'unknown')}"
    return _RawAudio(frames, sample_rate_hz, codec)


def _validated_mono(frames: np.ndarray, sample_rate_hz: int, limits: AudioLimits) -> np.ndarray:
    if len(frames) / sample_rate_hz < MIN_DURATION_SECONDS:
        raise AudioError(
            f"the audio holds {len(frames)} samples; at least {MIN_DURATION_SECONDS * 1000:.0f} ms are needed"
        )
    if not np.isfinite(frames).all():
        raise AudioError("the audio contains NaN or infinite samples")
    mono = frames.mean(axis=1, dtype=np.float32)
    peak = float(np.abs(mono).max())
    if peak < SILENCE_PEAK:
        raise AudioError(f"the audio is silent (peak {_dbfs(peak)})")
    return mono


def _dbfs(level: float) -> str:
    return "-inf dBFS" if level <= 0 else f"{20 * math.log10(level):.0f} dBFS"
