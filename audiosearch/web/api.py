"""`/v1/...`: one HTTP route per RPC of audiosearch.v1.AudioSearchService, plus the originals for playback.

Every route calls the gateway with the caller's credentials (`Authorization`, or `X-API-Key` sent on as
`authorization: Bearer <key>`), so the gateway's auth applies unchanged; its errors come back mapped by errors.py.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Path, Query, Request, Response, Security, UploadFile
from fastapi.responses import StreamingResponse
from fastapi.security import APIKeyHeader, HTTPBearer

from audiosearch.v1 import audiosearch_pb2 as pb
from audiosearch.v1 import audiosearch_pb2_grpc
from audiosearch.web import models
from audiosearch.web.errors import ApiError, ErrorBody, invalid_field
from audiosearch.web.settings import WebSettings

BEARER = HTTPBearer(auto_error=False, description="API key as `Authorization: Bearer <key>`")
API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key; sent on as a bearer token")

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "INVALID_ARGUMENT: a field or the audio is invalid (reason INVALID_FIELD, INVALID_AUDIO, ...)",
        401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
        404: "NOT_FOUND (reason COLLECTION_NOT_FOUND, AUDIO_NOT_FOUND, CONTENT_NOT_FOUND)",
        409: "ALREADY_EXISTS, ABORTED or FAILED_PRECONDITION (e.g. COLLECTION_EXISTS, MODEL_MISMATCH)",
        413: "the query clip is larger than one request may carry (reason AUDIO_TOO_LARGE)",
        429: "RESOURCE_EXHAUSTED (reason OVERLOADED): retry later", 500: "internal error",
        503: "UNAVAILABLE: the gateway or a dependency is down", 504: "DEADLINE_EXCEEDED",
    }.items()
}

router = APIRouter(prefix="/v1", responses=_ERRORS)

CollectionName = Annotated[str, Path(description="Collection name", examples=["library"])]
AudioId = Annotated[str, Path(description="Recording id (32 hex characters)")]
Tags = Annotated[list[str] | None, Query(description="Only recordings carrying every one of these tags (repeatable)")]
Meta = Annotated[list[str] | None, Query(description="Only recordings whose metadata has key=value (repeatable)")]


@dataclass(frozen=True)
class Gateway:
    """The gateway's stub, the caller's credentials and the configured deadlines."""

    stub: audiosearch_pb2_grpc.AudioSearchServiceStub
    metadata: tuple[tuple[str, str], ...]
    settings: WebSettings

    def call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        return getattr(self.stub, method)(request, metadata=self.metadata,
                                          timeout=timeout or self.settings.timeout_seconds)


def credentials(headers: Mapping[str, str], api_key: str = "") -> tuple[tuple[str, str], ...]:
    """The gRPC metadata that carries the caller's key: `Authorization` as sent, else `X-API-Key` (or `api_key`)
    as a bearer token."""
    authorization = headers.get("authorization", "").strip()
    api_key = headers.get("x-api-key", "").strip() or api_key.strip()
    if authorization:
        return (("authorization", authorization),)
    if api_key:
        return (("authorization", f"Bearer {api_key}"),)
    return ()


def gateway(request: Request, _bearer: Annotated[Any, Security(BEARER)] = None,
            _api_key: Annotated[str | None, Security(API_KEY)] = None) -> Gateway:
    return Gateway(request.app.state.stub, credentials(request.headers), request.app.state.settings)


Caller = Annotated[Gateway, Depends(gateway)]


def _filter(tags: list[str] | None, meta: list[str] | None, field: str = "meta") -> pb.AudioFilter:
    pairs: dict[str, str] = {}
    for item in meta or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise invalid_field(field, f"expected key=value, got {item!r}")
        pairs[key.strip()] = value
    return pb.AudioFilter(tags=[tag for tag in tags or [] if tag], metadata=pairs)


def _read_clip(clip: UploadFile, settings: WebSettings) -> bytes:
    data = clip.file.read(settings.max_clip_bytes + 1)
    if len(data) > settings.max_clip_bytes:
        raise ApiError(413, "INVALID_ARGUMENT", "AUDIO_TOO_LARGE",
                       f"the clip exceeds {settings.max_clip_bytes} bytes", max_bytes=settings.max_clip_bytes)
    return data


# Collections


@router.get("/collections", tags=["collections"], summary="List collections")
def list_collections(gw: Caller, page_size: Annotated[int, Query(ge=0, le=1000)] = 0,
                     page_token: str = "") -> models.CollectionList:
    reply = gw.call("ListCollections", pb.ListCollectionsRequest(page_size=page_size, page_token=page_token))
    return models.from_proto(models.CollectionList, reply)


@router.post("/collections", tags=["collections"], status_code=201, summary="Create a collection")
def create_collection(gw: Caller, body: models.NewCollection) -> models.Collection:
    reply = gw.call("CreateCollection", pb.CreateCollectionRequest(
        name=body.name, description=body.description, score_threshold=body.score_threshold,
        segment_config=pb.SegmentConfig(window_seconds=body.window_seconds, hop_seconds=body.hop_seconds)))
    return models.from_proto(models.Collection, reply.collection)


@router.get("/collections/{collection}", tags=["collections"], summary="Get a collection")
def get_collection(gw: Caller, collection: CollectionName) -> models.Collection:
    reply = gw.call("GetCollection", pb.GetCollectionRequest(name=collection))
    return models.from_proto(models.Collection, reply.collection)


@router.delete("/collections/{collection}", tags=["collections"], status_code=204,
               summary="Delete a collection with all its recordings")
def delete_collection(gw: Caller, collection: CollectionName) -> Response:
    gw.call("DeleteCollection", pb.DeleteCollectionRequest(name=collection))
    return Response(status_code=204)


@router.get("/collections/{collection}/stats", tags=["collections"], summary="Count recordings, per tag")
def collection_stats(gw: Caller, collection: CollectionName) -> models.CollectionStats:
    reply = gw.call("GetCollectionStats", pb.GetCollectionStatsRequest(collection=collection))
    return models.from_proto(models.CollectionStats, reply)


@router.post("/collections/{collection}/calibrate", tags=["collections"],
             summary="Set the score threshold for a target false-positive rate")
def calibrate_collection(gw: Caller, collection: CollectionName,
                         body: models.Calibration | None = None) -> models.CalibrationResult:
    target = (body or models.Calibration()).target_false_positive_rate
    reply = gw.call("CalibrateCollection", pb.CalibrateCollectionRequest(
        collection=collection, target_false_positive_rate=target), timeout=gw.settings.ingest_timeout_seconds)
    return models.from_proto(models.CalibrationResult, reply)


# Recordings


@router.post("/collections/{collection}/audio", tags=["audio"], status_code=201,
             responses={200: {"model": models.IngestResult, "description": "The same bytes were already there"}},
             summary="Ingest a recording (multipart upload, streamed to the gateway in chunks)")
def ingest_audio(
    gw: Caller, collection: CollectionName, response: Response,
    file: Annotated[UploadFile, File(description="The audio file, any supported format")],
    name: Annotated[str | None, Form(description="Name of the recording; default: the file name")] = None,
    meta: Annotated[list[str] | None, Form(description="Metadata as key=value (repeatable)")] = None,
) -> models.IngestResult:
    metadata = _filter(None, meta).metadata
    header = pb.IngestAudioHeader(collection=collection, name=name or file.filename or "upload",
                                  metadata=metadata)
    chunk_bytes = gw.settings.upload_chunk_bytes

    def messages() -> Iterator[pb.IngestAudioRequest]:
        yield pb.IngestAudioRequest(header=header)
        while chunk := file.file.read(chunk_bytes):
            yield pb.IngestAudioRequest(chunk=chunk)

    reply = gw.call("IngestAudio", messages(), timeout=gw.settings.ingest_timeout_seconds)
    if reply.already_existed:
        response.status_code = 200
    return models.from_proto(models.IngestResult, reply)


@router.get("/collections/{collection}/audio", tags=["audio"], summary="List ready recordings, paged and filtered")
def list_audio(gw: Caller, collection: CollectionName, tag: Tags = None, meta: Meta = None,
               page_size: Annotated[int, Query(ge=0, le=1000)] = 0, page_token: str = "") -> models.AudioList:
    reply = gw.call("ListAudio", pb.ListAudioRequest(collection=collection, page_size=page_size,
                                                     page_token=page_token, filter=_filter(tag, meta)))
    return models.from_proto(models.AudioList, reply)


@router.get("/collections/{collection}/audio/{audio_id}", tags=["audio"], summary="Get a recording")
def get_audio(gw: Caller, collection: CollectionName, audio_id: AudioId) -> models.AudioRecord:
    reply = gw.call("GetAudio", pb.GetAudioRequest(collection=collection, audio_id=audio_id))
    return models.from_proto(models.AudioRecord, reply.audio)


@router.delete("/collections/{collection}/audio/{audio_id}", tags=["audio"], status_code=204,
               summary="Delete a recording (idempotent)")
def delete_audio(gw: Caller, collection: CollectionName, audio_id: AudioId) -> Response:
    gw.call("DeleteAudio", pb.DeleteAudioRequest(collection=collection, audio_id=audio_id))
    return Response(status_code=204)


@router.get(
    "/collections/{collection}/audio/{audio_id}/content", tags=["audio"], response_class=StreamingResponse,
    responses={200: {"description": "The original file as uploaded",
                     "content": {"audio/*": {"schema": {"type": "string", "format": "binary"}}}}},
    summary="Stream the original bytes of a recording, for playback",
)
def audio_content(gw: Caller, collection: CollectionName, audio_id: AudioId) -> StreamingResponse:
    stream = gw.stub.GetAudioContent(pb.GetAudioContentRequest(collection=collection, audio_id=audio_id),
                                     metadata=gw.metadata, timeout=gw.settings.ingest_timeout_seconds)
    first = next(stream, None)  # a refusal raises here, before any byte is sent, so it maps to a status
    if first is None:
        return StreamingResponse(iter(()), media_type="application/octet-stream", headers={"Content-Length": "0"})

    def body() -> Iterator[bytes]:
        try:
            yield first.chunk
            for message in stream:
                yield message.chunk
        finally:
            stream.cancel()

    headers = {"Content-Length": str(first.size_bytes), "Cache-Control": "private, max-age=3600"}
    return StreamingResponse(body(), media_type=first.content_type or "application/octet-stream", headers=headers)


# Clips: search and tag


@router.post("/collections/{collection}/search", tags=["search"],
             summary="Find the recordings of a collection most like a clip")
def search_audio(
    gw: Caller, collection: CollectionName,
    clip: Annotated[UploadFile, File(description="The query clip, any supported format")],
    top_k: Annotated[int, Query(ge=0, le=100, description="Number of matches; 0 takes the default (10)")] = 0,
    min_score: Annotated[float | None, Query(ge=-1.0, le=1.0,
                                             description="Overrides the collection's threshold")] = None,
    tag: Tags = None,
    meta: Meta = None,
) -> models.SearchResult:
    request = pb.SearchAudioRequest(collection=collection, audio_content=_read_clip(clip, gw.settings),
                                    top_k=top_k, filter=_filter(tag, meta))
    if min_score is not None:
        request.min_score = min_score
    reply = gw.call("SearchAudio", request, timeout=gw.settings.audio_timeout_seconds)
    return models.from_proto(models.SearchResult, reply)


@router.post("/tag", tags=["search"], summary="Classify a clip with AudioSet tags (nothing is stored)")
def tag_audio(gw: Caller, clip: Annotated[UploadFile, File(description="The clip, any supported format")],
              top_k: Annotated[int, Query(ge=0, le=527, description="Number of tags; 0 takes 5")] = 0,
              ) -> models.TagResult:
    reply = gw.call("TagAudio", pb.TagAudioRequest(audio_content=_read_clip(clip, gw.settings), top_k=top_k),
                    timeout=gw.settings.audio_timeout_seconds)
    return models.from_proto(models.TagResult, reply)
