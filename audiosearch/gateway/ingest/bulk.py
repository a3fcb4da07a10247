"""Bulk import: many files in one call, a few in flight at a time, outcomes and progress streamed back.

`ImportAudio` takes the files from the client's stream; `ImportDirectory` reads them from a directory inside
one of the allow-listed import roots (GATEWAY_IMPORT_ROOTS). Both run the same loop:

- a feeder thread takes the next file (reads it off the stream, or names the next path of the directory walk)
  once one of `import_parallel_files` slots is free, and hands it to a worker; a slot is given back only when
  the file's outcome has been sent, so the gateway never holds more than that many files (plus the one being
  received), whatever the number of files;
- each worker ingests its file exactly as IngestAudio does (dedupe, decode, embed, catalog, vectors, READY), so
  several files decode while others wait on Triton, whose dynamic batcher merges their windows into full
  batches;
- a file that fails is reported (status code name, reason, message) and skipped; the rest goes on. Only a broken
  stream (a chunk outside a file, a second header), an unknown collection or a refused directory ends the call.
"""

from __future__ import annotations

import logging
import os
import queue
import stat
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from audiosearch.common.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    ServiceError,
    error_info,
)
from audiosearch.gateway import metrics, validation
from audiosearch.gateway.collections import Collections
from audiosearch.gateway.ingest.uploads import within_idle_limit
from audiosearch.gateway.ingest.writer import Records
from audiosearch.gateway.settings import GatewaySettings
from audiosearch.v1 import audiosearch_pb2 as pb

log = logging.getLogger(__name__)

# What a directory import picks up (the CLI's list); anything else under the directory is left alone.
AUDIO_EXTENSIONS = frozenset(
    {"wav", "flac", "ogg", "oga", "opus", "mp3", "m4a", "aac", "aiff", "aif", "wv", "webm", "mka"})
IN_PROGRESS_RETRIES = 40  # the same bytes twice in one import: the second waits for the first (~20 s at most)
IN_PROGRESS_WAIT_SECONDS = 0.5
_DEPENDENCY_DOWN = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
_FED = object()


@dataclass(frozen=True)
class ImportFile:
    """One file to import: its place and name in the import, the record's name and metadata, and its bytes."""

    index: int
    name: str
    record_name: str
    metadata: dict[str, str]
    read: Callable[[], bytes]


@dataclass(frozen=True)
class Refused:
    """A file known to be bad before any work (too large, bad name, outside the root): reported, not ingested."""

    index: int
    name: str
    error: pb.ImportFileError


@dataclass
class _Counters:
    started: float = field(default_factory=time.monotonic)
    files_total: int = 0
    done: int = 0
    ingested: int = 0
    already_existed: int = 0
    errors: int = 0
    audio_seconds: float = 0.0

    def add(self, result: pb.ImportFileResult) -> None:
        self.done += 1
        if result.WhichOneof("outcome") == "error":
            self.errors += 1
        elif result.already_existed:
            self.already_existed += 1
        else:
            self.ingested += 1
            self.audio_seconds += result.audio.duration_seconds

    def snapshot(self) -> pb.ImportProgress:
        elapsed = time.monotonic() - self.started
        return pb.ImportProgress(
            files_done=self.done, files_ingested=self.ingested, files_already_existed=self.already_existed,
            errors=self.errors, audio_seconds=self.audio_seconds, elapsed_seconds=elapsed,
            audio_seconds_per_second=self.audio_seconds / elapsed if elapsed > 0 else 0.0,
            files_total=self.files_total,
        )


def file_error(code: grpc.StatusCode | str, reason: str, message: str) -> pb.ImportFileError:
    name = code if isinstance(code, str) else code.name
    return pb.ImportFileError(code=name, reason=reason, message=message)


def error_of(exception: BaseException) -> pb.ImportFileError:
    """What a failed file is reported as: the status it would have got from IngestAudio."""
    if isinstance(exception, ServiceError):
        return file_error(exception.code, exception.reason, exception.message)
    if isinstance(exception, grpc.RpcError) and hasattr(exception, "code"):
        code = exception.code()
        if code in _DEPENDENCY_DOWN:
            return file_error(grpc.StatusCode.UNAVAILABLE, "DEPENDENCY_UNAVAILABLE",
                              f"a dependency is unavailable: {exception.details()}")
        info = error_info(exception)
        return file_error(code, info.reason if info else "INTERNAL", exception.details() or "")
    if isinstance(exception, OSError):
        return file_error(grpc.StatusCode.NOT_FOUND, "PATH_NOT_FOUND",
                          f"the file cannot be read: {exception.strerror or exception}")
    log.error("import of a file failed unexpectedly", exc_info=exception)
    return file_error(grpc.StatusCode.INTERNAL, "INTERNAL", "internal error")


