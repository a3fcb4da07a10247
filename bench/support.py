"""What the throughput, latency and scale benches share: their own suite on free ports, Prometheus scrapes,
percentiles, the machine's load, and the dev sounds."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from devtools.suite import DEFAULT_CHECKPOINT, REPO_ROOT, RunningSuite, SuitePorts, plan_suite, start_suite
from devtools.support.milvus import start_milvus_lite_server, start_milvus_server
from devtools.support.mysql import MySQLServer, configured_server, temporary_database
from devtools.support.processes import process_tree, stat_fields

DEFAULT_SOUNDS = Path("/tmp/dev-sounds")
FETCH_HINT = "get the dev sounds with `scripts/fetch-dev-sounds.sh /tmp/dev-sounds`"
AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".aiff", ".aif", ".wv"}


def checkpoint_env() -> dict[str, str]:
    """The real weights where the repository has them (var/models), else the suite picks untrained ones."""
    repo_checkpoint = REPO_ROOT / "var" / DEFAULT_CHECKPOINT
    if "EMBEDDER_CHECKPOINT_PATH" not in os.environ and repo_checkpoint.exists():
        return {"EMBEDDER_CHECKPOINT_PATH": str(repo_checkpoint)}
    return {}


@dataclasses.dataclass
class BenchSuite:
    suite: RunningSuite
    ports: SuitePorts
    state_dir: Path

    @property
    def gateway(self) -> str:
        return self.suite.gateway_address

    def address(self, name: str) -> str:
        return next(plan.health_address for plan in self.suite.plans if plan.name == name).removeprefix("triton:")

    def env(self, name: str) -> dict[str, str]:
        return next(plan.env for plan in self.suite.plans if plan.name == name)


@contextlib.contextmanager
def own_suite(overrides: dict[str, str] | None = None, keep_state: bool = False) -> Iterator[BenchSuite]:
    """A fresh suite (Milvus Lite, SQLite, Triton) on free ports in a temporary state directory.

    `overrides` are service settings (EMBEDDER_*, GATEWAY_*, ...) given to the service they name.
    """
    state_dir = Path(tempfile.mkdtemp(prefix="audiosearch-bench-"))
    ports = SuitePorts.free()
    plans = plan_suite(state_dir, ports, {**checkpoint_env(), **(overrides or {})})
    print(f"starting a suite in {state_dir}", file=sys.stderr)
    suite: RunningSuite | None = None
    try:
        suite = start_suite(plans, state_dir / "logs", timeout_seconds=900)
        yield BenchSuite(suite, ports, state_dir)
    finally:
        if suite is not None:
            suite.stop()
        if not keep_state:  # also when the suite did not start: its error carries the end of the failed log
            shutil.rmtree(state_dir, ignore_errors=True)


def key_values(items: list[str], option: str) -> dict[str, str]:
    """KEY=VALUE arguments of `option` as a dict."""
    pairs = [item.split("=", 1) for item in items]
    if any(len(pair) != 2 for pair in pairs):
        raise SystemExit(f"{option} takes KEY=VALUE")
    return dict(pairs)


def machine() -> dict[str, object]:
    load = os.getloadavg()
    return {"cpus": os.cpu_count(), "load_average_1m": round(load[0], 2), "load_average_5m": round(load[1], 2)}


def sound_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise SystemExit(f"no folder {folder}; {FETCH_HINT}")
    files = sorted(path for path in folder.iterdir() if path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise SystemExit(f"no audio files in {folder}; {FETCH_HINT}")
    return files


def shared_load_note(before: dict[str, object], after: dict[str, object]) -> str:
    """The load before the run is other work's; during it the bench itself keeps the CPUs busy."""
    cpus = int(before["cpus"] or 1)
    others = float(before["load_average_1m"])
    text = f"load average {others:.1f} before the run, {float(after['load_average_1m']):.1f} after, on {cpus} CPUs"
    if others > cpus * 0.25:
        return (f"NOTE: {text}: other work shared the machine, so these rates are depressed "
                "(measured under shared load)")
    return f"{text} (a quiet machine)"


