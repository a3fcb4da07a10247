"""Decoding of untrusted audio bytes into float32 mono at the model's sample rate, bounded in size and time.

libsndfile (in-process, fast) reads wav, flac, ogg/vorbis, opus, mp3 and aiff; anything else goes through an
ffmpeg subprocess with a wall-clock timeout and an address-space limit, so a hostile file can neither hang nor
exhaust the caller. Both paths decode in blocks and mix down to mono as they go, and stop at the duration limit
and the decoded-size budget: what a header claims is checked before anything is allocated, and what a stream
really holds is counted while it is read. A file that decodes to markedly less than its header declares is
refused as truncated or corrupt rather than stored half.
"""

from __future__ import annotations

import io
import json
import math
import struct
import subprocess
import tempfile
import threading
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
_BLOCK_FRAMES = 1 << 16
# Decoded to at least this share of the length the container declares, or the file is truncated or corrupt.
_MIN_DECODED_SHARE = 0.9
# Containers whose declared length is exact (not estimated from a bitrate, as for raw mp3 or adts).
_EXACT_LENGTH_FORMATS = ("flac", "wv", "mov", "ogg", "wav", "aiff", "caf", "w64", "matroska", "ape", "tta")


class AudioError(ValueError):
    """The bytes are not usable audio; `reason` is the ErrorInfo reason to report."""

    def __init__(self, message: str, reason: str = "INVALID_AUDIO") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class AudioLimits:
    max_duration_seconds: float = 3600.0
    decode_timeout_seconds: float = 60.0
    # Mono float32 at the source rate: 1.5 GiB holds an hour at 96 kHz; higher rates get proportionally less time.
    max_decoded_bytes: int = 1536 * 1024**2

    def max_frames(self, sample_rate_hz: int) -> int:
        return min(int(self.max_duration_seconds * sample_rate_hz), self.max_decoded_bytes // 4)


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
    mono: np.ndarray  # float32 mono at `sample_rate_hz`
    sample_rate_hz: int
    channels: int
    codec: str


class _PartialRead(Exception):
    """libsndfile opened the file but could not decode all of it; ffmpeg may, up to the declared length."""

    def __init__(self, declared_seconds: float) -> None:
        super().__init__(declared_seconds)
        self.declared_seconds = declared_seconds


class _MonoBuffer:
    """Collects decoded blocks as mono, refusing non-finite samples and anything past the frame limit."""

    def __init__(self, channels: int, sample_rate_hz: int, limits: AudioLimits) -> None:
        self.channels = channels
        self.sample_rate_hz = sample_rate_hz
        self.max_frames = limits.max_frames(sample_rate_hz)
        self.limits = limits
        self.frames = 0
        self._blocks: list[np.ndarray] = []

    def add(self, block: np.ndarray) -> None:
        if not np.isfinite(block).all():
            raise AudioError("the audio contains NaN or infinite samples")
        self.frames += len(block)
        if self.frames > self.max_frames:
            raise _too_long(self.frames, self.sample_rate_hz, self.limits)
        self._blocks.append(block.mean(axis=1, dtype=np.float32) if self.channels > 1 else block[:, 0])

    def mono(self) -> np.ndarray:
        return np.concatenate(self._blocks).astype(np.float32, copy=False) if self._blocks else np.zeros(0, np.float32)


def _too_long(frames: int, sample_rate_hz: int, limits: AudioLimits) -> AudioError:
    seconds = frames / sample_rate_hz
    if seconds > limits.max_duration_seconds:
        return AudioError(f"the audio lasts {seconds:.0f} s, more than the {limits.max_duration_seconds:.0f} s allowed",
                          reason="AUDIO_TOO_LONG")
    return AudioError(
        f"{seconds:.0f} s at {sample_rate_hz} Hz decode to more than the {limits.max_decoded_bytes // 2**20} MiB "
        f"allowed ({limits.max_frames(sample_rate_hz) / sample_rate_hz:.0f} s at this rate)", reason="AUDIO_TOO_LONG")


def decode_audio(data: bytes, target_rate_hz: int, limits: AudioLimits | None = None) -> DecodedAudio:
    """Decodes, validates, mixes down to mono and resamples; raises AudioError with a reason."""
    limits = limits or AudioLimits()
    if not data:
        raise AudioError("the audio is empty (0 bytes)")
    _check_not_truncated(data)
    declared_seconds = None
    try:
        raw = _read_with_libsndfile(data, limits)
    except _PartialRead as partial:
        raw, declared_seconds = None, partial.declared_seconds
    raw = raw or _read_with_ffmpeg(data, limits, declared_seconds)
    mono = _validated(raw.mono, raw.sample_rate_hz)
    samples = resample(mono, raw.sample_rate_hz, target_rate_hz)
    return DecodedAudio(samples, target_rate_hz, raw.sample_rate_hz, raw.channels, raw.codec)


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
    if frames is not None and frames > limits.max_frames(sample_rate_hz):
        raise _too_long(frames, sample_rate_hz, limits)


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


def _ogg_cut_short(data: bytes) -> bool:
    """Whether an Ogg stream ends inside a page (pages carry their own length; a cut lands inside one)."""
    position = 0
    while position + 27 <= len(data):
        if data[position : position + 4] != b"OggS":
            return False  # not a clean page sequence: corruption is the decoder's to report
        segments = data[position + 26]
        header_end = position + 27 + segments
        if header_end > len(data):
            return True
        position = header_end + sum(data[position + 27 : header_end])
    return position > len(data) or 0 < len(data) - position < 27


def _check_not_truncated(data: bytes) -> None:
    declared = _declared_pcm_bytes(data)
    if declared is not None and declared > len(data):
        raise AudioError(f"the file is truncated: its header declares {declared} bytes of audio, {len(data)} arrived")
    if data[:4] == b"OggS" and _ogg_cut_short(data):
        raise AudioError("the file is truncated: its last Ogg page is incomplete")


def _read_with_libsndfile(data: bytes, limits: AudioLimits) -> _RawAudio | None:
    """None when libsndfile cannot open the bytes; _PartialRead when it opens them but cannot decode them all."""
    try:
        stream = soundfile.SoundFile(io.BytesIO(data))
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        return None
    with stream:
        _check_stream_shape(stream.samplerate, stream.channels, stream.frames, limits)
        buffer = _MonoBuffer(stream.channels, stream.samplerate, limits)
        try:
            while len(block := stream.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)):
                buffer.add(block)
        except (soundfile.LibsndfileError, RuntimeError) as error:
            raise _PartialRead(stream.frames / stream.samplerate) from error
        codec = f"{stream.format}/{stream.subtype}".lower()
    if stream.frames > 0 and buffer.frames < stream.frames * _MIN_DECODED_SHARE:
        raise AudioError(f"the file is truncated: {buffer.frames} of {stream.frames} frames readable")
    return _RawAudio(buffer.mono(), stream.samplerate, stream.channels, codec)


