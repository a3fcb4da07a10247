"""Stubs of the internal services, with a deadline on every call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from audiosearch.catalog.v1 import catalog_pb2_grpc
from audiosearch.search.v1 import search_pb2_grpc
from services.common.channels import open_channel


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
    def __init__(self, catalog_address: str, search_address: str, timeout_seconds: float) -> None:
        self._channels: list[grpc.Channel] = [open_channel(catalog_address), open_channel(search_address)]
        self.catalog: Any = _Deadlined(catalog_pb2_grpc.CatalogServiceStub(self._channels[0]), timeout_seconds)
        self.search: Any = _Deadlined(search_pb2_grpc.VectorSearchServiceStub(self._channels[1]), timeout_seconds)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()
