"""Versioned schema migrations: `<dialect>/NNNN_name.sql`, the same versions for every dialect.

Each is applied once, recorded in `schema_migrations`, under a lock that makes replicas starting together
take turns; statements are idempotent (`IF NOT EXISTS`) because MySQL commits DDL as it goes."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from importlib import resources

from audiosearch.catalog.database import Database, Transaction

log = logging.getLogger(__name__)

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_SCHEMA_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
  version INTEGER NOT NULL PRIMARY KEY,
  name VARCHAR(255) NOT NULL,
  applied_time_us BIGINT NOT NULL
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def load_migrations(dialect: str) -> list[Migration]:
    folder = resources.files(__name__).joinpath(dialect)
    migrations = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            statements = split_statements(entry.read_text(encoding="utf-8"))
            migrations.append(Migration(int(match[1]), match[2], statements))
    return sorted(migrations, key=lambda migration: migration.version)


def split_statements(script: str) -> tuple[str, ...]:
    """Statements of a script without `--` comment lines; the scripts hold no `;` inside literals."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return tuple(statement.strip() for statement in "\n".join(lines).split(";") if statement.strip())


def apply_migrations(database: Database) -> list[int]:
    """Brings the schema up to date; returns the versions applied now (none when it already was)."""
    applied = []
    with database.migration_lock():
        with database.transaction(write=True) as tx:
            tx.execute(_SCHEMA_MIGRATIONS)
        for migration in load_migrations(database.dialect.name):
            with database.transaction(write=True) as tx:
                if _is_applied(tx, migration.version):
                    continue
                _apply(tx, migration)
            applied.append(migration.version)
            log.info("schema migration applied", extra={"version": migration.version, "migration": migration.name})
    return applied


def applied_versions(database: Database) -> list[int]:
    with database.transaction() as tx:
        return [row[0] for row in tx.fetchall("SELECT version FROM schema_migrations ORDER BY version")]


def _is_applied(tx: Transaction, version: int) -> bool:
    return tx.fetchone("SELECT 1 FROM schema_migrations WHERE version = ?", (version,)) is not None


def _apply(tx: Transaction, migration: Migration) -> None:
    for statement in migration.statements:
        tx.execute(statement)
    tx.execute(
        "INSERT INTO schema_migrations (version, name, applied_time_us) VALUES (?, ?, ?)",
        (migration.version, migration.name, time.time_ns() // 1000),
    )
