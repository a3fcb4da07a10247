"""Session-wide real servers: MariaDB database, Milvus servers, Triton embedder and the four services.

Started once per test run. In CI (CI=true) nothing is skipped: a server that cannot start fails the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.suite import RunningSuite, SuitePorts, plan_suite, start_suite
from devtools.support.milvus import start_milvus_lite_server, start_milvus_server
from devtools.support.mysql import require_server, temporary_database


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = start_milvus_server(tmp_path_factory.mktemp("milvus-server"))
    try:
        yield server.uri
    finally:
        server.stop()


@pytest.fixture(scope="session")
def landmark_milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Milvus that holds sparse vectors, for the landmark index (devtools/support/milvus.py says why)."""
    server = start_milvus_lite_server(tmp_path_factory.mktemp("milvus-lite-server"))
    try:
        yield server.uri
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mysql_dsn() -> Iterator[str]:
    server = require_server()
    with temporary_database(server, prefix="audiosearch_e2e") as database:
        yield server.dsn(database)


@pytest.fixture(scope="session")
def import_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The suite gateway's only server-side import root (GATEWAY_IMPORT_ROOTS)."""
    return tmp_path_factory.mktemp("import-root")


@pytest.fixture(scope="session")
def suite(tmp_path_factory: pytest.TempPathFactory, milvus_server: str, landmark_milvus_server: str, mysql_dsn: str,
          import_root: Path) -> Iterator[RunningSuite]:
    state_dir: Path = tmp_path_factory.mktemp("suite")
    ports = SuitePorts.free()
    overrides = {"CATALOG_DSN": mysql_dsn, "SEARCH_MILVUS_URI": milvus_server,
                 "SEARCH_LANDMARK_MILVUS_URI": landmark_milvus_server, "EMBEDDER_UNTRAINED": "true",
                 "GATEWAY_RECONCILE_GRACE_SECONDS": "5", "GATEWAY_RECONCILE_INTERVAL_SECONDS": "2",
                 "GATEWAY_UPLOAD_IDLE_SECONDS": "8", "GATEWAY_IMPORT_ROOTS": str(import_root)}
    running = start_suite(plan_suite(state_dir, ports, overrides), state_dir / "logs", timeout_seconds=600)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def gateway_address(suite: RunningSuite) -> str:
    return suite.gateway_address


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.nodeid or "gateway_address" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


os.environ.setdefault("AUDIOSEARCH_TESTING", "1")
