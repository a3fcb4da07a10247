"""MySQL (pymysql) or SQLite (sqlite3) behind one small interface: a connection pool, transactions, and the
driver errors the store cares about (constraint violations, retryable conflicts, a lost server)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import random
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from urllib.parse import unquote, urlsplit

import pymysql
from pymysql.constants import CLIENT

from audiosearch.common.errors import Unavailable

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
Params = Sequence[Any]

_MYSQL_STRICT_MODE = "SET SESSION sql_mode = 'STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'"
_MYSQL_CONFLICT_CODES = {1205, 1213}
_MYSQL_CONNECTION_CODES = {1040, 1053, 1152, 1927, 4031}
_SQLITE_CONFLICT_NAMES = {"SQLITE_BUSY", "SQLITE_LOCKED"}


class ConstraintViolation(Exception):
    """A unique or foreign-key constraint refused a write; the transaction was rolled back."""


class RetryableConflict(Unavailable):
    """A deadlock, lock wait timeout or busy database; the transaction was rolled back and may be retried."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"catalog database conflict, retry: {detail}")


class DatabaseUnavailable(Unavailable):
    def __init__(self, detail: str) -> None:
        super().__init__(f"catalog database unavailable: {detail}")


class Dialect(ABC):
    """What differs between the two databases; everything else is shared SQL with `?` placeholders."""

    name: str

    @abstractmethod
    def connect(self) -> Any: ...

    @abstractmethod
    def begin(self, connection: Any, write: bool) -> None: ...

    @abstractmethod
    def is_alive(self, connection: Any) -> bool: ...

    @abstractmethod
    def translate_error(self, error: BaseException) -> Exception | None:
        """The store-level exception for a driver error, or None to let it pass unchanged."""

    @abstractmethod
    def migration_lock(self) -> contextlib.AbstractContextManager[None]: ...

    @abstractmethod
    def describe(self) -> str:
        """Where the data lives, without credentials."""

    def sql(self, statement: str) -> str:
        return statement


@dataclass(frozen=True)
class MySQLDialect(Dialect):
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str = ""
    connect_timeout: float = 10.0
    query_timeout: float = 60.0
    lock_timeout_seconds: int = 120
    name = "mysql"

    def connect(self) -> Any:
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=self.database,
            charset="utf8mb4",
            autocommit=False,
            client_flag=CLIENT.FOUND_ROWS,
            connect_timeout=self.connect_timeout,
            read_timeout=self.query_timeout,
            write_timeout=self.query_timeout,
            init_command=_MYSQL_STRICT_MODE,
        )

    def begin(self, connection: Any, write: bool) -> None:
        connection.begin()

    def is_alive(self, connection: Any) -> bool:
        try:
            connection.ping()
        except pymysql.err.Error:
            return False
        return True

    def translate_error(self, error: BaseException) -> Exception | None:
        if isinstance(error, pymysql.err.IntegrityError):
            return ConstraintViolation(str(error))
        if isinstance(error, pymysql.err.InterfaceError):
            return DatabaseUnavailable(str(error))
        if isinstance(error, pymysql.err.OperationalError):
            code = error.args[0] if error.args else 0
            if code in _MYSQL_CONFLICT_CODES:
                return RetryableConflict(str(error))
            if code >= 2000 or code in _MYSQL_CONNECTION_CODES:
                return DatabaseUnavailable(str(error))
        return None

    @contextlib.contextmanager
    def migration_lock(self) -> Iterator[None]:
        """GET_LOCK on a connection of its own, so that replicas starting together migrate one at a time."""
        lock_name = "audiosearch_catalog_" + hashlib.sha256(self.database.encode()).hexdigest()[:32]
        connection = self.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT GET_LOCK(%s, %s)", (lock_name, self.lock_timeout_seconds))
                (acquired,) = cursor.fetchone()
                if acquired != 1:
                    raise DatabaseUnavailable(f"migration lock not acquired in {self.lock_timeout_seconds} s")
                try:
                    yield
                finally:
                    cursor.execute("SELECT RELEASE_LOCK(%s)", (lock_name,))
        finally:
            connection.close()

    def describe(self) -> str:
        return f"mysql://{self.host}:{self.port}/{self.database}"

    def sql(self, statement: str) -> str:
        return _format_paramstyle(statement)


