"""Typed settings from the environment, validated once at start-up."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TypeVar

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def check_server_tls(cert_file: Path | None, key_file: Path | None, client_ca_file: Path | None) -> None:
    """A server's TLS settings: certificate and key together; a client CA (mTLS) only on top of them."""
    if (cert_file is None) != (key_file is None):
        raise ValueError("tls_cert_file and tls_key_file go together")
    if client_ca_file is not None and cert_file is None:
        raise ValueError("tls_client_ca_file (mTLS) needs tls_cert_file and tls_key_file")


class ServiceSettings(BaseSettings):
    """Fields every gRPC service has; each service subclasses it with its own env prefix."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = 0
    max_workers: int = 16
    grace_seconds: float = 10.0
    log_level: str = "INFO"
    metrics_port: int = Field(default=0, ge=0, le=65535, description="Prometheus /metrics over HTTP; 0: off")
    # A plaintext port that answers grpc.health.v1 and nothing else, for probes that cannot present a client
    # certificate (the kubelet's gRPC probes) when the main port requires one; -1: none, 0: any free port.
    health_port: int = Field(default=-1, ge=-1, le=65535)
    # TLS: a certificate and its key make the server speak TLS only; a client CA on top requires every client to
    # present a certificate it signed (mTLS), and a list of names admits only those clients (certificate CN or DNS
    # SAN, comma-separated; e.g. "gateway"), which is how an internal service trusts only the gateway.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    tls_allowed_client_names: str = ""

    @model_validator(mode="after")
    def _tls_is_complete(self) -> ServiceSettings:
        check_server_tls(self.tls_cert_file, self.tls_key_file, self.tls_client_ca_file)
        if self.allowed_client_names() and self.tls_client_ca_file is None:
            raise ValueError("tls_allowed_client_names needs tls_client_ca_file (client certificates)")
        for path in (self.tls_cert_file, self.tls_key_file, self.tls_client_ca_file):
            if path is not None and not path.is_file():
                raise ValueError(f"{path} is not a readable file")
        return self

    def allowed_client_names(self) -> frozenset[str]:
        return frozenset(name.strip() for name in self.tls_allowed_client_names.split(",") if name.strip())


def load_settings(settings_class: type[SettingsT]) -> SettingsT:
    """Reads settings from the environment, or exits with one readable line per bad value."""
    try:
        return settings_class()
    except ValidationError as error:
        prefix = settings_class.model_config.get("env_prefix", "")
        lines = [f"invalid configuration for {settings_class.__name__}:"]
        for problem in error.errors():
            field = ".".join(str(part) for part in problem["loc"])
            lines.append(f"  {prefix}{field.upper()}: {problem['msg']} (got {problem.get('input')!r})")
        sys.exit("\n".join(lines))
