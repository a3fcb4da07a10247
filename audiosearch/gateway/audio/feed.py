"""Incremental decoding of a feed of any length into blocks of float32 mono, as its bytes arrive.

Headerless PCM (s16le, f32le) is converted in the process at its declared rate. Anything else goes through one
ffmpeg subprocess that reads the bytes on its stdin and writes f32le mono at the model's rate on its stdout, under
an address-space limit: a writer thread feeds it the client's chunks, a reader thread takes its output. Both kinds
hand their blocks over through a bounded queue, so a consumer that falls behind holds back the reader, ffmpeg,
the writer and, through gRPC's flow control, the client: what waits in memory is bounded whatever the feed's
length. A failure (the client's stream, undecodable bytes) reaches the consumer in order, after the blocks decoded
before it.
"""

from __future__ import annotations

import contextlib
import queue
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

import numpy as np

from audiosearch.gateway.audio.decoding import MAX_CHANNELS, MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ, AudioError

SAMPLE_BYTES = {"s16le": 2, "f32le": 4}
FFMPEG_MEMORY_BYTES = 2 * 1024**3
# Blocks waiting for the consumer: with ffmpeg's 64 KiB reads of f32 at 32 kHz, about 8 s of audio.
QUEUE_BLOCKS = 16
_READ_BYTES = 64 * 1024
_HANDOFF_POLL_SECONDS = 0.25
_STDERR_BYTES = 64 * 1024


@dataclass(frozen=True)
class RawFormat:
    """Headerless PCM: interleaved frames of `channels` samples laid out as `sample_format`."""

    sample_rate_hz: int
    channels: int
    sample_format: str  # a key of SAMPLE_BYTES

    def __post_init__(self) -> None:
        if not MIN_SAMPLE_RATE_HZ <= self.sample_rate_hz <= MAX_SAMPLE_RATE_HZ:
            raise AudioError(f"sample rate {self.sample_rate_hz} Hz is outside "
                             f"{MIN_SAMPLE_RATE_HZ}-{MAX_SAMPLE_RATE_HZ} Hz")
        if not 1 <= self.channels <= MAX_CHANNELS:
            raise AudioError(f"{self.channels} channels is outside 1-{MAX_CHANNELS}")
        if self.sample_format not in SAMPLE_BYTES:
            raise AudioError(f"sample format {self.sample_format!r} is not one of {', '.join(SAMPLE_BYTES)}")

    @property
    def frame_bytes(self) -> int:
        return SAMPLE_BYTES[self.sample_format] * self.channels


class RawPcmDecoder:
    """Bytes of headerless PCM to mono float32 blocks, a frame split across chunks carried over to the next."""

    def __init__(self, raw_format: RawFormat) -> None:
        self.format = raw_format
        self._carried = b""
        self._frames = 0

    def decode(self, chunk: bytes) -> np.ndarray:
        data = self._carried + chunk
        usable = len(data) - len(data) % self.format.frame_bytes
        self._carried = data[usable:]
        if self.format.sample_format == "s16le":
            samples = np.frombuffer(data[:usable], dtype="<i2").astype(np.float32) / 32768.0
        else:
            samples = np.frombuffer(data[:usable], dtype="<f4").astype(np.float32)
            finite = np.isfinite(samples)
            if not finite.all():
                frame = self._frames + int(np.argmin(finite)) // self.format.channels
                second = frame / self.format.sample_rate_hz
                raise AudioError(f"the feed holds NaN or infinite samples (near second {second:.1f})")
        frames = samples.reshape(-1, self.format.channels)
        self._frames += len(frames)
        return frames.mean(axis=1, dtype=np.float32) if self.format.channels > 1 else frames[:, 0].copy()

    def finish(self) -> None:
        if self._carried:
            raise AudioError(f"the feed ends inside a frame: {len(self._carried)} bytes left over, frames are "
                             f"{self.format.frame_bytes} bytes")


class _End:
    """What the queue holds after the last block."""


_END = _End()


