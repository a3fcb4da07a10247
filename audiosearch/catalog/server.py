"""The catalog service's composition root: settings → database and migrations → store → gRPC server."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable

import grpc
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from audiosearch.catalog.database import Database, DatabaseUnavailable, dialect_from_dsn
from audiosearch.catalog.migrations import apply_migrations
from audiosearch.catalog.servicer import SERVICE_NAME, CatalogServicer
from audiosearch.catalog.store import CatalogStore
from audiosearch.catalog.v1 import catalog_pb2_grpc
from audiosearch.common.grpc_server import RunningServer, serve_until_signalled, start_server
from audiosearch.common.logs import configure_logging
from audiosearch.common.settings import ServiceSettings, load_settings

log = logging.getLogger(__name__)


class CatalogSettings(ServiceSettings):
    """`CATALOG_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="CATALOG_")

    port: int = 50053
    dsn: SecretStr = Field(
        default=SecretStr("sqlite:///var/catalog.db"),
        description="mysql://user:password@host:3306/database, or sqlite:///relative.db / sqlite:////abs.db",
    )
    db_pool_size: int = Field(default=16, ge=1, description="connections kept open; one per gRPC worker is plenty")
    db_connect_timeout_seconds: float = Field(default=10.0, gt=0)
    db_startup_wait_seconds: float = Field(default=60.0, ge=0, description="how long to wait for the database at start")
    migrate_on_start: bool = True


def open_database(settings: CatalogSettings) -> Database:
    """Connects, waiting a while for a database that is still starting, and migrates the schema."""
    database = Database.open(
        settings.dsn.get_secret_value(), settings.db_pool_size, settings.db_connect_timeout_seconds
    )
    log.info("catalog database", extra={"database": database.dialect.describe()})
    if settings.migrate_on_start:
        _migrate_when_reachable(database, settings.db_startup_wait_seconds)
    return database


def _migrate_when_reachable(database: Database, wait_seconds: float) -> None:
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            apply_migrations(database)
        except DatabaseUnavailable as error:
            if time.monotonic() >= deadline:
                raise
            log.warning("database not reachable yet", extra={"error": error.message})
            time.sleep(1.0)
        else:
            return


def build_server(settings: CatalogSettings) -> RunningServer:
    """Opens the database and starts serving; stopping the returned server closes the database."""
    database = open_database(settings)
    store = CatalogStore(database)

    def register(server: grpc.Server) -> Iterable[str]:
        catalog_pb2_grpc.add_CatalogServiceServicer_to_server(CatalogServicer(store), server)
        return [SERVICE_NAME]

    try:
        running = start_server(settings, register)
    except BaseException:
        database.close()
        raise
    running.on_stop.append(database.close)
    return running


def _check_dsn(settings: CatalogSettings) -> None:
    try:
        dialect_from_dsn(settings.dsn.get_secret_value())
    except ValueError as error:
        sys.exit(f"invalid configuration for CatalogSettings:\n  CATALOG_DSN: {error}")


def main() -> None:
    settings = load_settings(CatalogSettings)
    configure_logging("catalog", settings.log_level)
    _check_dsn(settings)
    serve_until_signalled(build_server(settings), settings.grace_seconds)


if __name__ == "__main__":
    main()