class BulkImporter:
    def __init__(self, settings: GatewaySettings, collections: Collections, records: Records) -> None:
        self._settings = settings
        self._collections = collections
        self._records = records
        self._roots = import_roots(settings.import_roots)
        self._imports = threading.BoundedSemaphore(settings.max_concurrent_imports)

    # The two RPCs

    def import_stream(self, requests: Iterator[pb.ImportAudioRequest], context: grpc.ServicerContext
                      ) -> Iterator[pb.ImportAudioResponse]:
        requests = within_idle_limit(requests, self._settings.upload_idle_seconds)
        first = next(requests, None)
        if first is None or first.WhichOneof("payload") != "header":
            raise InvalidArgument("the first message of ImportAudio must be the header", field="header")
        validation.collection_name(first.header.collection)
        shared = validation.metadata(first.header.metadata)
        with self._slot():
            collection = self._collections.get_for_model(first.header.collection)
            files = _stream_files(requests, shared, self._settings.max_upload_bytes)
            yield from self._run(collection, files, 0, pb.ImportAudioResponse, context)

    def import_directory(self, request: pb.ImportDirectoryRequest, context: grpc.ServicerContext
                         ) -> Iterator[pb.ImportDirectoryResponse]:
        validation.collection_name(request.collection)
        shared = validation.metadata(request.metadata)
        root, directory = resolve_import_path(self._roots, request.path)
        with self._slot():
            collection = self._collections.get_for_model(request.collection)
            total = sum(1 for _ in walk_audio(root, directory, request.recursive))
            files = _directory_files(root, directory, request.recursive, shared, self._settings.max_upload_bytes)
            yield from self._run(collection, files, total, pb.ImportDirectoryResponse, context)

    # The loop both share

    def _run(self, collection: pb.Collection, files: Iterator[ImportFile | Refused], total: int,
             response: Callable[..., Any], context: grpc.ServicerContext) -> Iterator[Any]:
        run = _ImportRun(files, lambda item: self._ingest_one(collection, item),
                         self._settings.import_parallel_files, total)
        context.add_callback(run.stop)
        try:
            for kind, message in run.events(self._settings.import_progress_seconds):
                yield response(**{kind: message})
        finally:
            run.stop()
        summary = run.counters.snapshot()
        log.info("import finished", extra={
            "collection": collection.name, "files": summary.files_done, "ingested": summary.files_ingested,
            "errors": summary.errors, "audio_seconds": round(summary.audio_seconds, 1),
            "rate": round(summary.audio_seconds_per_second, 2)})

    def _ingest_one(self, collection: pb.Collection, item: ImportFile) -> pb.ImportFileResult:
        result = pb.ImportFileResult(index=item.index, name=item.name)
        try:
            header = pb.IngestAudioHeader(collection=collection.name, name=item.record_name, metadata=item.metadata)
            data = item.read()
            for attempt in range(IN_PROGRESS_RETRIES):
                try:
                    ingested = self._records.ingest(collection, header, data)
                    break
                except ServiceError as error:
                    if error.reason != "INGEST_IN_PROGRESS" or attempt + 1 == IN_PROGRESS_RETRIES:
                        raise
                    time.sleep(IN_PROGRESS_WAIT_SECONDS)
        except Exception as exception:  # noqa: BLE001 - one bad file is reported and skipped
            result.error.CopyFrom(error_of(exception))
            return result
        result.audio.CopyFrom(ingested.audio)
        result.already_existed = ingested.already_existed
        return result

    @contextmanager
    def _slot(self) -> Iterator[None]:
        if not self._imports.acquire(blocking=False):
            raise ResourceExhausted(f"{self._settings.max_concurrent_imports} imports are running; retry shortly",
                                    reason="OVERLOADED")
        try:
            yield
        finally:
            self._imports.release()


def _count_metrics(result: pb.ImportFileResult) -> None:
    if result.WhichOneof("outcome") == "error":
        metrics.INGESTS.labels("failed").inc()
    elif result.already_existed:
        metrics.INGESTS.labels("already_existed").inc()
    else:
        metrics.INGESTS.labels("created").inc()
        metrics.INGEST_AUDIO_SECONDS.inc(result.audio.duration_seconds)


