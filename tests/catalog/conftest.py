"""The catalog under test, on SQLite and on the real MySQL/MariaDB server: every store and gRPC test runs
against both. One database per backend per session; tests isolate themselves by unique collection names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from pydantic import SecretStr

from audiosearch.catalog.database import Database
from audiosearch.catalog.migrations import apply_migrations
from audiosearch.catalog.records import Collection
from audiosearch.catalog.server import CatalogSettings, build_server
from audiosearch.catalog.store import CatalogStore
from audiosearch.catalog.v1 import catalog_pb2_grpc
from audiosearch.common.grpc_server import RunningServer
from devtools.support.mysql import MySQLServer, require_server, temporary_database
from tests.catalog.builders import new_collection

BACKENDS = ["sqlite", "mysql"]


def sqlite_dsn(folder: Path) -> str:
    return f"sqlite:///{folder / 'catalog.db'}"


@pytest.fixture(scope="session")
def mysql_server() -> MySQLServer:
    return require_server()


@pytest.fixture(scope="session")
def mysql_session_dsn(mysql_server: MySQLServer) -> Iterator[str]:
    with temporary_database(mysql_server) as name:
        yield mysql_server.dsn(name)


@pytest.fixture(scope="session", params=BACKENDS)
def dsn(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return sqlite_dsn(tmp_path_factory.mktemp("catalog"))
    return request.getfixturevalue("mysql_session_dsn")


@pytest.fixture(params=BACKENDS)
def fresh_dsn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of its own, for tests of the schema itself."""
    if request.param == "sqlite":
        yield sqlite_dsn(tmp_path)
        return
    server = request.getfixturevalue("mysql_server")
    with temporary_database(server, prefix="audiosearch_test_fresh") as name:
        yield server.dsn(name)


@pytest.fixture(scope="session")
def database(dsn: str) -> Iterator[Database]:
    database = Database.open(dsn)
    apply_migrations(database)
    yield database
    database.close()


@pytest.fixture(scope="session")
def store(database: Database) -> CatalogStore:
    return CatalogStore(database)


@pytest.fixture
def collection(store: CatalogStore) -> Collection:
    return store.create_collection(new_collection())


@pytest.fixture(scope="session")
def catalog_server(dsn: str) -> Iterator[RunningServer]:
    running = build_server(CatalogSettings(host="127.0.0.1", port=0, dsn=SecretStr(dsn), max_workers=16))
    yield running
    running.stop(grace=1.0)


@pytest.fixture(scope="session")
def catalog_channel(catalog_server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(catalog_server.address) as channel:
        yield channel


@pytest.fixture(scope="session")
def catalog(catalog_channel: grpc.Channel) -> catalog_pb2_grpc.CatalogServiceStub:
    return catalog_pb2_grpc.CatalogServiceStub(catalog_channel)
