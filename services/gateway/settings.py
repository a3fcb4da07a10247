"""The gateway's configuration, from GATEWAY_* environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", frozen=True)

    port: int = 50051
    embedder_url: str = "127.0.0.1:8001"
    search_address: str = "127.0.0.1:50052"
    catalog_address: str = "127.0.0.1:50053"
    rpc_timeout_seconds: float = Field(default=30.0, gt=0)
    embed_timeout_seconds: float = Field(default=120.0, gt=0)
    max_upload_bytes: int = Field(default=200 * 1024 * 1024, gt=0)
    max_duration_seconds: float = Field(default=3600.0, gt=0)
    max_query_duration_seconds: float = Field(default=600.0, gt=0)
    max_concurrent_ingests: int = Field(default=8, gt=0)
    decode_timeout_seconds: float = Field(default=60.0, gt=0)
    default_window_seconds: float = Field(default=2.0, ge=1.0, le=10.0)
    default_hop_seconds: float = Field(default=1.0, ge=0.25, le=10.0)
    default_score_threshold: float = Field(default=0.5, ge=-1.0, le=1.0)
    tags_per_recording: int = Field(default=5, ge=1, le=527)
    tag_floor: float = Field(default=0.0, ge=0.0, le=1.0)
    reconcile_interval_seconds: float = Field(default=30.0, gt=0)
    reconcile_grace_seconds: float = Field(default=120.0, ge=0)