class _ImportRun:
    """One import: a feeder thread takes files while slots are free, workers ingest them, and `events` hands
    back outcomes (each frees a slot), progress every `interval` seconds and, last, the summary."""

    def __init__(self, files: Iterator[ImportFile | Refused], ingest: Callable[[ImportFile], pb.ImportFileResult],
                 parallel: int, total: int) -> None:
        self.counters = _Counters(files_total=total)
        self._files = files
        self._ingest = ingest
        self._queue: queue.Queue[Any] = queue.Queue()
        self._slots = threading.Semaphore(parallel)
        self._stopped = threading.Event()
        self._pool = ThreadPoolExecutor(parallel, thread_name_prefix="import")
        self._taken: int | None = None  # files taken, once the feeder is done
        self._broken: Exception | None = None  # why the feeder stopped early (a broken stream)
        threading.Thread(target=self._feed, name="import-feed", daemon=True).start()

    def stop(self) -> None:
        """The call ended (or was cancelled): take no more files; those in flight finish on their own."""
        self._stopped.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def events(self, interval: float) -> Iterator[tuple[str, Any]]:
        next_progress = time.monotonic() + interval
        while self._taken is None or self.counters.done < self._taken:
            if self._stopped.is_set():
                return
            try:
                event = self._queue.get(timeout=max(0.0, next_progress - time.monotonic()))
            except queue.Empty:
                event = None
            if isinstance(event, pb.ImportFileResult):
                self.counters.add(event)
                _count_metrics(event)
                self._slots.release()
                yield "file", event
            if time.monotonic() >= next_progress:
                next_progress = time.monotonic() + interval
                yield "progress", self.counters.snapshot()
        if self._broken is not None:
            raise self._broken
        yield "summary", self.counters.snapshot()

    def _feed(self) -> None:
        taken = 0
        try:
            for item in self._files:
                if not self._take_slot():
                    return
                taken += 1
                if isinstance(item, Refused):
                    self._queue.put(pb.ImportFileResult(index=item.index, name=item.name, error=item.error))
                else:
                    self._pool.submit(self._work, item)
        except Exception as exception:  # noqa: BLE001 - a broken stream ends the call once in-flight files end
            self._broken = exception
        finally:
            self._taken = taken
            self._queue.put(_FED)

    def _take_slot(self) -> bool:
        while not self._slots.acquire(timeout=0.5):
            if self._stopped.is_set():
                return False
        return not self._stopped.is_set()

    def _work(self, item: ImportFile) -> None:
        self._queue.put(self._ingest(item))


# The client's stream


def _stream_files(requests: Iterator[pb.ImportAudioRequest], shared: dict[str, str], max_bytes: int
                  ) -> Iterator[ImportFile | Refused]:
    """Assembles files from file header, chunks and file end; only the current file is held in memory."""
    assembler = _Assembler(shared, max_bytes)
    for message in requests:
        kind = message.WhichOneof("payload")
        if kind == "file":
            assembler.start(message.file)
        elif kind == "chunk":
            assembler.add(message.chunk)
        elif kind == "file_end":
            yield assembler.finish()
        else:
            raise InvalidArgument("only the first message of ImportAudio may be a header", field="header")
    assembler.check_closed()


class _Assembler:
    """The file being received. A file over the size limit, or with a bad name or metadata, is refused: its
    chunks are read and dropped, and it is reported without being ingested."""

    def __init__(self, shared: dict[str, str], max_bytes: int) -> None:
        self._shared = shared
        self._max_bytes = max_bytes
        self._index = -1
        self._header: pb.ImportFileHeader | None = None
        self._chunks: list[bytes] = []
        self._received = 0
        self._refusal: pb.ImportFileError | None = None

    def start(self, header: pb.ImportFileHeader) -> None:
        self.check_closed("before the next file")
        self._index += 1
        self._header, self._chunks, self._received = header, [], 0
        self._refusal = _header_problem(header)

    def add(self, chunk: bytes) -> None:
        if self._header is None:
            raise InvalidArgument("a chunk arrived outside a file (send a file header first)", field="chunk")
        self._received += len(chunk)
        if self._refusal is None and self._received > self._max_bytes:
            self._refusal = file_error(grpc.StatusCode.INVALID_ARGUMENT, "AUDIO_TOO_LARGE",
                                       f"the file exceeds {self._max_bytes} bytes")
            self._chunks = []
        if self._refusal is None:
            self._chunks.append(chunk)

    def finish(self) -> ImportFile | Refused:
        header = self._header
        if header is None:
            raise InvalidArgument("a file end arrived outside a file", field="file_end")
        self._header = None
        if self._refusal is not None:
            return Refused(self._index, header.name, self._refusal)
        data, self._chunks = b"".join(self._chunks), []
        return ImportFile(self._index, header.name, header.name, {**self._shared, **header.metadata},
                          lambda: data)

    def check_closed(self, where: str = "at the end of the stream") -> None:
        if self._header is not None:
            raise InvalidArgument(f"file {self._index} ({self._header.name[:80]!r}) has no end marker {where}",
                                  field="file_end")


def _header_problem(header: pb.ImportFileHeader) -> pb.ImportFileError | None:
    try:
        validation.audio_name(header.name)
        validation.metadata(header.metadata)
    except ServiceError as error:
        return error_of(error)
    return None


