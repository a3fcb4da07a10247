"""The gateway's configuration, from GATEWAY_* environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, FilePath, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from audiosearch.common.settings import ServiceSettings
from audiosearch.common.tls import ClientTls
from audiosearch.gateway.backends.admission import BackgroundLimits


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", frozen=True)

    port: int = 50051
    embedder_url: str = "127.0.0.1:8001"
    search_address: str = "127.0.0.1:50052"
    catalog_address: str = "127.0.0.1:50053"
    rpc_timeout_seconds: float = Field(default=30.0, gt=0)
    # Creating or dropping a vector collection builds or frees an index: slower than any data-path call.
    admin_rpc_timeout_seconds: float = Field(default=120.0, gt=0)
    embed_timeout_seconds: float = Field(default=120.0, gt=0)
    # Triton requests the gateway keeps outstanding, all ingests and queries together: enough for every file of a
    # full import to have one queued (docs/benchmarks.md, bench.throughput).
    embed_max_parallel_requests: int = Field(default=32, ge=1, le=512)
    # Fairness (backends/admission.py, docs/operations.md): monitors, imports and the windows of a query longer than
    # one batch go to Triton in chunks of this many windows, while fewer requests than this, searches included, are
    # there (one per embedder instance keeps every instance busy); a chunk held back this long goes in anyway.
    embed_background_chunk_windows: int = Field(default=8, ge=1, le=4096)
    embed_background_parallel_requests: int = Field(default=2, ge=1, le=512)
    embed_background_max_wait_seconds: float = Field(default=5.0, ge=0)
    max_upload_bytes: int = Field(default=200 * 1024 * 1024, gt=0)
    max_duration_seconds: float = Field(default=3600.0, gt=0)
    max_query_duration_seconds: float = Field(default=600.0, gt=0)
    max_concurrent_ingests: int = Field(default=8, gt=0)
    # An upload stream that sends nothing for this long is ended (it would hold an ingest slot).
    upload_idle_seconds: float = Field(default=30.0, gt=0)
    decode_timeout_seconds: float = Field(default=60.0, gt=0)
    # Decoded mono float32 at the source rate, per upload: bounds the memory of one decode (audio.AudioLimits).
    max_decoded_bytes: int = Field(default=1536 * 1024**2, gt=0)
    # How often health looks at the embedder, catalog and search (NOT_SERVING while one is gone).
    dependency_check_seconds: float = Field(default=5.0, gt=0)
    # API keys (auth.py): a JSON or YAML file of sha256-hashed keys; unset, the gateway is open (local use only).
    api_keys_file: FilePath | None = None
    # TLS to the catalog and search services: a CA turns it on; a certificate and key add mTLS (the gateway's
    # identity, which the internal services admit by name); a server name overrides the one checked.
    internal_tls_ca_file: FilePath | None = None
    internal_tls_cert_file: FilePath | None = None
    internal_tls_key_file: FilePath | None = None
    internal_tls_server_name: str = ""
    default_window_seconds: float = Field(default=2.0, ge=1.0, le=10.0)
    default_hop_seconds: float = Field(default=2.0, ge=0.25, le=10.0)
    default_score_threshold: float = Field(default=0.5, ge=-1.0, le=1.0)
    # Aligned landmarks that make a match whatever the score, until calibration sets the collection's own.
    default_landmark_threshold: int = Field(default=12, ge=1)
    tags_per_recording: int = Field(default=5, ge=1, le=527)
    tag_floor: float = Field(default=0.0, ge=0.0, le=1.0)
    reconcile_interval_seconds: float = Field(default=30.0, gt=0)
    reconcile_grace_seconds: float = Field(default=120.0, ge=0)
    reconcile_orphan_interval_seconds: float = Field(default=600.0, gt=0)
    # Bulk import (bulk.py): server-side imports read only under these directories (colon-separated; empty: off);
    # files in flight per import, enough that decoding overlaps embedding and Triton's batches fill
    # (docs/benchmarks.md, bench.throughput); concurrent imports.
    import_roots: str = ""
    import_parallel_files: int = Field(default=16, ge=1, le=64)
    max_concurrent_imports: int = Field(default=2, ge=1)
    import_progress_seconds: float = Field(default=2.0, gt=0)
    # MonitorAudio (query/monitor.py): streams at once (each holds a server thread for as long as its feed lasts);
    # the stretch of feed searched at a time and how often one is (each new `monitor_hop_seconds`, overlapping the
    # previous, so a play that starts anywhere lies whole in some stretch); progress messages.
    max_concurrent_monitors: int = Field(default=4, ge=1)
    monitor_window_seconds: float = Field(default=10.0, ge=4.0, le=60.0)
    monitor_hop_seconds: float = Field(default=5.0, ge=1.0, le=60.0)
    monitor_progress_seconds: float = Field(default=2.0, gt=0)
    # Originals kept for playback: file:///path, s3://bucket/prefix, or empty for none (see blobs.py).
    blob_uri: str = Field(default="", pattern=r"^(|file:///.*|s3://[^/]+(/.*)?)$")
    s3_endpoint: str = ""
    s3_region: str = ""
    s3_access_key_id: str = ""
    s3_secret_access_key: SecretStr = SecretStr("")

    @model_validator(mode="after")
    def _monitor_stretches_overlap(self) -> GatewaySettings:
        if self.monitor_hop_seconds > self.monitor_window_seconds:
            raise ValueError("monitor_hop_seconds may not exceed monitor_window_seconds (stretches would leave gaps)")
        return self

    @model_validator(mode="after")
    def _internal_tls_is_complete(self) -> GatewaySettings:
        if (self.internal_tls_cert_file is None) != (self.internal_tls_key_file is None):
            raise ValueError("internal_tls_cert_file and internal_tls_key_file go together")
        if self.internal_tls_cert_file is not None and self.internal_tls_ca_file is None:
            raise ValueError("internal_tls_cert_file (mTLS) needs internal_tls_ca_file")
        return self

    def embed_background(self) -> BackgroundLimits:
        return BackgroundLimits(self.embed_background_chunk_windows, self.embed_background_parallel_requests,
                                self.embed_background_max_wait_seconds)

    def internal_tls(self) -> ClientTls | None:
        if self.internal_tls_ca_file is None:
            return None
        return ClientTls(Path(self.internal_tls_ca_file), self.internal_tls_cert_file, self.internal_tls_key_file,
                         self.internal_tls_server_name or None)
