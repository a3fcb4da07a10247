"""The web process's configuration, from WEB_* environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from audiosearch.common.grpc_server import MAX_MESSAGE_BYTES
from audiosearch.common.settings import ServiceSettings


class WebSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="WEB_", extra="ignore", frozen=True)

    port: int = 8080
    gateway_address: str = "127.0.0.1:50051"
    timeout_seconds: float = Field(default=30.0, gt=0)
    audio_timeout_seconds: float = Field(default=120.0, gt=0)
    ingest_timeout_seconds: float = Field(default=600.0, gt=0)
    upload_chunk_bytes: int = Field(default=256 * 1024, ge=1024, le=4 * 1024 * 1024)
    # A query clip travels in one gRPC message; larger ones are refused here with 413.
    max_clip_bytes: int = Field(default=MAX_MESSAGE_BYTES - 1024 * 1024, gt=0, le=MAX_MESSAGE_BYTES - 1024)