# The server's directories


def import_roots(setting: str) -> list[Path]:
    """The allow-listed roots, resolved (symbolic links followed) once at start-up."""
    return [Path(part).resolve() for part in setting.split(":") if part.strip()]


def _not_allowed(message: str, path: str) -> PermissionDenied:
    return PermissionDenied(message, reason="PATH_NOT_ALLOWED", path=path[:200])


def resolve_import_path(roots: list[Path], path: str) -> tuple[Path, Path]:
    """(root, directory): the directory that `path` names, inside one of the roots, with every link resolved.

    `path` is relative to a root (the first that holds it) or absolute inside one. `..` that climbs out of the
    root, or a symbolic link that points out of it, is refused before anything outside is looked at.
    """
    if not roots:
        raise _not_allowed("server-side import is off: the gateway has no import roots (GATEWAY_IMPORT_ROOTS)",
                           path)
    if "\x00" in path:
        raise InvalidArgument("the path contains a NUL character", field="path")
    requested = Path(path or ".")
    for root in roots:
        lexical = Path(os.path.normpath(requested if requested.is_absolute() else root / requested))
        if not lexical.is_relative_to(root):
            continue
        if not lexical.exists():
            continue
        real = lexical.resolve()
        if not real.is_relative_to(root):
            raise _not_allowed(f"{path!r} leads out of the import root through a symbolic link", path)
        if not real.is_dir():
            raise NotFound(f"{path!r} is not a directory", reason="PATH_NOT_FOUND", path=path[:200])
        return root, real
    if requested.is_absolute() or any(
            not Path(os.path.normpath(root / requested)).is_relative_to(root) for root in roots):
        raise _not_allowed(f"{path!r} is outside the gateway's import roots", path)
    raise NotFound(f"{path!r} is not a directory under the gateway's import roots", reason="PATH_NOT_FOUND",
                   path=path[:200])


def walk_audio(root: Path, directory: Path, recursive: bool) -> Iterator[Path]:
    """Audio files under `directory`, lazily (memory does not grow with the number of files).

    Hidden entries are skipped; linked directories are not entered; a linked file is kept (and checked again
    when it is opened). Order is the file system's, depth first.
    """
    try:
        entries = os.scandir(directory)
    except OSError as error:
        log.warning("directory unreadable during import", extra={"path": str(directory), "error": str(error)})
        return
    with entries:
        subdirectories: list[str] = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    if recursive:
                        subdirectories.append(entry.name)
                elif entry.is_file() and _is_audio_name(entry.name):
                    yield Path(entry.path)
            except OSError:
                continue
    for name in subdirectories:
        yield from walk_audio(root, directory / name, recursive)


def _is_audio_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower().lstrip(".") in AUDIO_EXTENSIONS


def read_inside(root: Path, path: Path, max_bytes: int) -> bytes:
    """Reads a regular file, checking on the open descriptor that it really lies inside `root`."""
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    descriptor = os.open(path, flags)
    try:
        real = Path(os.readlink(f"/proc/self/fd/{descriptor}")) if Path("/proc/self/fd").is_dir() else \
            path.resolve()
        if not real.is_relative_to(root):
            raise _not_allowed(f"{path.name!r} leads out of the import root through a symbolic link", path.name)
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise InvalidArgument(f"{path.name!r} is not a regular file", reason="INVALID_AUDIO")
        if info.st_size > max_bytes:
            raise InvalidArgument(f"the file exceeds {max_bytes} bytes", reason="AUDIO_TOO_LARGE",
                                  max_bytes=max_bytes)
        with os.fdopen(descriptor, "rb", closefd=False) as handle:
            data = handle.read(max_bytes + 1)
    finally:
        os.close(descriptor)
    if len(data) > max_bytes:
        raise InvalidArgument(f"the file exceeds {max_bytes} bytes", reason="AUDIO_TOO_LARGE", max_bytes=max_bytes)
    return data


def _directory_files(root: Path, directory: Path, recursive: bool, shared: dict[str, str], max_bytes: int
                     ) -> Iterator[ImportFile | Refused]:
    for index, path in enumerate(walk_audio(root, directory, recursive)):
        name = _printable_path(path.relative_to(directory))
        metadata = {**shared, "path": _printable_path(path.relative_to(root))}
        try:
            validation.audio_name(path.name)
            validation.metadata(metadata)
        except ServiceError as error:
            yield Refused(index, name, error_of(error))
            continue
        yield ImportFile(index, name, path.name, metadata, lambda path=path: read_inside(root, path, max_bytes))


def _printable_path(path: Path) -> str:
    """A path as text that protobuf can carry: undecodable bytes of a file name become U+FFFD."""
    return os.fsencode(path).decode("utf-8", errors="replace")
