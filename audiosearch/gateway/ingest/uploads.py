"""Reading a client-streamed upload: header first, then bytes, within the size and idle limits."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

from audiosearch.common.errors import DeadlineExceeded, InvalidArgument
from audiosearch.gateway import validation
from audiosearch.v1 import audiosearch_pb2 as pb

Message = TypeVar("Message")
_END = object()
_HANDOFF_POLL_SECONDS = 0.5


def within_idle_limit(messages: Iterator[Message], idle_seconds: float) -> Iterator[Message]:
    """The messages of a client stream, ending the call when the client sends nothing for `idle_seconds`.

    gRPC's request iterator blocks without a timeout, so a reader thread hands messages over one at a time (memory
    stays one message). It stops when the stream ends or the call is over: gRPC then ends the iterator.
    """
    handoff: queue.Queue[object] = queue.Queue(maxsize=1)
    done = threading.Event()

    def pump() -> None:
        try:
            for message in messages:
                if not _hand_over(handoff, message, done):
                    return
            _hand_over(handoff, _END, done)
        except Exception as error:  # noqa: BLE001 - handed to the consumer, which raises it in the RPC's thread
            _hand_over(handoff, error, done)

    threading.Thread(target=pump, name="upload-reader", daemon=True).start()
    try:
        while True:
            try:
                item = handoff.get(timeout=idle_seconds)
            except queue.Empty:
                raise DeadlineExceeded(f"the upload sent nothing for {idle_seconds:g} s",
                                       reason="UPLOAD_STALLED", idle_seconds=idle_seconds) from None
            if item is _END:
                return
            if isinstance(item, Exception):
                raise item
            yield item  # type: ignore[misc]
    finally:
        done.set()


def _hand_over(handoff: queue.Queue[object], item: object, done: threading.Event) -> bool:
    while not done.is_set():
        try:
            handoff.put(item, timeout=_HANDOFF_POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


def read_upload(messages: Iterator[pb.IngestAudioRequest], max_bytes: int) -> tuple[pb.IngestAudioHeader, bytes]:
    first = next(messages, None)
    if first is None or first.WhichOneof("payload") != "header":
        raise InvalidArgument("the first message of IngestAudio must be the header", field="header")
    header = first.header
    validation.collection_name(header.collection)
    validation.audio_name(header.name)
    validation.metadata(header.metadata)
    chunks: list[bytes] = []
    received = 0
    for message in messages:
        if message.WhichOneof("payload") != "chunk":
            raise InvalidArgument("only the first message may be a header", field="header")
        received += len(message.chunk)
        if received > max_bytes:
            raise InvalidArgument(f"the upload exceeds {max_bytes} bytes", reason="AUDIO_TOO_LARGE",
                                  max_bytes=max_bytes)
        chunks.append(message.chunk)
    return header, b"".join(chunks)
