"""Reading a client-streamed upload: header first, then bytes, within the size limit."""

from __future__ import annotations

from collections.abc import Iterator

from audiosearch.v1 import audiosearch_pb2 as pb
from services.common.errors import InvalidArgument
from services.gateway import validation


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
