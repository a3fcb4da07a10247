"""`/v1/collections/{collection}/monitor`: a WebSocket relayed both ways to the gateway's MonitorAudio stream.

The client sends the header as a text frame (models.MonitorHeader), then the feed's bytes as binary frames, and
the text frame `{"end": true}` when the feed is over (the gRPC half-close). The server sends models.MonitorEvent
text frames: each detection and progress as the gateway sends it, then `end` (and closes with 1000) or `error`
(and closes with 4000 + the HTTP status the API would answer, the reason "CODE REASON"). A socket that closes
before `end` cancels the gRPC call.

Backpressure: at most QUEUED_CHUNKS frames wait for the gateway; while they do, the socket is not read, so a
client that sends faster than the gateway decodes is held back by TCP (its `bufferedAmount` grows).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import grpc
from fastapi import APIRouter, WebSocket
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect

from audiosearch.v1 import audiosearch_pb2 as pb
from audiosearch.web import models
from audiosearch.web.api import credentials
from audiosearch.web.errors import ErrorDetail, from_rpc_error, invalid_request

log = logging.getLogger(__name__)

MONITOR_PATH = "/v1/collections/{collection}/monitor"
QUEUED_CHUNKS = 16
NORMAL_CLOSURE = 1000
APPLICATION_CLOSE_BASE = 4000
MAX_CLOSE_REASON_BYTES = 123
_POLL_SECONDS = 0.25
_SAMPLE_FORMATS = {"s16le": pb.SAMPLE_FORMAT_S16LE, "f32le": pb.SAMPLE_FORMAT_F32LE}
# A socket whose peer is gone raises one of these on send.
_GONE = (WebSocketDisconnect, RuntimeError, OSError)

router = APIRouter()


class _Refused(Exception):
    """The client broke the socket protocol; the relay answers with this error."""

    def __init__(self, detail: ErrorDetail) -> None:
        super().__init__(detail.message)
        self.detail = detail


def _protocol_error(message: str, field: str) -> _Refused:
    return _Refused(ErrorDetail(code="INVALID_ARGUMENT", reason="INVALID_FIELD", message=message,
                                metadata={"field": field}))


class FeedQueue:
    """The requests of one MonitorAudio call: the header, then chunks as the socket delivers them, until the
    feed ends or the relay closes. `put` blocks while QUEUED_CHUNKS wait, and returns False once closed."""

    def __init__(self, header: pb.MonitorAudioHeader, size: int = QUEUED_CHUNKS) -> None:
        self._header = header
        self._chunks: queue.Queue[bytes | None] = queue.Queue(size)
        self._closed = threading.Event()

    def put(self, chunk: bytes) -> bool:
        return self._put(chunk)

    def put_nowait(self, chunk: bytes) -> bool:
        try:
            self._chunks.put_nowait(chunk)
            return True
        except queue.Full:
            return False

    def end(self) -> bool:
        """The feed is over: the call half-closes once the chunks before have gone."""
        return self._put(None)

    def _put(self, item: bytes | None) -> bool:
        while not self._closed.is_set():
            try:
                self._chunks.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def close(self) -> None:
        self._closed.set()

    def requests(self) -> Iterator[pb.MonitorAudioRequest]:
        yield pb.MonitorAudioRequest(header=self._header)
        while not self._closed.is_set():
            try:
                chunk = self._chunks.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
            if chunk is None:
                return
            yield pb.MonitorAudioRequest(chunk=chunk)


def header_message(collection: str, header: models.MonitorHeader) -> pb.MonitorAudioHeader:
    message = pb.MonitorAudioHeader(collection=collection, feed_label=header.feed_label,
                                    feed_offset_seconds=header.feed_offset_seconds,
                                    filter=pb.AudioFilter(tags=header.tags, metadata=header.metadata))
    if header.start_time is not None:
        message.start_time.FromDatetime(header.start_time)
    for field, value in header.thresholds.model_dump(exclude_none=True).items():
        setattr(message.thresholds, field, value)
    if header.raw_format is not None:
        raw = header.raw_format
        message.raw_format.CopyFrom(pb.RawAudioFormat(sample_rate_hz=raw.sample_rate_hz, channels=raw.channels,
                                                      sample_format=_SAMPLE_FORMATS[raw.sample_format]))
    return message


def event_of(response: pb.MonitorAudioResponse) -> models.MonitorEvent:
    if response.WhichOneof("event") == "detection":
        return models.MonitorEvent(detection=models.from_proto(models.MonitorDetection, response.detection))
    return models.MonitorEvent(progress=models.from_proto(models.MonitorProgress, response.progress))


def close_code(status: int) -> int:
    return APPLICATION_CLOSE_BASE + status if 400 <= status <= 599 else 1011


def close_reason(detail: ErrorDetail) -> str:
    return f"{detail.code} {detail.reason}".encode()[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")


async def _read_header(websocket: WebSocket) -> models.MonitorHeader | None:
    """The first frame as a header; None when the client left before sending one."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        return None
    if message.get("text") is None:
        raise _protocol_error("the first frame must be the JSON header, as text", "header")
    try:
        return models.MonitorHeader.model_validate_json(message["text"])
    except ValidationError as error:
        detail = invalid_request(error.errors())
        field = detail.metadata["field"]
        detail.metadata["field"] = f"header.{field}" if field else "header"
        raise _Refused(detail) from None


