"""Stubs of the internal services, with a deadline on every call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from audiosearch.catalog.v1 import catalog_pb2_grpc
from audiosearch.common.channels import open_channel
from audiosearch.common.tls import ClientTls
from audiosearch.search.v1 import search_pb2_grpc


class _Deadlined:
    """Wraps a generated stub so that every call carries the configured timeout."""

    def __init__(self, stub: object, timeout_seconds: float) -> None:
        self._stub = stub
        self._timeout_seconds = timeout_seconds

    def __getattr__(self, method: str) -> Callable[..., Any]:
        call = getattr(self._stub, method)

        def with_deadline(request: Any, timeout: float | None = None) -> Any:
            return call(request, timeout=timeout or self._timeout_seconds)

        return with_deadline


class Backends:
    def __init__(self, catalog_address: str, search_address: str, timeout_seconds: float,
                 tls: ClientTls | None = None) -> None:
        self._channels: list[grpc.Channel] = [open_channel(catalog_address, tls), open_channel(search_address, tls)]
        self.catalog: Any = _Deadlined(catalog_pb2_grpc.CatalogServiceStub(self._channels[0]), timeout_seconds)
        self.search: Any = _Deadlined(search_pb2_grpc.VectorSearchServiceStub(self._channels[1]), timeout_seconds)
        self._health = {"catalog": health_pb2_grpc.HealthStub(self._channels[0]),
                        "search": health_pb2_grpc.HealthStub(self._channels[1])}

    def serving(self, timeout_seconds: float = 2.0) -> dict[str, bool]:
        """Whether the catalog and the search service each answer their health check with SERVING."""
        states = {}
        for name, stub in self._health.items():
            try:
                response = stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout_seconds)
            except grpc.RpcError:
                states[name] = False
            else:
                states[name] = response.status == health_pb2.HealthCheckResponse.SERVING
        return states

    def close(self) -> None:
        for channel in self._channels:
            channel.close()