@contextlib.contextmanager
def milvus(uri: str | None, config: dict[str, str | int | float] | None = None) -> Iterator[tuple[str, int | None]]:
    """(uri, pid of the server to measure, when started here with milvus.yaml overrides `config`). A Milvus 2.3.5
    server holds vectors only: a search service whose collections keep landmarks needs `milvus_servers`."""
    if uri:
        yield uri, None
        return
    with tempfile.TemporaryDirectory(prefix="audiosearch-milvus-") as folder:
        server = start_milvus_server(Path(folder), config=config)
        try:
            yield server.uri, server.process.pid
        finally:
            server.stop()


@dataclasses.dataclass(frozen=True)
class MilvusServers:
    """A Milvus server for the vectors (the `milvus` package's 2.3.5) and, beside it, `milvus-lite server` for the
    landmark index: 2.3.5 has no sparse vectors."""

    uri: str
    pid: int
    landmark_uri: str
    landmark_pid: int

    def search_env(self) -> dict[str, str]:
        """The search service's settings that put its vectors and its landmark index on these servers."""
        return {"SEARCH_MILVUS_URI": self.uri, "SEARCH_LANDMARK_MILVUS_URI": self.landmark_uri}


@contextlib.contextmanager
def milvus_servers(config: dict[str, str | int | float] | None = None) -> Iterator[MilvusServers]:
    """Both servers started here, in a temporary folder (milvus.yaml overrides `config` for the vectors' one)."""
    with tempfile.TemporaryDirectory(prefix="audiosearch-milvus-") as folder, contextlib.ExitStack() as stack:
        server = start_milvus_server(Path(folder) / "server", config=config)
        stack.callback(server.stop)
        landmark_server = start_milvus_lite_server(Path(folder) / "landmarks")
        stack.callback(landmark_server.stop)
        yield MilvusServers(server.uri, server.process.pid, landmark_server.uri, landmark_server.process.pid)


@dataclasses.dataclass(frozen=True)
class MySQLCatalog:
    dsn: str
    pid: int | None  # the server's, when it runs on this machine
    server: MySQLServer

    def buffer_pool_bytes(self) -> int:
        """Bytes of InnoDB's buffer pool holding pages now (data and InnoDB's own). Pages it frees stay resident, so
        this is not the pool's share of the server's RSS."""
        status = self._status("Innodb_buffer_pool_pages_data", "Innodb_buffer_pool_pages_misc", "Innodb_page_size")
        page_size = int(status.pop("Innodb_page_size"))
        return sum(int(pages) for pages in status.values()) * page_size

    def memory_used_bytes(self) -> int | None:
        """MariaDB's own count of the memory it has allocated (`Memory_used`; its buffer pool's whole size from the
        start), or None where the server does not report it (MySQL)."""
        value = self._status("Memory_used").get("Memory_used")
        return int(value) if value is not None else None

    def _status(self, *names: str) -> dict[str, str]:
        query = "SHOW GLOBAL STATUS WHERE Variable_name IN (" + ", ".join(["%s"] * len(names)) + ")"
        with contextlib.closing(self.server.connect()) as connection, connection.cursor() as cursor:
            cursor.execute(query, names)
            return {str(name): str(value) for name, value in cursor.fetchall()}


@contextlib.contextmanager
def mysql_catalog() -> Iterator[MySQLCatalog]:
    """A fresh database on the MySQL/MariaDB server AUDIOSEARCH_TEST_MYSQL names, dropped afterwards."""
    server = configured_server()
    with temporary_database(server, prefix="audiosearch_bench") as name:
        yield MySQLCatalog(server.dsn(name), local_pid(("mariadbd", "mysqld")), server)


def local_pid(names: tuple[str, ...]) -> int | None:
    """The pid of a process on this machine whose command name is one of `names` (from /proc), or None."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() in names:
                    return int(entry.name)
    return None


def tree_rss_bytes(pid: int | None) -> int | None:
    """Resident memory of a process and all its descendants (from /proc)."""
    if pid is None:
        return None
    return sum(rss for _, rss in filter(None, map(process_rss, process_tree(pid))))


def process_rss(pid: int) -> tuple[str, int] | None:
    """A process's command name and resident bytes (from /proc), or None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status if ":" in line)
    return fields["Name"].strip(), int(fields.get("VmRSS", "0 kB").split()[0]) * 1024


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) that a process and its descendants have used so far (from /proc): the living
    ones' own, and what each has collected from the children it reaped (the gateway's ffmpeg decoders)."""
    ticks = 0
    for current in process_tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            ticks += sum(int(field) for field in stat_fields(current)[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")
