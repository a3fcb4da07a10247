"""The schema: versioned migrations applied once, safely when replicas start together."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from audiosearch.catalog.database import Database, SQLiteDialect
from audiosearch.catalog.migrations import applied_versions, apply_migrations, load_migrations, split_statements
from devtools.support.mysql import MySQLServer, temporary_database

EXPECTED_TABLES = {"schema_migrations", "collections", "audio", "segments", "audio_tags", "audio_metadata",
                   "landmarks", "collection_landmarks"}


def table_names(database: Database) -> set[str]:
    query = (
        "SELECT name FROM sqlite_master WHERE type = 'table'"
        if database.dialect.name == "sqlite"
        else "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()"
    )
    with database.transaction() as tx:
        return {row[0] for row in tx.fetchall(query)} - {"sqlite_sequence"}


def test_migrations_apply_once_and_a_second_run_changes_nothing(fresh_dsn: str) -> None:
    database = Database.open(fresh_dsn)
    try:
        every_version = [migration.version for migration in load_migrations(database.dialect.name)]

        first = apply_migrations(database)
        second = apply_migrations(database)

        assert first == every_version
        assert second == []
        assert applied_versions(database) == every_version
        assert table_names(database) == EXPECTED_TABLES
    finally:
        database.close()


def test_replicas_starting_together_migrate_once_between_them(fresh_dsn: str) -> None:
    replicas = [Database.open(fresh_dsn) for _ in range(4)]
    barrier = threading.Barrier(len(replicas))

    def start(database: Database) -> list[int]:
        barrier.wait()
        return apply_migrations(database)

    try:
        with ThreadPoolExecutor(len(replicas)) as pool:
            applied = list(pool.map(start, replicas))

        every_version = [migration.version for migration in load_migrations(replicas[0].dialect.name)]
        assert sorted(version for versions in applied for version in versions) == every_version
        assert applied_versions(replicas[0]) == every_version
    finally:
        for database in replicas:
            database.close()


def test_every_dialect_has_the_same_migration_versions() -> None:
    def versions(dialect: str) -> list[tuple[int, str]]:
        return [(migration.version, migration.name) for migration in load_migrations(dialect)]

    assert versions("mysql") == versions("sqlite")
    assert versions("mysql")[0] == (1, "initial")


def test_scripts_split_into_statements_without_their_comments() -> None:
    script = "-- a comment; with a semicolon\nCREATE TABLE a (x INT);\n\n  -- another\nCREATE TABLE b (y INT);\n"

    assert split_statements(script) == ("CREATE TABLE a (x INT)", "CREATE TABLE b (y INT)")


def test_connections_opening_a_fresh_sqlite_file_at_once_all_switch_it_to_wal(tmp_path) -> None:
    # Without the retry about 8 % of such rounds failed with "database is locked" (SQLite skips its busy handler
    # while another connection changes the journal mode).
    for round_number in range(50):
        dialect = SQLiteDialect(tmp_path / f"fresh-{round_number}.db")
        barrier = threading.Barrier(8)
        with ThreadPoolExecutor(8) as pool:
            modes = list(pool.map(journal_mode_on_connecting, [dialect] * 8, [barrier] * 8))
        assert modes == ["wal"] * 8


def journal_mode_on_connecting(dialect: SQLiteDialect, barrier: threading.Barrier) -> str:
    barrier.wait()
    connection = dialect.connect()
    try:
        return connection.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        connection.close()


def test_the_landmark_share_migration_runs_again_on_mysql_as_if_it_had_stopped_before_its_record(
    mysql_server: MySQLServer,
) -> None:
    # MySQL commits DDL as it goes: a catalog stopped between the ALTER and the schema_migrations row runs the
    # migration again on its next start, and that must change nothing.
    with temporary_database(mysql_server, prefix="audiosearch_test_fresh") as name:
        database = Database.open(mysql_server.dsn(name))
        try:
            apply_migrations(database)
            again = next(m for m in load_migrations("mysql") if m.name == "landmark_share")
            with database.transaction(write=True) as tx:
                for statement in again.statements:
                    tx.execute(statement)
            with database.transaction() as tx:
                columns = tx.fetchall("SELECT column_name FROM information_schema.columns WHERE table_schema ="
                                      " DATABASE() AND table_name = 'collection_landmarks'")
        finally:
            database.close()
    assert sorted(row[0] for row in columns) == ["collection", "landmark_share_threshold", "landmark_threshold"]


def test_the_landmark_index_migration_runs_again_on_mysql_without_changing_anything(mysql_server: MySQLServer) -> None:
    with temporary_database(mysql_server, prefix="audiosearch_test_fresh") as name:
        database = Database.open(mysql_server.dsn(name))
        try:
            apply_migrations(database)
            again = next(m for m in load_migrations("mysql") if m.name == "landmarks_by_time")
            with database.transaction(write=True) as tx:
                for statement in again.statements:
                    tx.execute(statement)
            with database.transaction() as tx:
                indexes = tx.fetchall("SELECT DISTINCT index_name FROM information_schema.statistics WHERE"
                                      " table_schema = DATABASE() AND table_name = 'landmarks'")
        finally:
            database.close()
    assert sorted(row[0] for row in indexes) == ["landmarks_audio_time", "landmarks_lookup"]
