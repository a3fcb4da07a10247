"""Composition root of the gateway: settings -> clients of the embedder, search and catalog -> gRPC server."""

from __future__ import annotations

import logging
import threading

from audiosearch.common.grpc_server import RunningServer, serve_until_signalled, start_server
from audiosearch.common.logs import configure_logging
from audiosearch.common.settings import load_settings
from audiosearch.gateway.api.auth import ApiKeyInterceptor, open_store
from audiosearch.gateway.api.servicer import AudioSearchServicer
from audiosearch.gateway.audio.decoding import AudioLimits
from audiosearch.gateway.audio.pipeline import AudioPipeline
from audiosearch.gateway.backends.blobs import open_blob_store
from audiosearch.gateway.backends.embedder import EmbedderClient
from audiosearch.gateway.backends.stubs import Backends
from audiosearch.gateway.collections import Collections
from audiosearch.gateway.ingest.reconciler import Reconciler
from audiosearch.gateway.ingest.writer import Records
from audiosearch.gateway.query.calibration import Calibrator
from audiosearch.gateway.query.monitor import Monitors
from audiosearch.gateway.query.search import Query
from audiosearch.gateway.settings import GatewaySettings
from audiosearch.v1 import audiosearch_pb2, audiosearch_pb2_grpc

log = logging.getLogger(__name__)
SERVICE_NAME = audiosearch_pb2.DESCRIPTOR.services_by_name["AudioSearchService"].full_name


def build_server(settings: GatewaySettings) -> RunningServer:
    embedder = EmbedderClient(settings.embedder_url, settings.embed_timeout_seconds,
                              settings.embed_max_parallel_requests, tls=settings.internal_tls(),
                              background=settings.embed_background())
    backends = Backends(settings.catalog_address, settings.search_address, settings.rpc_timeout_seconds,
                        settings.internal_tls())
    pipeline = AudioPipeline(embedder, AudioLimits(settings.max_duration_seconds, settings.decode_timeout_seconds,
                                                   settings.max_decoded_bytes))
    blobs = open_blob_store(settings.blob_uri, s3_endpoint=settings.s3_endpoint, s3_region=settings.s3_region,
                            s3_access_key_id=settings.s3_access_key_id,
                            s3_secret_access_key=settings.s3_secret_access_key.get_secret_value())
    records = Records(backends, pipeline, settings, blobs)
    query = Query(backends, pipeline, settings)
    collections = Collections(backends, embedder, settings, blobs)
    monitors = Monitors(settings, collections, query, pipeline)
    servicer = AudioSearchServicer(settings, backends, collections, records, query, Calibrator(backends, query),
                                   monitors)

    def register(server: object) -> list[str]:
        audiosearch_pb2_grpc.add_AudioSearchServiceServicer_to_server(servicer, server)
        return [SERVICE_NAME]

    keys = open_store(settings.api_keys_file)
    running = start_server(settings, register, interceptors=[ApiKeyInterceptor(keys)] if keys else [])
    reconciler = Reconciler(backends, records, settings.reconcile_interval_seconds, settings.reconcile_grace_seconds,
                            settings.reconcile_orphan_interval_seconds)
    reconciler.start()
    watcher = _DependencyWatcher(running, embedder, backends, settings.dependency_check_seconds)
    watcher.start()
    running.on_drain.append(monitors.drain)
    running.on_stop.extend([reconciler.stop, watcher.stop, embedder.close, backends.close])
    return running


class _DependencyWatcher:
    """Keeps health NOT_SERVING while a required dependency (embedder, catalog, search) is not ready, SERVING
    again once all are: every gateway call needs all three, so a gateway without one should get no traffic."""

    def __init__(self, running: RunningServer, embedder: EmbedderClient, backends: Backends,
                 interval_seconds: float = 5.0) -> None:
        self._running = running
        self._embedder = embedder
        self._backends = backends
        self._interval_seconds = interval_seconds
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dependency-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def states(self) -> dict[str, bool]:
        return {"embedder": self._embedder.is_ready(), **self._backends.serving()}

    def _loop(self) -> None:
        serving = True
        while not self._stopped.wait(self._interval_seconds):
            states = self.states()
            ready = all(states.values())
            if ready != serving:
                log.warning("dependency state changed", extra={"serving": ready, **states})
                self._running.set_serving(ready)
                serving = ready


def main() -> None:
    settings = load_settings(GatewaySettings)
    configure_logging("gateway", settings.log_level)
    running = build_server(settings)
    serve_until_signalled(running, settings.grace_seconds)


if __name__ == "__main__":
    main()
