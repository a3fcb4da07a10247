"""One mapping from gRPC failures (and request mistakes) to HTTP statuses with a JSON error body.

The body carries the gRPC code and the google.rpc.ErrorInfo reason the gateway sent, so an HTTP caller
branches on `error.reason` exactly like a gRPC caller does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import grpc
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from audiosearch.common.errors import error_info

log = logging.getLogger(__name__)

HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    # The state of the resource is in the way (e.g. MODEL_MISMATCH): a conflict, not a failed HTTP precondition
    # header, so 409 rather than 412.
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


class ErrorDetail(BaseModel):
    code: str = Field(description="gRPC status code name, e.g. NOT_FOUND", examples=["NOT_FOUND"])
    reason: str = Field(description="google.rpc.ErrorInfo reason, e.g. COLLECTION_NOT_FOUND",
                        examples=["COLLECTION_NOT_FOUND"])
    message: str = Field(description="Human-readable explanation")
    metadata: dict[str, str] = Field(default_factory=dict, description="Dynamic values, e.g. the field at fault")


class ErrorBody(BaseModel):
    error: ErrorDetail


class ApiError(Exception):
    """A refusal decided by the web process itself (before any gRPC call)."""

    def __init__(self, status: int, code: str, reason: str, message: str, **metadata: object) -> None:
        super().__init__(message)
        self.status = status
        self.detail = ErrorDetail(code=code, reason=reason, message=message,
                                  metadata={key: str(value) for key, value in metadata.items()})


def invalid_field(field: str, message: str) -> ApiError:
    return ApiError(400, "INVALID_ARGUMENT", "INVALID_FIELD", message, field=field)


def _response(status: int, detail: ErrorDetail) -> JSONResponse:
    return JSONResponse(status_code=status, content=ErrorBody(error=detail).model_dump())


def from_rpc_error(error: grpc.RpcError) -> tuple[int, ErrorDetail]:
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    info = error_info(error)
    if info is not None:
        reason, metadata = info.reason, dict(info.metadata)
    elif code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        reason, metadata = "DEPENDENCY_UNAVAILABLE", {}  # the gateway itself is down or too slow
    else:
        reason, metadata = code.name, {}
    details = error.details() if hasattr(error, "details") else None
    return HTTP_STATUS.get(code, 500), ErrorDetail(code=code.name, reason=reason,
                                                   message=details or code.name, metadata=metadata)


async def rpc_error_handler(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, grpc.RpcError)
    status, detail = from_rpc_error(error)
    level = logging.WARNING if status >= 500 else logging.INFO
    log.log(level, "gateway call failed",
            extra={"path": request.url.path, "code": detail.code, "reason": detail.reason})
    return _response(status, detail)


async def api_error_handler(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiError)
    return _response(error.status, error.detail)


def invalid_request(problems: Sequence[Any]) -> ErrorDetail:
    """Pydantic's validation problems as the gateway's INVALID_FIELD, naming the first field at fault."""
    first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
    field = ".".join(str(part) for part in first["loc"] if part not in ("body", "query", "path", "header"))
    return ErrorDetail(code="INVALID_ARGUMENT", reason="INVALID_FIELD",
                       message=f"{field or 'request'}: {first['msg']}", metadata={"field": field})


async def validation_error_handler(request: Request, error: Exception) -> JSONResponse:
    """FastAPI's own request validation, in the same shape as the gateway's INVALID_FIELD (400, not 422)."""
    assert isinstance(error, RequestValidationError)
    return _response(400, invalid_request(error.errors()))
