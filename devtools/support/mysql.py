"""The MySQL/MariaDB server tests run against, and throwaway databases on it.

`AUDIOSEARCH_TEST_MYSQL` (default `mysql://root@127.0.0.1:3306`) names the server. When it cannot be reached,
tests that need it fail with a message saying how to start it, or skip if `AUDIOSEARCH_ALLOW_NO_MYSQL=1`."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

import pymysql
import pytest

SERVER_ENV = "AUDIOSEARCH_TEST_MYSQL"
ALLOW_MISSING_ENV = "AUDIOSEARCH_ALLOW_NO_MYSQL"
DEFAULT_SERVER = "mysql://root@127.0.0.1:3306"
START_HINT = "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd"


@dataclass(frozen=True)
class MySQLServer:
    host: str
    port: int
    user: str
    password: str

    def dsn(self, database: str) -> str:
        credentials = quote(self.user, safe="") + (f":{quote(self.password, safe='')}" if self.password else "")
        return f"mysql://{credentials}@{self.host}:{self.port}/{database}"

    def connect(self, database: str | None = None) -> pymysql.connections.Connection:
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=database,
            charset="utf8mb4",
            autocommit=True,
            connect_timeout=5,
        )


def configured_server() -> MySQLServer:
    parts = urlsplit(os.environ.get(SERVER_ENV, DEFAULT_SERVER))
    return MySQLServer(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
    )


def require_server() -> MySQLServer:
    """The test server, checked reachable; fails the test (or skips, when allowed) if it is not."""
    server = configured_server()
    try:
        server.connect().close()
    except pymysql.err.Error as error:
        message = (
            f"MySQL/MariaDB test server {server.host}:{server.port} unreachable ({error}). "
            f"Start it (e.g. `{START_HINT}`), point {SERVER_ENV} at one, "
            f"or set {ALLOW_MISSING_ENV}=1 to skip the MySQL tests."
        )
        if os.environ.get(ALLOW_MISSING_ENV) == "1":
            pytest.skip(message)
        pytest.fail(message, pytrace=False)
    return server


@contextlib.contextmanager
def temporary_database(server: MySQLServer, prefix: str = "audiosearch_test") -> Iterator[str]:
    """A new empty utf8mb4 database, dropped afterwards; yields its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with contextlib.closing(server.connect()) as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    try:
        yield name
    finally:
        with contextlib.closing(server.connect()) as connection, connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
