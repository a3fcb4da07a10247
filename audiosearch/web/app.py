"""The FastAPI application: the `/v1` API, `/healthz`, the offline `/docs`, and the web page at `/`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic.json_schema import models_json_schema

from audiosearch.v1 import audiosearch_pb2_grpc
from audiosearch.web import api, models, monitor
from audiosearch.web.errors import ApiError, api_error_handler, rpc_error_handler, validation_error_handler
from audiosearch.web.settings import WebSettings

STATIC = Path(__file__).parent / "static"
# The page loads nothing from anywhere but this process (and blob: URLs of originals it fetched itself).
PAGE_POLICY = ("default-src 'self'; media-src 'self' blob:; img-src 'self' data:; connect-src 'self'; "
               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
DESCRIPTION = """HTTP/JSON over the gRPC API `audiosearch.v1.AudioSearchService`: the same operations, the same
auth (send `Authorization: Bearer <key>` or `X-API-Key: <key>`), the same error reasons.

Errors are `{"error": {"code", "reason", "message", "metadata"}}`: `code` is the gRPC status name, `reason`
the `google.rpc.ErrorInfo` reason (e.g. `COLLECTION_NOT_FOUND`, `INVALID_AUDIO`, `MODEL_MISMATCH`).
HTTP statuses: INVALID_ARGUMENT 400, UNAUTHENTICATED 401, PERMISSION_DENIED 403, NOT_FOUND 404,
ALREADY_EXISTS / ABORTED / FAILED_PRECONDITION 409, RESOURCE_EXHAUSTED 429, UNAVAILABLE 503,
DEADLINE_EXCEEDED 504.

## Monitor a feed: WebSocket `/v1/collections/{collection}/monitor`

`MonitorAudio` over a WebSocket (`ws://` or `wss://`, same host), for feeds of any length, live or recorded:

1. Send the header as one text frame, JSON (schema `MonitorHeader` below): `feed_label`, `thresholds`, `tags`,
   `metadata`, `start_time`, `feed_offset_seconds`, and `raw_format` (`{"sample_rate_hz", "channels",
   "sample_format": "f32le" | "s16le"}`) for headerless PCM; without it the bytes are a container ffmpeg reads
   as a stream (wav, mp3, ogg, flac, AAC/ADTS, webm). Browsers, which cannot set headers on a WebSocket, put the
   key in `api_key`; other clients may send `Authorization` or `X-API-Key` with the upgrade request.
2. Send the feed as binary frames, in chunks of any size (64 KiB suits). The server stops reading while 16 frames
   wait for the gateway: pace on the socket's buffered amount.
3. Send the text frame `{"end": true}` when the feed is over.

The server sends text frames, JSON (schema `MonitorEvent`), each with one field: `detection` (a play, when it is
confirmed with `state` STARTED and again when it ends with `state` ENDED and its final ranges; the same
`detection_id`), `progress` (every 2 s: `audio_seconds`, `real_time_factor`, `lag_seconds`, ...), and last
`end` (the socket then closes with 1000) or `error` (as above; the socket then closes with code 4000 + the HTTP
status, e.g. 4404, and the reason `"<code> <reason>"`, e.g. `NOT_FOUND COLLECTION_NOT_FOUND`). Closing the socket
before `end` cancels the monitor. `{"detection": {"audio": {"content_url"}}}` plays the recording."""


def create_app(settings: WebSettings, channel: grpc.Channel) -> FastAPI:
    app = FastAPIOffline(title="audiosearch", version="1", description=DESCRIPTION,
                         static_url="/docs-static")
    app.state.settings = settings
    app.state.stub = audiosearch_pb2_grpc.AudioSearchServiceStub(channel)
    app.state.health = health_pb2_grpc.HealthStub(channel)
    app.include_router(api.router)
    app.include_router(monitor.router)
    app.add_exception_handler(grpc.RpcError, rpc_error_handler)
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/healthz", tags=["health"], summary="Whether the gateway behind this process is serving",
             responses={503: {"model": models.Health, "description": "The gateway is not serving"}})
    def healthz() -> JSONResponse:
        try:
            status = app.state.health.Check(health_pb2.HealthCheckRequest(), timeout=2.0).status
            gateway = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
        except grpc.RpcError as error:
            gateway = f"UNREACHABLE ({error.code().name})"
        serving = gateway == "SERVING"
        body = models.Health(status="SERVING" if serving else "NOT_SERVING", gateway=gateway)
        return JSONResponse(body.model_dump(), status_code=200 if serving else 503)

    @app.get("/", include_in_schema=False)
    def page() -> Response:
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": PAGE_POLICY,
                                                            "Cache-Control": "no-cache"})

    @app.middleware("http")
    async def no_sniff(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, less its 422 entries: request validation answers 400 with the error body instead."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        # The monitor's frames: not an operation, so FastAPI lists none of them by itself.
        _, frames = models_json_schema([(models.MonitorHeader, "validation"), (models.MonitorEvent, "serialization")],
                                       ref_template="#/components/schemas/{model}")
        schemas.update(frames.get("$defs", {}))
        app.openapi_schema = schema
    return app.openapi_schema
