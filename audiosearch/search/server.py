"""The search service's composition root: settings → Milvus store and landmark index → gRPC server; a probe drives
health."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Literal

import grpc
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from audiosearch.common.grpc_server import RunningServer, serve_until_signalled, start_server
from audiosearch.common.logs import configure_logging
from audiosearch.common.settings import ServiceSettings, load_settings
from audiosearch.search.landmark_index import MAX_CANDIDATES, MAX_WINDOW_MS, LandmarkConfig, LandmarkIndex
from audiosearch.search.probe import DependencyProbe
from audiosearch.search.servicer import SERVICE_NAME, VectorSearchServicer
from audiosearch.search.store import SERVER_SCHEMES, MilvusStore, StoreConfig
from audiosearch.search.v1 import search_pb2_grpc

log = logging.getLogger(__name__)

IndexType = Literal["auto", "FLAT", "HNSW", "IVF_FLAT", "IVF_SQ8"]
Consistency = Literal["Strong", "Bounded", "Session", "Eventually"]
_STORE = StoreConfig(uri="")  # the store's defaults are the settings' defaults
_LANDMARKS = LandmarkConfig()

# pymilvus installs its own console handlers and logs every failed call (a missing collection included) with a
# traceback; the interceptor already logs each call's outcome, so only its critical messages are kept.
_PYMILVUS_LOGGERS = ("pymilvus", "pymilvus.milvus_client", "pymilvus.bulk_writer")


class _UnimplementedByLite(logging.Filter):
    """Milvus Lite serves gRPC in this process and leaves a few RPCs unimplemented; pymilvus copes without
    them, but grpc logs each as an application error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], NotImplementedError))


class SearchSettings(ServiceSettings):
    """`SEARCH_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="SEARCH_")

    port: int = 50052
    milvus_uri: str = Field(
        default="./var/milvus.db",
        description="a path ending in .db for Milvus Lite (embedded), or http://host:19530 (server, cluster)",
    )
    milvus_token: SecretStr = Field(default=SecretStr(""), description="user:password or an API key, if any")
    milvus_timeout_seconds: float = Field(default=_STORE.timeout_s, gt=0, description="deadline of every Milvus call")
    index_type: IndexType = Field(
        default=_STORE.index_type, description="index of new collections; auto: FLAT on Milvus Lite, HNSW on a server"
    )
    hnsw_m: int = Field(default=_STORE.hnsw_m, ge=2, le=2048)
    hnsw_ef_construction: int = Field(default=_STORE.hnsw_ef_construction, ge=1)
    search_ef: int = Field(
        default=_STORE.search_ef, ge=1, description="HNSW search breadth (raised to top_k when lower)"
    )
    ivf_nlist: int = Field(default=_STORE.ivf_nlist, ge=1, le=65536)
    ivf_nprobe: int = Field(default=_STORE.ivf_nprobe, ge=1, le=65536)
    collection_prefix: str = Field(default=_STORE.collection_prefix, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    consistency: Consistency = Field(
        default=_STORE.consistency,
        description="reads: Bounded waits only on a query node > 5 s behind; Strong waits ~200 ms for a time tick",
    )
    visible_writes: bool = Field(
        default=_STORE.visible_writes,
        description="on a server, a write returns once reads see it, so reads at any level see acknowledged writes",
    )
    landmark_milvus_uri: str = Field(
        default="", description="the Milvus of the landmark index (2.4 or later: sparse vectors); empty: milvus_uri",
    )
    landmark_window_ms: int = Field(default=_LANDMARKS.window_ms, ge=500, le=MAX_WINDOW_MS,
                                    description="landmarks are stored and looked up in windows this long")
    landmark_candidates: int = Field(default=_LANDMARKS.candidates, ge=1, le=MAX_CANDIDATES,
                                     description="stored windows each query window brings back for the vote")
    landmark_max_hash_count: int = Field(default=_LANDMARKS.max_hash_count, ge=1,
                                         description="a hash stored more often than this is left out of a match")
    probe_interval_seconds: float = Field(default=5.0, gt=0, description="how often health re-checks Milvus")

    @field_validator("milvus_uri", "landmark_milvus_uri")
    @classmethod
    def _known_uri(cls, uri: str) -> str:
        if uri and not uri.startswith(SERVER_SCHEMES) and not uri.endswith(".db"):
            raise ValueError("expected a Milvus Lite file ending in .db, or http(s)://host:port")
        return uri


def store_config(settings: SearchSettings, uri: str = "") -> StoreConfig:
    return StoreConfig(
        uri=uri or settings.milvus_uri, token=settings.milvus_token.get_secret_value(),
        timeout_s=settings.milvus_timeout_seconds, index_type=settings.index_type, hnsw_m=settings.hnsw_m,
        hnsw_ef_construction=settings.hnsw_ef_construction, search_ef=settings.search_ef,
        ivf_nlist=settings.ivf_nlist, ivf_nprobe=settings.ivf_nprobe,
        collection_prefix=settings.collection_prefix, consistency=settings.consistency,
        visible_writes=settings.visible_writes,
    )


def route_pymilvus_logs() -> None:
    for name in _PYMILVUS_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.CRITICAL)
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # Milvus Lite's faiss: CPU feature probing
    grpc_server_log = logging.getLogger("grpc._server")
    if not any(isinstance(f, _UnimplementedByLite) for f in grpc_server_log.filters):
        grpc_server_log.addFilter(_UnimplementedByLite())


def build_server(settings: SearchSettings) -> RunningServer:
    """Serves at once; health is NOT_SERVING while Milvus is unreachable. Stopping it closes the store."""
    route_pymilvus_logs()
    store = MilvusStore(store_config(settings))
    separate = settings.landmark_milvus_uri not in ("", settings.milvus_uri)
    landmark_store = MilvusStore(store_config(settings, settings.landmark_milvus_uri)) if separate else store
    landmarks = LandmarkIndex(landmark_store, LandmarkConfig(settings.landmark_window_ms, settings.landmark_candidates,
                                                             settings.landmark_max_hash_count))
    stores = [store, landmark_store] if separate else [store]

    def register(server: grpc.Server) -> Iterable[str]:
        search_pb2_grpc.add_VectorSearchServiceServicer_to_server(VectorSearchServicer(store, landmarks), server)
        return [SERVICE_NAME]

    def close() -> None:
        for each in stores:
            each.close()

    try:
        running = start_server(settings, register)
    except BaseException:
        close()
        raise
    running.set_serving(False)
    probe = DependencyProbe("milvus", lambda: all(each.ping() for each in stores), running.set_serving,
                            settings.probe_interval_seconds)
    probe.start()
    running.on_stop.extend([probe.stop, close])
    log.info("search store", extra={"lite": store.config.is_lite, "index": store.config.effective_index_type,
                                    "consistency": settings.consistency})
    return running


def main() -> None:
    settings = load_settings(SearchSettings)
    configure_logging("search", settings.log_level)
    serve_until_signalled(build_server(settings), settings.grace_seconds)


if __name__ == "__main__":
    main()
