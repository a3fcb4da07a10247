"""One mapping from failures to gRPC statuses carrying google.rpc.ErrorInfo, for every service."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import grpc
from google.protobuf import any_pb2, message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from audiosearch.common.interception import CallInterceptor

ERROR_DOMAIN = "audiosearch.dev"
log = logging.getLogger("audiosearch.rpc")


class ServiceError(Exception):
    """A failure the caller should see: a status code, a machine-readable reason and a message."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    default_reason = "INTERNAL"

    def __init__(self, message: str, reason: str | None = None, **metadata: object) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata = {key: str(value) for key, value in metadata.items()}

    def to_status(self) -> grpc.Status:
        return build_status(self.code, self.message, self.reason, self.metadata)


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "INVALID_FIELD"


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND
    default_reason = "NOT_FOUND"


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class Aborted(ServiceError):
    code = grpc.StatusCode.ABORTED
    default_reason = "ABORTED"


class ResourceExhausted(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = "OVERLOADED"


class DeadlineExceeded(ServiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    default_reason = "DEADLINE_EXCEEDED"


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE
    default_reason = "DEPENDENCY_UNAVAILABLE"


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


def build_status(
    code: grpc.StatusCode, message: str, reason: str, metadata: Mapping[str, str] | None = None
) -> grpc.Status:
    info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=dict(metadata or {}))
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=code.value[0], message=message, details=[detail])
    return rpc_status.to_status(status)


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """The google.rpc.ErrorInfo a failed call carries in its rich status, if any: the one decoder, which the
    services, the web app and the CLI share."""
    if not hasattr(error, "trailing_metadata"):
        return None
    try:
        status = rpc_status.from_call(error)
    except ValueError:  # the rich status disagrees with the call's own code or message
        return None
    for detail in status.details if status else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Is(info.DESCRIPTOR):
            detail.Unpack(info)
            return info
    return None


def reason_of(error: grpc.RpcError) -> str | None:
    info = error_info(error)
    return info.reason if info else None


_DEPENDENCY_DOWN = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def status_for_dependency_error(error: grpc.RpcError) -> grpc.Status:
    """Passes a downstream failure on: its own status when it carries a reason, UNAVAILABLE when down."""
    code = error.code()
    info = error_info(error)
    if code in _DEPENDENCY_DOWN:
        return build_status(
            grpc.StatusCode.UNAVAILABLE, f"a dependency is unavailable: {error.details()}", "DEPENDENCY_UNAVAILABLE"
        )
    if info is not None:
        return build_status(code, error.details() or "", info.reason, dict(info.metadata))
    return build_status(grpc.StatusCode.INTERNAL, f"dependency failed: {code.name}", "INTERNAL")


def _status_for(exception: BaseException, method: str) -> grpc.Status:
    if isinstance(exception, ServiceError):
        return exception.to_status()
    if isinstance(exception, grpc.RpcError) and hasattr(exception, "code"):
        return status_for_dependency_error(exception)
    log.exception("unhandled error in %s", method, exc_info=exception)
    return build_status(grpc.StatusCode.INTERNAL, "internal error", "INTERNAL")


class ErrorMappingInterceptor(CallInterceptor):
    """Turns exceptions into statuses with ErrorInfo and writes one access-log line per call."""

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        if handler.request_deserializer is not None:
            handler = handler._replace(request_deserializer=_tolerant(handler.request_deserializer))
        if handler.unary_unary:
            return handler._replace(unary_unary=_guard(handler.unary_unary, method))
        if handler.stream_unary:
            return handler._replace(stream_unary=_guard(_checked_stream(handler.stream_unary), method))
        if handler.unary_stream:
            return handler._replace(unary_stream=_guard_stream(handler.unary_stream, method))
        return handler._replace(stream_stream=_guard_stream(_checked_stream(handler.stream_stream), method))


class _Undecodable:
    """Stands in for a request that is not a valid message, so that the caller gets INVALID_ARGUMENT with a
    reason instead of the framework's bare INTERNAL "Exception deserializing request!"."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def reject(self) -> InvalidArgument:
        return InvalidArgument(f"the request is not a valid message ({self.error}); string fields must be UTF-8",
                               reason="INVALID_FIELD", field="request")


def _tolerant(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def tolerant(data: bytes) -> Any:
        try:
            return deserialize(data)
        except message.DecodeError as error:
            return _Undecodable(error)

    return tolerant


def _checked_stream(behaviour: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
    def checked(requests: Any, context: grpc.ServicerContext) -> Any:
        return behaviour(_decoded(requests), context)

    return checked


def _decoded(requests: Any) -> Any:
    for request in requests:
        if isinstance(request, _Undecodable):
            raise request.reject()
        yield request


def _guard(behaviour: Callable[[Any, grpc.ServicerContext], Any], method: str) -> Callable[..., Any]:
    def guarded(request: Any, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        try:
            if isinstance(request, _Undecodable):
                raise request.reject()
            response = behaviour(request, context)
        except Exception as exception:  # noqa: BLE001 - the one place that maps every failure
            _abort(context, _status_for(exception, method), method, started)
        _log_call(method, "OK", started)
        return response

    return guarded


def _guard_stream(behaviour: Callable[[Any, grpc.ServicerContext], Any], method: str) -> Callable[..., Any]:
    def guarded(request: Any, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        try:
            if isinstance(request, _Undecodable):
                raise request.reject()
            yield from behaviour(request, context)
        except Exception as exception:  # noqa: BLE001 - the one place that maps every failure
            _abort(context, _status_for(exception, method), method, started)
        _log_call(method, "OK", started)

    return guarded


def _abort(context: grpc.ServicerContext, status: grpc.Status, method: str, started: float) -> None:
    _log_call(method, status.code.name, started, status.details)
    context.abort_with_status(status)


def _log_call(method: str, code: str, started: float, details: str | None = None) -> None:
    elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
    level = logging.INFO if code == "OK" else logging.WARNING
    log.log(level, "rpc", extra={"method": method, "code": code, "ms": elapsed_ms, "details": details})
