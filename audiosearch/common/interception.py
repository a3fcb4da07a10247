"""What the server interceptors (metrics, tracing, the client-certificate check, the error mapping) share: which
RPCs they see, running each call of a handler inside a context manager, and the status the call really ended with."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import grpc

Around = Callable[[grpc.ServicerContext], AbstractContextManager[None]]


def split_method(method: str) -> tuple[str, str]:
    """`/audiosearch.v1.AudioSearchService/IngestAudio` -> (`audiosearch.v1.AudioSearchService`, `IngestAudio`)."""
    service, _, name = method.lstrip("/").rpartition("/")
    return service, name


def is_observed(method: str) -> bool:
    """Every application RPC; health checks and reflection (`/grpc.*`) are left out."""
    return not method.startswith("/grpc.")


def final_code(context: grpc.ServicerContext, error: BaseException | None) -> grpc.StatusCode:
    """The status the client gets: what abort()/set_code() set (the error mapping aborts), else OK or UNKNOWN."""
    code = context.code()
    if code is not None:
        return code
    if error is None:
        return grpc.StatusCode.OK
    if isinstance(error, GeneratorExit):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


@contextmanager
def reporting_code(context: grpc.ServicerContext, report: Callable[[grpc.StatusCode], None]) -> Iterator[None]:
    """Runs the call; then, however it ended, `report`s the status code the client gets."""
    error: BaseException | None = None
    try:
        yield
    except BaseException as raised:
        error = raised
        raise
    finally:
        report(final_code(context, error))


class CallInterceptor(grpc.ServerInterceptor):
    """Wraps the handler of every application RPC (`is_observed`): by default it runs each call inside
    `around(method, context)`; an interceptor that needs more (the error mapping) overrides `wrap`."""

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not is_observed(method):
            return handler
        return self.wrap(handler, method)

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        return wrap_calls(handler, lambda context: self.around(method, context))

    def around(self, method: str, context: grpc.ServicerContext) -> AbstractContextManager[None]:
        raise NotImplementedError


def wrap_calls(handler: grpc.RpcMethodHandler, around: Around) -> grpc.RpcMethodHandler:
    """`handler` with each call run inside `around(context)`; a streamed response until its last message."""
    if handler.unary_unary:
        return handler._replace(unary_unary=_unary(handler.unary_unary, around))
    if handler.stream_unary:
        return handler._replace(stream_unary=_unary(handler.stream_unary, around))
    if handler.unary_stream:
        return handler._replace(unary_stream=_stream(handler.unary_stream, around))
    return handler._replace(stream_stream=_stream(handler.stream_stream, around))


def _unary(behaviour: Callable[[Any, grpc.ServicerContext], Any], around: Around) -> Callable[..., Any]:
    def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
        with around(context):
            return behaviour(request, context)

    return wrapped


def _stream(behaviour: Callable[[Any, grpc.ServicerContext], Any], around: Around) -> Callable[..., Any]:
    def wrapped(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        with around(context):
            yield from behaviour(request, context)

    return wrapped
