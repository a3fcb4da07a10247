"""Composition root of the gateway: settings -> clients of the embedder, search and catalog -> gRPC server."""

from __future__ import annotations

import logging
import threading

from audiosearch.v1 import audiosearch_pb2, audiosearch_pb2_grpc
from services.common.audio import AudioLimits
from services.common.grpc_server import RunningServer, serve_until_signalled, start_server
from services.common.logs import configure_logging
from services.common.settings import load_settings
from services.gateway.backends import Backends
from services.gateway.calibration import Calibrator
from services.gateway.collections import Collections
from services.gateway.embedder_client import EmbedderClient
from services.gateway.pipeline import AudioPipeline
from services.gateway.query import Query
from services.gateway.reconciler import Reconciler
from services.gateway.records import Records
from services.gateway.servicer import AudioSearchServicer
from services.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)
SERVICE_NAME = audiosearch_pb2.DESCRIPTOR.services_by_name["AudioSearchService"].full_name


def build_server(settings: GatewaySettings) -> RunningServer:
    embedder = EmbedderClient(settings.embedder_url, settings.embed_timeout_seconds)
    backends = Backends(settings.catalog_address, settings.search_address, settings.rpc_timeout_seconds)
    pipeline = AudioPipeline(embedder, AudioLimits(settings.max_duration_seconds, settings.decode_timeout_seconds))
    records = Records(backends, pipeline, settings)
    query = Query(backends, pipeline, settings)
    servicer = AudioSearchServicer(settings, backends, Collections(backends, embedder, settings), records, query,
                                   Calibrator(backends, query))

    def register(server: object) -> list[str]:
        audiosearch_pb2_grpc.add_AudioSearchServiceServicer_to_server(servicer, server)
        return [SERVICE_NAME]

    running = start_server(settings, register)
    reconciler = Reconciler(backends, records, settings.reconcile_interval_seconds, settings.reconcile_grace_seconds)
    reconciler.start()
    watcher = _DependencyWatcher(running, embedder, backends)
    watcher.start()
    running.on_stop.extend([reconciler.stop, watcher.stop, embedder.close, backends.close])
    return running


class _DependencyWatcher:
    """Keeps health NOT_SERVING while the embedder is not ready, SERVING again once it is."""

    def __init__(self, running: RunningServer, embedder: EmbedderClient, backends: Backends) -> None:
        self._running = running
        self._embedder = embedder
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dependency-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _loop(self) -> None:
        serving = True
        while not self._stopped.wait(5.0):
            ready = self._embedder.is_ready()
            if ready != serving:
                log.warning("dependency state changed", extra={"embedder_ready": ready})
                self._running.set_serving(ready)
                serving = ready


def main() -> None:
    settings = load_settings(GatewaySettings)
    configure_logging("gateway", settings.log_level)
    running = build_server(settings)
    serve_until_signalled(running, settings.grace_seconds)


if __name__ == "__main__":
    main()