def _memory_bounded(command: list[str]) -> list[str]:
    # prlimit (util-linux, in every Debian image) sets the child's address-space limit without a preexec_fn,
    # which is unsafe in a multi-threaded server.
    return ["prlimit", f"--as={_FFMPEG_MEMORY_BYTES}", "--", *command]


def _run_bounded(command: list[str], limits: AudioLimits) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            _memory_bounded(command), capture_output=True, timeout=limits.decode_timeout_seconds,
            check=False, stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as error:
        raise AudioError(f"decoding took longer than {limits.decode_timeout_seconds:.0f} s") from error


def _last_line(stderr: bytes, path: str) -> str:
    lines = stderr.decode(errors="replace").strip().splitlines()
    return f": {lines[-1].replace(path, 'input')}" if lines else ""


def _probe(path: str, limits: AudioLimits) -> dict[str, object]:
    command = ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
               "stream=codec_name,sample_rate,channels,duration:format=format_name,duration", "-of", "json",
               "-i", path]
    result = _run_bounded(command, limits)
    try:
        info = json.loads(result.stdout or b"{}")
    except json.JSONDecodeError:
        info = {}
    streams = info.get("streams") or []
    if result.returncode != 0 or not streams:
        raise AudioError("not a readable audio file" + _last_line(result.stderr, path))
    format_info = info.get("format", {})
    format_name = str(format_info.get("format_name", "unknown"))
    declared = streams[0].get("duration") or format_info.get("duration")
    exact = format_name.split(",", maxsplit=1)[0] in _EXACT_LENGTH_FORMATS
    return {**streams[0], "format_name": format_name, "declared_seconds": _seconds(declared) if exact else None}


