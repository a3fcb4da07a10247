"""Typed settings from the environment, validated once at start-up."""

from __future__ import annotations

import sys
from typing import TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

SettingsT = TypeVar("SettingsT", bound=BaseSettings)


class ServiceSettings(BaseSettings):
    """Fields every gRPC service has; each service subclasses it with its own env prefix."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = 0
    max_workers: int = 16
    grace_seconds: float = 10.0
    log_level: str = "INFO"


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
