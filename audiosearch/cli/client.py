"""A thin wrapper over the gateway's gRPC API: one channel, one method per RPC, errors as exceptions."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import grpc

from audiosearch.cli import __version__
from audiosearch.common.errors import error_info
from audiosearch.v1 import audiosearch_pb2 as pb
from audiosearch.v1 import audiosearch_pb2_grpc as pb_grpc

CHUNK_BYTES = 64 * 1024
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
DEFAULT_CONNECT_TIMEOUT = 5.0
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.primary_user_agent", f"audiosearch-cli/{__version__}"),
]


@dataclass(eq=False)
class GatewayError(Exception):
    """The gateway refused a request: status code name, ErrorInfo reason (when it sent one) and message."""

    code: str
    reason: str | None
    message: str
    metadata: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return format_error(self.code, self.reason, self.message)


class GatewayUnreachableError(Exception):
    """No connection to the gateway could be made (or it went away mid-call)."""

    def __init__(self, address: str, detail: str) -> None:
        super().__init__(f"cannot reach the gateway at {address}: {detail}")
        self.address = address
        self.detail = detail


def format_error(code: str, reason: str | None, message: str) -> str:
    """`CODE REASON: message`, or `CODE: message` when the status carried no reason."""
    head = f"{code} {reason}" if reason else code
    return f"{head}: {message}" if message else head


def convert_error(error: grpc.RpcError, address: str) -> GatewayError | GatewayUnreachableError:
    """A failed call as a GatewayError, or GatewayUnreachableError when the transport itself failed."""
    code: grpc.StatusCode = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = (error.details() if hasattr(error, "details") else None) or ""
    info = error_info(error)
    if info is None and code == grpc.StatusCode.UNAVAILABLE:
        return GatewayUnreachableError(address, message or "unavailable")
    if info is None:
        return GatewayError(code.name, None, message)
    return GatewayError(code.name, info.reason or None, message, dict(info.metadata))


def wait_until_connected(channel: grpc.Channel, timeout: float) -> grpc.ChannelConnectivity | None:
    """Connects; READY, or TRANSIENT_FAILURE as soon as the first attempt fails, or None on timeout.

    Unlike grpc.channel_ready_future, this does not keep retrying a refused connection until the timeout.
    """
    settled = threading.Event()
    outcome: list[grpc.ChannelConnectivity] = []
    final = {
        grpc.ChannelConnectivity.READY,
        grpc.ChannelConnectivity.TRANSIENT_FAILURE,
        grpc.ChannelConnectivity.SHUTDOWN,
    }

    def on_change(state: grpc.ChannelConnectivity) -> None:
        if state in final and not settled.is_set():
            outcome.append(state)
            settled.set()

    channel.subscribe(on_change, try_to_connect=True)
    try:
        settled.wait(timeout)
    finally:
        channel.unsubscribe(on_change)
    return outcome[0] if outcome else None


def _filter(tags: Sequence[str], metadata: Mapping[str, str]) -> pb.AudioFilter:
    return pb.AudioFilter(tags=list(tags), metadata=dict(metadata))


class Client:
    """Calls the gateway; each method raises GatewayError or GatewayUnreachableError, never grpc.RpcError."""

    def __init__(self, address: str, timeout: float | None = None) -> None:
        self.address = address
        self.timeout = timeout
        self._channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        self._stub = pb_grpc.AudioSearchServiceStub(self._channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def connect(self, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> None:
        """Fails fast with GatewayUnreachableError when nothing answers at the address."""
        state = wait_until_connected(self._channel, timeout)
        if state == grpc.ChannelConnectivity.READY:
            return
        detail = "connection failed" if state is not None else f"no connection within {timeout:g} s"
        raise GatewayUnreachableError(self.address, detail)

    def _call(self, method: grpc.UnaryUnaryMultiCallable, request: object) -> object:
        try:
            return method(request, timeout=self.timeout, wait_for_ready=False)
        except grpc.RpcError as error:
            raise convert_error(error, self.address) from None

    # Collections

    def create_collection(
        self,
        name: str,
        *,
        description: str = "",
        window_seconds: float = 0.0,
        hop_seconds: float = 0.0,
        score_threshold: float = 0.0,
    ) -> pb.Collection:
        request = pb.CreateCollectionRequest(
            name=name,
            description=description,
            segment_config=pb.SegmentConfig(window_seconds=window_seconds, hop_seconds=hop_seconds),
            score_threshold=score_threshold,
        )
        return self._call(self._stub.CreateCollection, request).collection

    def get_collection(self, name: str) -> pb.Collection:
        return self._call(self._stub.GetCollection, pb.GetCollectionRequest(name=name)).collection

    def list_collections(self, page_size: int = 0, page_token: str = "") -> pb.ListCollectionsResponse:
        request = pb.ListCollectionsRequest(page_size=page_size, page_token=page_token)
        return self._call(self._stub.ListCollections, request)

    def iter_collections(self, page_size: int = 0) -> Iterator[pb.Collection]:
        token = ""
        while True:
            page = self.list_collections(page_size, token)
            yield from page.collections
            token = page.next_page_token
            if not token:
                return

    def delete_collection(self, name: str) -> None:
        self._call(self._stub.DeleteCollection, pb.DeleteCollectionRequest(name=name))

    def calibrate(self, collection: str, target_false_positive_rate: float) -> pb.CalibrateCollectionResponse:
        request = pb.CalibrateCollectionRequest(
            collection=collection, target_false_positive_rate=target_false_positive_rate
        )
        return self._call(self._stub.CalibrateCollection, request)

    def stats(self, collection: str) -> pb.GetCollectionStatsResponse:
        return self._call(self._stub.GetCollectionStats, pb.GetCollectionStatsRequest(collection=collection))

    # Recordings

    def ingest(
        self,
        collection: str,
        name: str,
        chunks: Iterator[bytes],
        metadata: Mapping[str, str],
        *,
        timeout: float | None = None,
    ) -> pb.IngestAudioResponse:
        """Streams one file: the header, then its chunks."""
        header = pb.IngestAudioHeader(collection=collection, name=name, metadata=dict(metadata))

        def requests() -> Iterator[pb.IngestAudioRequest]:
            yield pb.IngestAudioRequest(header=header)
            for chunk in chunks:
                yield pb.IngestAudioRequest(chunk=chunk)

        try:
            return self._stub.IngestAudio(requests(), timeout=timeout or self.timeout, wait_for_ready=False)
        except grpc.RpcError as error:
            raise convert_error(error, self.address) from None

    def import_directory(
        self,
        collection: str,
        path: str,
        *,
        recursive: bool = True,
        metadata: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Iterator[pb.ImportDirectoryResponse]:
        """Server-side import of a directory under the gateway's import roots: its event stream."""
        request = pb.ImportDirectoryRequest(
            collection=collection, path=path, recursive=recursive, metadata=dict(metadata or {})
        )
        return self._streamed(self._stub.ImportDirectory(request, timeout=timeout or self.timeout))

    def import_files(
        self,
        collection: str,
        requests: Iterator[pb.ImportAudioRequest],
        *,
        timeout: float | None = None,
    ) -> Iterator[pb.ImportAudioResponse]:
        """One ImportAudio stream (the header is sent here; `requests` are the files' messages): its events."""

        def messages() -> Iterator[pb.ImportAudioRequest]:
            yield pb.ImportAudioRequest(header=pb.ImportAudioHeader(collection=collection))
            yield from requests

        return self._streamed(self._stub.ImportAudio(messages(), timeout=timeout or self.timeout))

    def monitor(
        self, header: pb.MonitorAudioHeader, chunks: Iterator[bytes], *, timeout: float | None = None
    ) -> Iterator[pb.MonitorAudioResponse]:
        """One MonitorAudio stream: the header, then the feed's chunks as they come; its events as they arrive.
        No deadline unless `timeout` is given: a feed may last for days."""

        def requests() -> Iterator[pb.MonitorAudioRequest]:
            yield pb.MonitorAudioRequest(header=header)
            for chunk in chunks:
                yield pb.MonitorAudioRequest(chunk=chunk)

        return self._streamed(self._stub.MonitorAudio(requests(), timeout=timeout))

    def _streamed(self, responses: Iterator[object]) -> Iterator[object]:
        try:
            yield from responses
        except grpc.RpcError as error:
            raise convert_error(error, self.address) from None

    def search(
        self,
        collection: str,
        audio: bytes,
        *,
        top_k: int = 0,
        min_score: float | None = None,
        tags: Sequence[str] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> pb.SearchAudioResponse:
        request = pb.SearchAudioRequest(
            collection=collection, audio_content=audio, top_k=top_k, filter=_filter(tags, metadata or {})
        )
        if min_score is not None:
            request.min_score = min_score
        return self._call(self._stub.SearchAudio, request)

    def tag(self, audio: bytes, top_k: int = 0) -> pb.TagAudioResponse:
        return self._call(self._stub.TagAudio, pb.TagAudioRequest(audio_content=audio, top_k=top_k))

    def get_audio(self, collection: str, audio_id: str) -> pb.AudioRecord:
        request = pb.GetAudioRequest(collection=collection, audio_id=audio_id)
        return self._call(self._stub.GetAudio, request).audio

    def list_audio(
        self,
        collection: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        tags: Sequence[str] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> pb.ListAudioResponse:
        request = pb.ListAudioRequest(
            collection=collection,
            page_size=page_size,
            page_token=page_token,
            filter=_filter(tags, metadata or {}),
        )
        return self._call(self._stub.ListAudio, request)

    def delete_audio(self, collection: str, audio_id: str) -> None:
        self._call(self._stub.DeleteAudio, pb.DeleteAudioRequest(collection=collection, audio_id=audio_id))
