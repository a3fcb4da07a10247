"""Ingesting many files: N concurrent streams to the gateway, a live count, and the outcome per file."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TextIO

from audiosearch.cli.client import CHUNK_BYTES, Client, GatewayError, GatewayUnreachableError
from audiosearch.cli.files import AudioFile, read_chunks
from audiosearch.cli.output import JsonDict, Progress, record_to_dict
from audiosearch.v1 import audiosearch_pb2 as pb

LOCAL_CODE = "LOCAL"
RETRY_REASONS = frozenset({"OVERLOADED", "INGEST_IN_PROGRESS"})
RETRY_ATTEMPTS = 8
RETRY_BASE_SECONDS = 0.25
RETRY_MAX_SECONDS = 4.0


@dataclass(frozen=True)
class Failure:
    """One file that was not ingested: a gRPC status code name (or LOCAL) and its reason."""

    path: str
    code: str
    reason: str | None
    message: str

    def to_dict(self) -> JsonDict:
        return {"path": self.path, "code": self.code, "reason": self.reason, "message": self.message}


@dataclass(frozen=True)
class Ingested:
    path: str
    response: pb.IngestAudioResponse

    def to_dict(self) -> JsonDict:
        return {
            **record_to_dict(self.response.audio),
            "path": self.path,
            "already_existed": self.response.already_existed,
        }


@dataclass
class IngestReport:
    """Everything an ingest run produced, in the order the files were found."""

    ingested: list[Ingested] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def new(self) -> list[Ingested]:
        return [item for item in self.ingested if not item.response.already_existed]

    @property
    def audio_seconds(self) -> float:
        """Seconds of newly ingested audio (recordings that already existed cost no work)."""
        return sum(item.response.audio.duration_seconds for item in self.new)

    def summary(self) -> JsonDict:
        audio = self.audio_seconds
        return {
            "files": len(self.ingested) + len(self.failed),
            "ingested": len(self.new),
            "already_existed": len(self.ingested) - len(self.new),
            "failed": len(self.failed),
            "skipped": len(self.skipped),
            "audio_seconds": round(audio, 3),
            "wall_seconds": round(self.wall_seconds, 3),
            "rate": round(audio / self.wall_seconds, 3) if self.wall_seconds > 0 else 0.0,
        }

    def to_dict(self) -> JsonDict:
        return {
            "ingested": [item.to_dict() for item in self.ingested],
            "failed": [failure.to_dict() for failure in self.failed],
            "summary": self.summary(),
        }


def header_metadata(file: AudioFile, metadata: Mapping[str, str]) -> dict[str, str]:
    """The caller's --meta pairs plus `path`, the file's path as given."""
    return {**metadata, "path": file.path}


def is_retryable(error: GatewayError) -> bool:
    """Busy rather than wrong: the gateway is at its ingest limit, or the same bytes are mid-ingest."""
    return error.reason in RETRY_REASONS or (error.code == "RESOURCE_EXHAUSTED" and error.reason is None)


def backoff_seconds(attempt: int) -> float:
    return min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2**attempt) * random.uniform(0.5, 1.0)


def send_file(
    client: Client, collection: str, file: AudioFile, metadata: Mapping[str, str], timeout: float | None
) -> pb.IngestAudioResponse:
    """One IngestAudio stream of the file's bytes; OSError when it cannot be read."""
    with open(file.path, "rb") as handle:
        chunks = read_chunks(handle, CHUNK_BYTES)
        return client.ingest(collection, file.name, chunks, header_metadata(file, metadata), timeout=timeout)


def ingest_one(
    client: Client,
    collection: str,
    file: AudioFile,
    metadata: Mapping[str, str],
    timeout: float | None,
) -> Ingested | Failure:
    """Ingests one file, retrying with backoff while the gateway says it is busy."""
    attempt = 0
    while True:
        try:
            return Ingested(file.path, send_file(client, collection, file, metadata, timeout))
        except OSError as error:
            return Failure(file.path, LOCAL_CODE, "FILE_UNREADABLE", error.strerror or str(error))
        except GatewayUnreachableError as error:
            return Failure(file.path, "UNAVAILABLE", None, str(error))
        except GatewayError as error:
            if not is_retryable(error) or attempt + 1 >= RETRY_ATTEMPTS:
                return Failure(file.path, error.code, error.reason, error.message)
        time.sleep(backoff_seconds(attempt))
        attempt += 1


def ingest_files(
    client: Client,
    collection: str,
    files: Sequence[AudioFile],
    metadata: Mapping[str, str],
    *,
    parallel: int,
    timeout: float | None,
    progress_stream: TextIO,
    live: bool,
) -> IngestReport:
    """Ingests `files` with `parallel` streams in flight; the report keeps the files' order."""
    started = time.monotonic()
    with Progress(len(files), progress_stream, live) as progress:

        def run(file: AudioFile) -> Ingested | Failure:
            outcome = ingest_one(client, collection, file, metadata, timeout)
            if isinstance(outcome, Ingested):
                new = not outcome.response.already_existed
                progress.add(outcome.response.audio.duration_seconds if new else 0.0)
            else:
                progress.add(failed=True)
            return outcome

        pool = ThreadPoolExecutor(max(1, parallel), thread_name_prefix="ingest")
        try:
            outcomes = list(pool.map(run, files))
        except BaseException:
            # Ctrl-C: drop the queued files and cancel the streams in flight instead of finishing them.
            pool.shutdown(wait=False, cancel_futures=True)
            client.close()
            raise
        pool.shutdown()
    report = IngestReport(wall_seconds=time.monotonic() - started)
    for outcome in outcomes:
        if isinstance(outcome, Ingested):
            report.ingested.append(outcome)
        else:
            report.failed.append(outcome)
    return report