class _Relay:
    """One socket and its gRPC call."""

    def __init__(self, websocket: WebSocket, call: Any, feed: FeedQueue) -> None:
        self.websocket = websocket
        self.call = call
        self.feed = feed
        self.client_gone = False
        self.refusal: _Refused | None = None
        # Threads of their own, so that a long monitor takes none of the threads the HTTP routes run on.
        self._threads = anyio.CapacityLimiter(2)

    async def socket_to_call(self) -> None:
        ended = False
        try:
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    self.client_gone = True
                    return
                if ended:
                    raise _protocol_error("nothing may follow {\"end\": true}", "end")
                if message.get("bytes") is not None:
                    chunk = message["bytes"]
                    if chunk and not self.feed.put_nowait(chunk):
                        await anyio.to_thread.run_sync(self.feed.put, chunk, limiter=self._threads)
                    continue
                if _is_end(message.get("text") or ""):
                    ended = True
                    await anyio.to_thread.run_sync(self.feed.end, limiter=self._threads)
                    continue
                raise _protocol_error('after the header, only binary audio frames and {"end": true}', "frame")
        except _Refused as refusal:
            self.refusal = refusal
        finally:
            if self.client_gone or self.refusal is not None:
                self.call.cancel()

    async def call_to_socket(self) -> None:
        summary = models.MonitorSummary(detections=0, audio_seconds=0.0)
        try:
            while (response := await self._next_response()) is not None:
                event = event_of(response)
                if event.detection is not None and event.detection.state == "ENDED":
                    summary.detections += 1
                if event.progress is not None:
                    summary.audio_seconds = event.progress.audio_seconds
                await self.websocket.send_text(event.model_dump_json(exclude_none=True))
        except grpc.RpcError as error:
            if self.client_gone:
                return
            if self.refusal is not None:
                await self.refuse(400, self.refusal.detail)
                return
            status, detail = from_rpc_error(error)
            log.log(logging.WARNING if status >= 500 else logging.INFO, "monitor ended by the gateway",
                    extra={"code": detail.code, "reason": detail.reason})
            await self.refuse(status, detail)
            return
        except _GONE:
            self.client_gone = True
            return
        await self.websocket.send_text(models.MonitorEvent(end=summary).model_dump_json(exclude_none=True))
        await self.websocket.close(NORMAL_CLOSURE)

    async def _next_response(self) -> pb.MonitorAudioResponse | None:
        return await anyio.to_thread.run_sync(next, self.call, None, limiter=self._threads)

    async def refuse(self, status: int, detail: ErrorDetail) -> None:
        await refuse(self.websocket, status, detail)


def _is_end(text: str) -> bool:
    try:
        return json.loads(text) == {"end": True}
    except ValueError:
        return False


async def refuse(websocket: WebSocket, status: int, detail: ErrorDetail) -> None:
    try:
        await websocket.send_text(models.MonitorEvent(error=detail).model_dump_json(exclude_none=True))
        await websocket.close(close_code(status), close_reason(detail))
    except _GONE:
        pass


@router.websocket(MONITOR_PATH)
async def monitor(websocket: WebSocket, collection: str) -> None:
    await websocket.accept()
    try:
        header = await _read_header(websocket)
    except _Refused as refusal:
        await refuse(websocket, 400, refusal.detail)
        return
    if header is None:
        return
    feed = FeedQueue(header_message(collection, header))
    metadata = credentials(websocket.headers, header.api_key)
    call = websocket.app.state.stub.MonitorAudio(feed.requests(), metadata=metadata)
    relay = _Relay(websocket, call, feed)
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(relay.socket_to_call)
            await relay.call_to_socket()
            feed.close()
            tasks.cancel_scope.cancel()
    finally:
        feed.close()
        call.cancel()
