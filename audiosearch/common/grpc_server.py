"""The gRPC server bootstrap every service shares: health, reflection, error mapping, graceful stop."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from audiosearch.common.errors import ErrorMappingInterceptor
from audiosearch.common.metrics import MetricsInterceptor, serve_metrics
from audiosearch.common.settings import ServiceSettings
from audiosearch.common.tls import identity_interceptors, security_mode, server_credentials
from audiosearch.common.tracing import ServerTracingInterceptor, configure_tracing

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.so_reuseport", 0),
    # Clients re-resolve DNS when a connection ends: bounded connection age lets new pods receive traffic. Calls
    # in flight when it ends are never cut (the largest grace gRPC takes): new calls go to a new connection, while
    # a MonitorAudio stream runs as long as its feed and a calibration of a large catalog for minutes.
    ("grpc.max_connection_age_ms", 300_000),
    ("grpc.max_connection_age_grace_ms", 2**31 - 1),
]


@dataclass
class RunningServer:
    server: grpc.Server
    health: health.HealthServicer
    port: int
    service_names: list[str]
    health_port: int | None = None
    on_stop: list[Callable[[], None]] = field(default_factory=list)
    # Run as the server starts to drain, before it waits for the calls in flight: long-lived streams end themselves.
    on_drain: list[Callable[[], None]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ["", *self.service_names]:
            self.health.set(name, status)

    def stop(self, grace: float) -> None:
        self.health.enter_graceful_shutdown()
        for callback in self.on_drain:
            callback()
        self.server.stop(grace).wait()
        for callback in self.on_stop:
            callback()


def start_server(
    settings: ServiceSettings,
    register: Callable[[grpc.Server], Iterable[str]],
    interceptors: Sequence[grpc.ServerInterceptor] = (),
) -> RunningServer:
    """Builds and starts a server; `register` adds the servicers and returns their full service names.

    `interceptors` run inside the error mapping (an exception they raise becomes a status with a reason); the
    server speaks TLS or mTLS when its settings name certificate files."""
    configure_tracing(service_name(settings))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.max_workers),
        # Outermost first: metrics and the span see the status the error mapping sets, and the span is current
        # while the error mapping writes the access log (its line carries the trace id).
        interceptors=[MetricsInterceptor(), ServerTracingInterceptor(), ErrorMappingInterceptor(),
                      *identity_interceptors(settings), *interceptors],
        options=SERVER_OPTIONS,
        maximum_concurrent_rpcs=settings.max_workers * 4,
    )
    service_names = list(register(server))
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    credentials = server_credentials(settings)
    address = f"{settings.host}:{settings.port}"
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if port == 0:
        raise SystemExit(f"cannot bind {settings.host}:{settings.port}")
    metrics_server = serve_metrics(settings.host, settings.metrics_port) if settings.metrics_port else None
    server.start()
    running = RunningServer(server, health_servicer, port, service_names)
    if settings.health_port >= 0:
        health_server, running.health_port = serve_health_only(settings.host, settings.health_port, health_servicer)
        running.on_stop.append(lambda: health_server.stop(0).wait())
    if metrics_server is not None:
        running.on_stop.append(metrics_server.shutdown)
    running.set_serving(True)
    log.info("serving", extra={"address": f"{settings.host}:{port}", "services": service_names,
                               "transport": security_mode(settings), "health_port": running.health_port})
    return running


def serve_health_only(host: str, port: int, servicer: health.HealthServicer) -> tuple[grpc.Server, int]:
    """A plaintext server with only the health service, sharing the main server's statuses."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=SERVER_OPTIONS)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise SystemExit(f"cannot bind the health port {host}:{port}")
    server.start()
    return server, bound


def service_name(settings: ServiceSettings) -> str:
    """`gateway` for GatewaySettings (env prefix `GATEWAY_`), and so on."""
    return str(type(settings).model_config.get("env_prefix") or "audiosearch").rstrip("_").lower()


def serve_until_signalled(running: RunningServer, grace: float) -> None:
    """Blocks until SIGTERM or SIGINT, then turns health to NOT_SERVING and drains in-flight calls."""
    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    stop_requested.wait()
    running.stop(grace)
    log.info("stopped")
