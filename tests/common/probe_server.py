"""A tiny in-process service on the shared bootstrap (start_server), raw bytes in and out, to test the plumbing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
from pydantic_settings import SettingsConfigDict

from audiosearch.common.errors import NotFound
from audiosearch.common.grpc_server import RunningServer, start_server
from audiosearch.common.settings import ServiceSettings

SERVICE = "test.v1.ProbeService"


class ProbeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PROBE_", extra="ignore", frozen=True)


class Probe:
    """Succeed echoes; Missing raises NotFound; Crash raises RuntimeError; Wait blocks until released; Upload
    (client stream) returns the byte count. Each keeps the handler's callback to run inside the call."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.during_call = lambda: None

    def handlers(self) -> grpc.GenericRpcHandler:
        def succeed(request: bytes, context: grpc.ServicerContext) -> bytes:
            self.during_call()
            return request

        def missing(request: bytes, context: grpc.ServicerContext) -> bytes:
            raise NotFound("nothing here", reason="PROBE_NOT_FOUND")

        def crash(request: bytes, context: grpc.ServicerContext) -> bytes:
            raise RuntimeError("boom")

        def wait(request: bytes, context: grpc.ServicerContext) -> bytes:
            self.entered.set()
            self.release.wait(10)
            return b""

        def upload(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
            return str(sum(len(chunk) for chunk in requests)).encode()

        return grpc.method_handlers_generic_handler(SERVICE, {
            "Succeed": grpc.unary_unary_rpc_method_handler(succeed),
            "Missing": grpc.unary_unary_rpc_method_handler(missing),
            "Crash": grpc.unary_unary_rpc_method_handler(crash),
            "Wait": grpc.unary_unary_rpc_method_handler(wait),
            "Upload": grpc.stream_unary_rpc_method_handler(upload),
        })


@contextmanager
def running_probe(metrics_port: int = 0) -> Iterator[tuple[RunningServer, Probe]]:
    probe = Probe()

    def register(server: grpc.Server) -> list[str]:
        server.add_generic_rpc_handlers((probe.handlers(),))
        return [SERVICE]

    running = start_server(ProbeSettings(metrics_port=metrics_port, max_workers=4), register)
    try:
        yield running, probe
    finally:
        probe.release.set()
        running.stop(0)
