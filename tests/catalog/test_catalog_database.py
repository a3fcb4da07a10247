"""Connections: DSNs, a lost MySQL connection replaced, an unreachable server reported as UNAVAILABLE."""

from __future__ import annotations

import contextlib
from pathlib import Path

import grpc
import pytest

from audiosearch.catalog.database import (
    SQLITE_CACHE_KIB,
    Database,
    DatabaseUnavailable,
    MySQLDialect,
    SQLiteDialect,
    dialect_from_dsn,
)
from audiosearch.catalog.migrations import apply_migrations
from audiosearch.catalog.store import CatalogStore
from devtools.support.mysql import MySQLServer, temporary_database
from tests.catalog.builders import new_audio, new_collection, new_segments


def test_mysql_dsn_names_host_port_credentials_and_database() -> None:
    dialect = dialect_from_dsn("mysql://cat%40log:p%3Ass@db.internal:3307/audiosearch")

    assert dialect == MySQLDialect("db.internal", 3307, "cat@log", "p:ss", "audiosearch")
    assert "p:ss" not in dialect.describe()


def test_mysql_dsn_port_defaults_to_3306() -> None:
    assert dialect_from_dsn("mysql://root@localhost/db") == MySQLDialect("localhost", 3306, "root", "", "db")


@pytest.mark.parametrize(
    ("dsn", "path"),
    [
        ("sqlite:///data/catalog.db", Path("data/catalog.db")),
        ("sqlite:////var/lib/catalog.db", Path("/var/lib/catalog.db")),
    ],
)
def test_sqlite_dsn_path_is_relative_after_three_slashes_and_absolute_after_four(dsn: str, path: Path) -> None:
    assert dialect_from_dsn(dsn) == SQLiteDialect(path)


def test_a_sqlite_connection_bounds_its_own_page_cache_and_runs_in_wal_mode(tmp_path: Path) -> None:
    connection = SQLiteDialect(tmp_path / "catalog.db").connect()

    assert connection.execute("PRAGMA cache_size").fetchone()[0] == -SQLITE_CACHE_KIB
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert connection.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    connection.close()


@pytest.mark.parametrize(
    "dsn", ["postgres://x@y/z", "mysql://host-only", "sqlite:///", "sqlite:///:memory:", "catalog.db"]
)
def test_unusable_dsn_is_refused(dsn: str) -> None:
    with pytest.raises(ValueError, match=r"mysql://|sqlite|memory"):
        dialect_from_dsn(dsn)


def test_unreachable_mysql_is_unavailable() -> None:
    database = Database.open("mysql://root@127.0.0.1:1/nothing", connect_timeout=2)

    with pytest.raises(DatabaseUnavailable) as caught, database.transaction():
        pass

    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert caught.value.reason == "DEPENDENCY_UNAVAILABLE"


def _kill_connections_to(server: MySQLServer, database_name: str) -> int:
    with contextlib.closing(server.connect()) as admin, admin.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM information_schema.processlist WHERE db = %s AND id <> CONNECTION_ID()", (database_name,)
        )
        ids = [row[0] for row in cursor.fetchall()]
        for connection_id in ids:
            cursor.execute("KILL CONNECTION %s", (connection_id,))
    return len(ids)


def test_store_carries_on_after_mysql_drops_its_connections(mysql_server: MySQLServer) -> None:
    with temporary_database(mysql_server, prefix="audiosearch_test_reconnect") as name:
        database = Database.open(mysql_server.dsn(name), pool_size=4)
        try:
            apply_migrations(database)
            store = CatalogStore(database)
            collection = store.create_collection(new_collection())
            store.create_audio(new_audio(collection.name), new_segments(2))

            assert _kill_connections_to(mysql_server, name) >= 1

            created = store.create_audio(new_audio(collection.name), new_segments(2))
            assert created.created
            assert len(store.list_audio(collection.name).items) == 2
        finally:
            database.close()