def _seconds(value: object) -> float | None:
    try:
        seconds = float(str(value))
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None


def _read_with_ffmpeg(data: bytes, limits: AudioLimits, declared_seconds: float | None = None) -> _RawAudio:
    # A file, not a pipe: MP4/M4A keep their index at the end and need seeking.
    with tempfile.NamedTemporaryFile(prefix="audiosearch-decode-") as upload:
        upload.write(data)
        upload.flush()
        return _decode_file_with_ffmpeg(upload.name, limits, declared_seconds)


def _decode_file_with_ffmpeg(path: str, limits: AudioLimits, declared_seconds: float | None) -> _RawAudio:
    stream = _probe(path, limits)
    sample_rate_hz = int(str(stream.get("sample_rate") or 0))
    channels = int(str(stream.get("channels") or 0))
    declared_seconds = declared_seconds or stream["declared_seconds"]
    declared_frames = int(declared_seconds * sample_rate_hz) if declared_seconds else None
    _check_stream_shape(sample_rate_hz, channels, declared_frames, limits)
    buffer = _MonoBuffer(channels, sample_rate_hz, limits)
    max_seconds = buffer.max_frames / sample_rate_hz + 1
    command = ["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-map", "0:a:0", "-t", f"{max_seconds:.3f}",
               "-f", "f32le", "-acodec", "pcm_f32le", "-ac", str(channels), "-ar", str(sample_rate_hz), "pipe:1"]
    _stream_pcm(command, path, buffer, limits)
    if declared_frames and buffer.frames < declared_frames * _MIN_DECODED_SHARE:
        raise AudioError(f"the file is truncated or corrupt: {buffer.frames / sample_rate_hz:.2f} s of the "
                         f"{declared_seconds:.2f} s it declares are decodable")
    codec = f"{str(stream['format_name']).split(',')[0]}/{stream.get('codec_name', 'unknown')}"
    return _RawAudio(buffer.mono(), sample_rate_hz, channels, codec)


def _stream_pcm(command: list[str], path: str, buffer: _MonoBuffer, limits: AudioLimits) -> None:
    """Runs an ffmpeg that writes f32le to stdout, feeding `buffer` block by block, within time and memory bounds."""
    frame_bytes = 4 * buffer.channels
    timed_out = threading.Event()
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(_memory_bounded(command), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=errors)
        watchdog = threading.Timer(limits.decode_timeout_seconds, lambda: (timed_out.set(), process.kill()))
        watchdog.start()
        try:
            assert process.stdout is not None
            while chunk := process.stdout.read(frame_bytes * _BLOCK_FRAMES):
                usable = len(chunk) - len(chunk) % frame_bytes
                buffer.add(np.frombuffer(chunk[:usable], dtype="<f4").reshape(-1, buffer.channels))
            process.wait()
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stdout.close()
        errors.seek(0)
        stderr = errors.read(64 * 1024)
    if timed_out.is_set():
        raise AudioError(f"decoding took longer than {limits.decode_timeout_seconds:.0f} s")
    if process.returncode != 0:
        raise AudioError("the audio could not be decoded" + _last_line(stderr, path))


def _validated(mono: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    if len(mono) / sample_rate_hz < MIN_DURATION_SECONDS:
        raise AudioError(
            f"the audio holds {len(mono)} samples; at least {MIN_DURATION_SECONDS * 1000:.0f} ms are needed"
        )
    peak = float(np.abs(mono).max())
    if peak < SILENCE_PEAK:
        raise AudioError(f"the audio is silent (peak {_dbfs(peak)})")
    return mono


def _dbfs(level: float) -> str:
    return "-inf dBFS" if level <= 0 else f"{20 * math.log10(level):.0f} dBFS"