class Feed:
    """Mono float32 blocks of a feed at `sample_rate_hz`, decoded in the background from `chunks`.

    `next_block` returns a block, None when nothing arrived within the timeout, or raises the failure that ended
    the feed; `ended` is true once the last block has been taken. `close` stops everything (cancellation)."""

    def __init__(self, chunks: Iterator[bytes], raw_format: RawFormat | None, output_rate_hz: int) -> None:
        self.sample_rate_hz = raw_format.sample_rate_hz if raw_format else output_rate_hz
        self.ended = False
        self._queue: queue.Queue[np.ndarray | BaseException | _End] = queue.Queue(maxsize=QUEUE_BLOCKS)
        self._closed = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        if raw_format is None:
            self._start_ffmpeg(chunks, output_rate_hz)
        else:
            self._thread("feed-pcm", lambda: self._convert(chunks, RawPcmDecoder(raw_format)))

    def next_block(self, timeout: float) -> np.ndarray | None:
        if self.ended:
            return None
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, _End):
            self.ended = True
            return None
        if isinstance(item, BaseException):
            self.ended = True
            self.close()
            raise item
        return item

    def close(self) -> None:
        self._closed.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()

    # Headerless PCM, in one thread

    def _convert(self, chunks: Iterator[bytes], decoder: RawPcmDecoder) -> None:
        try:
            for chunk in chunks:
                block = decoder.decode(chunk)
                if len(block) and not self._hand_over(block):
                    return
            decoder.finish()
        except Exception as error:  # noqa: BLE001 - handed to the consumer, which raises it in the RPC's thread
            self._hand_over(error)
            return
        self._hand_over(_END)

    # Containers, through ffmpeg

    def _start_ffmpeg(self, chunks: Iterator[bytes], output_rate_hz: int) -> None:
        command = ["prlimit", f"--as={FFMPEG_MEMORY_BYTES}", "--", "ffmpeg", "-hide_banner", "-v", "error",
                   "-i", "pipe:0", "-map", "0:a:0", "-f", "f32le", "-acodec", "pcm_f32le", "-ac", "1",
                   "-ar", str(output_rate_hz), "pipe:1"]
        errors = tempfile.TemporaryFile()  # noqa: SIM115 - the reader thread closes it once ffmpeg is done
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors)
        self._thread("feed-writer", lambda: self._write(chunks, self._process))
        self._thread("feed-reader", lambda: self._read(self._process, errors))

    def _write(self, chunks: Iterator[bytes], process: subprocess.Popen[bytes]) -> None:
        stdin: IO[bytes] = process.stdin  # type: ignore[assignment]
        try:
            for chunk in chunks:
                if self._closed.is_set():
                    return
                stdin.write(chunk)
        except (BrokenPipeError, ValueError):
            return  # ffmpeg stopped reading: the reader reports why
        except Exception as error:  # noqa: BLE001 - the client's stream failed: handed to the consumer
            self._hand_over(error)
            self.close()
            return
        finally:
            with contextlib.suppress(BrokenPipeError, ValueError):
                stdin.close()

    def _read(self, process: subprocess.Popen[bytes], errors: IO[bytes]) -> None:
        stdout: IO[bytes] = process.stdout  # type: ignore[assignment]
        carried = b""
        try:
            while chunk := stdout.read1(_READ_BYTES):  # type: ignore[attr-defined]
                data = carried + chunk
                usable = len(data) - len(data) % 4
                carried = data[usable:]
                if usable and not self._hand_over(np.frombuffer(data[:usable], dtype="<f4").copy()):
                    return
            process.wait()
            if self._closed.is_set():
                return
            if process.returncode != 0:
                self._hand_over(AudioError("the feed could not be decoded" + _last_line(errors)))
                return
            self._hand_over(_END)
        finally:
            stdout.close()
            errors.close()

    # Shared

    def _hand_over(self, item: np.ndarray | BaseException | _End) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=_HANDOFF_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    @staticmethod
    def _thread(name: str, target: Callable[[], None]) -> None:
        threading.Thread(target=target, name=name, daemon=True).start()


def _last_line(errors: IO[bytes]) -> str:
    errors.seek(0)
    lines = errors.read(_STDERR_BYTES).decode(errors="replace").strip().splitlines()
    return f": {lines[-1].replace('pipe:0', 'input')}" if lines else " (ffmpeg found no audio in it)"
