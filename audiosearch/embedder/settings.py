"""Embedder settings, from `EMBEDDER_*` environment variables, validated before anything starts."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, FilePath, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from audiosearch.common.settings import check_server_tls
from audiosearch.embedder.checkpoint import SHA256_PATTERN

Port = int


class EmbedderSettings(BaseSettings):
    """`EMBEDDER_<FIELD>`; e.g. EMBEDDER_CHECKPOINT_PATH, EMBEDDER_UNTRAINED=true, EMBEDDER_GRPC_PORT=8001."""

    model_config = SettingsConfigDict(env_prefix="EMBEDDER_", extra="ignore", frozen=True)

    checkpoint_path: Path | None = None
    checkpoint_sha256: str | None = None
    untrained: bool = False
    seed: int = Field(default=0, ge=0)

    host: str = "127.0.0.1"
    grpc_port: Port = Field(default=8001, ge=1, le=65535)
    http_port: Port = Field(default=8000, ge=1, le=65535)
    metrics_port: Port = Field(default=8002, ge=1, le=65535)

    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "float32", "float16", "bfloat16", "int8"] = Field(
        default="auto",
        description="auto: float16 on a GPU, bfloat16 on a CPU with AMX, float32 elsewhere; int8 (CPU only) is a "
        "model identity of its own",
    )
    channels_last: Literal["auto", "true", "false"] = "auto"
    compile: bool = False
    instance_count: int = Field(
        default=0, ge=0, le=16, description="model instances; 0: one on a GPU, two on a CPU of two cores or more"
    )
    num_threads: int = Field(default=0, ge=0, description="torch threads per instance; 0: cores / instances")
    max_queue_delay_us: int = Field(default=5000, ge=0, le=1_000_000)
    max_batch_size: int = Field(default=64, ge=1, le=4096, description="windows per request and per batch")
    batch_seconds: float = Field(default=64.0, gt=0, description="audio per forward pass; bounds memory")
    max_input_seconds: float = Field(default=60.0, gt=0)
    waveform_dtype: Literal["float16", "float32"] = Field(
        default="float16", description="datatype of the `waveform` input; gateways read it from the model config"
    )
    centering_components: int = Field(default=4, ge=0, le=32)

    # TLS on Triton's gRPC endpoint: a certificate and key turn it on; a client CA makes it mutual (the gateway
    # presents its certificate). The plaintext HTTP endpoint then answers health probes only.
    tls_cert_file: FilePath | None = None
    tls_key_file: FilePath | None = None
    tls_client_ca_file: FilePath | None = None

    state_dir: Path = Path("var/embedder")
    exit_timeout_seconds: int = Field(default=15, ge=0)
    log_level: str = "INFO"

    @field_validator("checkpoint_sha256")
    @classmethod
    def _sha256_hex(cls, value: str | None) -> str | None:
        if not value:
            return None
        value = value.strip().lower()
        if not SHA256_PATTERN.match(value):
            raise ValueError("must be 64 hexadecimal characters")
        return value

    @field_validator("checkpoint_path", mode="before")
    @classmethod
    def _empty_path_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _distinct_ports(self) -> EmbedderSettings:
        if len({self.grpc_port, self.http_port, self.metrics_port}) != 3:
            raise ValueError("grpc_port, http_port and metrics_port must differ")
        return self

    @model_validator(mode="after")
    def _tls_is_complete(self) -> EmbedderSettings:
        check_server_tls(self.tls_cert_file, self.tls_key_file, self.tls_client_ca_file)
        return self