@functools.lru_cache(maxsize=512)
def _format_paramstyle(statement: str) -> str:
    return statement.replace("%", "%%").replace("?", "%s")


SQLITE_CACHE_KIB = 512


@dataclass(frozen=True)
class SQLiteDialect(Dialect):
    path: Path
    busy_timeout: float = 30.0
    name = "sqlite"

    def connect(self) -> Any:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        self._enable_wal(connection)
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("PRAGMA foreign_keys = ON")
        # Each pooled connection has a page cache of its own (2 MB by default, 32 MB over the pool), which fills
        # as the landmark table grows; the kernel's page cache, shared by all of them, holds the file anyway.
        connection.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
        return connection

    def _enable_wal(self, connection: Any) -> None:
        # Switching a fresh file to WAL needs an exclusive lock, and SQLite answers "database is locked" at once,
        # without its busy handler, when another connection switches it at the same moment (replicas starting
        # together): retry until the busy timeout.
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                connection.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def begin(self, connection: Any, write: bool) -> None:
        connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    def is_alive(self, connection: Any) -> bool:
        return True

    def translate_error(self, error: BaseException) -> Exception | None:
        if isinstance(error, sqlite3.IntegrityError):
            return ConstraintViolation(str(error))
        if isinstance(error, sqlite3.OperationalError) and error.sqlite_errorname in _SQLITE_CONFLICT_NAMES:
            return RetryableConflict(str(error))
        return None

    def migration_lock(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def describe(self) -> str:
        return f"sqlite:///{self.path.resolve()}"


def dialect_from_dsn(dsn: str, connect_timeout: float = 10.0) -> Dialect:
    """`mysql://user:pass@host:port/db` or `sqlite:///relative/file.db` / `sqlite:////absolute/file.db`."""
    scheme, _, rest = dsn.partition("://")
    if scheme in {"mysql", "mysql+pymysql"}:
        return _mysql_dialect(dsn, connect_timeout)
    if scheme == "sqlite" and rest.startswith("/") and len(rest) > 1:
        path = rest[1:]
        if path == ":memory:":
            raise ValueError("an in-memory SQLite database cannot be shared between connections")
        return SQLiteDialect(Path(path))
    raise ValueError("expected mysql://user:password@host:port/database or sqlite:///path/to/file.db")


def _mysql_dialect(dsn: str, connect_timeout: float) -> MySQLDialect:
    parts = urlsplit(dsn)
    database = unquote(parts.path.lstrip("/"))
    if not parts.hostname or not database:
        raise ValueError("a MySQL DSN needs a host and a database: mysql://user:password@host:port/database")
    return MySQLDialect(
        host=parts.hostname,
        port=parts.port or 3306,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        database=database,
        connect_timeout=connect_timeout,
    )


class Transaction:
    """Statements inside one transaction, written with `?` placeholders for both databases."""

    def __init__(self, cursor: Any, dialect: Dialect) -> None:
        self._cursor = cursor
        self._dialect = dialect

    def execute(self, statement: str, params: Params = ()) -> int:
        """Runs one statement; returns the rows an UPDATE or DELETE matched (changed or not)."""
        self._cursor.execute(self._dialect.sql(statement), tuple(params))
        return int(self._cursor.rowcount)

    def executemany(self, statement: str, rows: Sequence[Params]) -> None:
        if rows:
            self._cursor.executemany(self._dialect.sql(statement), [tuple(row) for row in rows])

    def fetchone(self, statement: str, params: Params = ()) -> tuple[Any, ...] | None:
        self.execute(statement, params)
        row = self._cursor.fetchone()
        return tuple(row) if row is not None else None

    def fetchall(self, statement: str, params: Params = ()) -> list[tuple[Any, ...]]:
        self.execute(statement, params)
        return [tuple(row) for row in self._cursor.fetchall()]


class _Lease:
    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.broken = False


class _Pool:
    """At most `size` connections, each used by one thread at a time; dead ones are replaced on checkout."""

    def __init__(self, dialect: Dialect, size: int, wait_seconds: float) -> None:
        self._dialect = dialect
        self._slots = threading.BoundedSemaphore(size)
        self._wait_seconds = wait_seconds
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False

    @contextlib.contextmanager
    def lease(self) -> Iterator[_Lease]:
        if not self._slots.acquire(timeout=self._wait_seconds):
            raise DatabaseUnavailable(f"no free connection within {self._wait_seconds} s")
        try:
            lease = _Lease(self._checkout())
            try:
                yield lease
            finally:
                self._checkin(lease)
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            _close_quietly(connection)

    def _checkout(self) -> Any:
        with self._lock:
            connection = self._idle.pop() if self._idle else None
        if connection is not None and self._dialect.is_alive(connection):
            return connection
        if connection is not None:
            log.info("replacing a dead database connection")
            _close_quietly(connection)
        return self._connect()

    def _connect(self) -> Any:
        try:
            return self._dialect.connect()
        except Exception as error:
            translated = self._dialect.translate_error(error)
            if translated is None:
                raise
            raise translated from error

    def _checkin(self, lease: _Lease) -> None:
        with self._lock:
            keep = not lease.broken and not self._closed
            if keep:
                self._idle.append(lease.connection)
        if not keep:
            _close_quietly(lease.connection)


def _close_quietly(connection: Any) -> None:
    with contextlib.suppress(Exception):
        connection.close()


class Database:
    """A pool of connections to one database and the transactions run on them."""

    def __init__(self, dialect: Dialect, pool_size: int = 16, pool_wait_seconds: float = 30.0) -> None:
        self.dialect = dialect
        self._pool = _Pool(dialect, pool_size, pool_wait_seconds)

    @classmethod
    def open(cls, dsn: str, pool_size: int = 16, connect_timeout: float = 10.0) -> Database:
        return cls(dialect_from_dsn(dsn, connect_timeout), pool_size)

    @contextlib.contextmanager
    def transaction(self, write: bool = False) -> Iterator[Transaction]:
        """Commits when the block ends, rolls back when it raises; driver errors come out translated.

        `write` takes SQLite's write lock at once, so that concurrent writers queue instead of failing."""
        with self._pool.lease() as lease:
            connection = lease.connection
            try:
                self.dialect.begin(connection, write)
                cursor = connection.cursor()
                try:
                    yield Transaction(cursor, self.dialect)
                    connection.commit()
                finally:
                    cursor.close()
            except BaseException as error:
                lease.broken = not _rolled_back(connection)
                translated = self.dialect.translate_error(error)
                if translated is None:
                    raise
                raise translated from error

    def migration_lock(self) -> contextlib.AbstractContextManager[None]:
        return self.dialect.migration_lock()

    def close(self) -> None:
        self._pool.close()


def _rolled_back(connection: Any) -> bool:
    try:
        connection.rollback()
    except Exception:  # noqa: BLE001 - a connection that cannot roll back is dropped, not reused
        return False
    return True


def retry_on_conflict(attempts: int = 4, base_delay: float = 0.02) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Re-runs a whole unit of work that the database rolled back because of a deadlock or a busy lock."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def retried(*args: P.args, **kwargs: P.kwargs) -> R:
            for attempt in range(attempts - 1):
                try:
                    return function(*args, **kwargs)
                except RetryableConflict:
                    time.sleep(base_delay * 2**attempt * (1 + random.random()))
            return function(*args, **kwargs)

        return retried

    return decorate
