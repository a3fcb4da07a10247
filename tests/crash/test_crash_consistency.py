"""Crash consistency: kill -9 every service, Milvus and MariaDB while four clients ingest and delete.

The test runs a suite of its own (it kills things): a fresh MariaDB database, its own `milvus-server` and the
four services on free ports, with the reconciler every second and a 3 s grace. Four clients ingest a few hundred
generated clips, retrying what a crash interrupts, while a fifth deletes some acknowledged ones; meanwhile the
gateway, the embedder (launcher and tritonserver), search, catalog, the Milvus server and MariaDB are each
killed with SIGKILL and restarted. Afterwards the stores must agree: every acknowledged ingest READY, listed and
found, no vector without a READY record, no READY record without its vectors, nothing PENDING or DELETING,
one record per file when the failed ingests are retried, the deleted ones gone everywhere.

MariaDB is shared with the other tests on a machine, so the server itself is killed only when
AUDIOSEARCH_CRASH_KILL_MYSQL=1 (CI sets it); otherwise every connection of the test's database is killed
server-side for a few seconds, which the catalog sees the same way.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pymysql
import pytest

from audiosearch.catalog.v1 import catalog_pb2 as cpb
from audiosearch.catalog.v1 import catalog_pb2_grpc
from audiosearch.search.v1 import search_pb2 as spb
from audiosearch.search.v1 import search_pb2_grpc
from audiosearch.v1 import audiosearch_pb2 as pb
from audiosearch.v1 import audiosearch_pb2_grpc
from devtools.suite import ServicePlan, SuitePorts, plan_suite, start_service, wait_healthy
from devtools.support import sounds
from devtools.support.gateway import ensure_collection, ingest_messages
from devtools.support.milvus import MilvusServer, start_milvus_lite_server, start_milvus_server
from devtools.support.mysql import MySQLServer, require_server, temporary_database

pytestmark = [pytest.mark.integration, pytest.mark.crash]

KILL_MYSQL_ENV = "AUDIOSEARCH_CRASH_KILL_MYSQL"
COLLECTION = "crash"
CLIENTS = 4
MIN_FILES = 160  # the clients go on until the kills are over, and at least this many files were tried
MAX_FILES = 400
RATE = 16_000
GRACE_S = 3.0
INTERVAL_S = 1.0
ORPHAN_SWEEP_S = 2.0
RETRY_FOR_S = 90.0  # how long a client keeps retrying one ingest or delete before calling it failed
ACKS_BETWEEN_KILLS = 8  # acknowledged ingests between two kills, so that every kill hits a loaded suite
VICTIMS = ["gateway", "embedder", "search", "catalog", "milvus", "mysql"]
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED, grpc.StatusCode.DEADLINE_EXCEEDED,
             grpc.StatusCode.RESOURCE_EXHAUSTED}
# Clients reconnect within a second of a restart instead of gRPC's default backoff of up to two minutes.
CLIENT_OPTIONS = [("grpc.max_reconnect_backoff_ms", 1000), ("grpc.initial_reconnect_backoff_ms", 200)]
MYSQLD = "/usr/sbin/mariadbd"


# The suite under test, with its own Milvus server and database, and the kills.


@dataclass
class CrashSuite:
    plans: dict[str, ServicePlan]
    log_dir: Path
    milvus: MilvusServer
    mysql: MySQLServer
    database: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    kills: list[tuple[str, float]] = field(default_factory=list)  # (victim, seconds until healthy again)

    def address(self, name: str) -> str:
        return self.plans[name].health_address.removeprefix("triton:")

    def start(self, name: str, timeout_s: float = 600.0) -> None:
        process = start_service(self.plans[name], self.log_dir)
        self.processes[name] = process
        wait_healthy(self.plans[name], process, self.log_dir, timeout_s)

    def stop(self) -> None:
        for name in reversed(list(self.processes)):
            if self.processes[name].poll() is None:
                self.processes[name].send_signal(signal.SIGTERM)
        for name in reversed(list(self.processes)):
            try:
                self.processes[name].wait(30)
            except subprocess.TimeoutExpired:
                _kill_tree(self.processes[name].pid)
                self.processes[name].wait(10)

    def kill_and_restart(self, victim: str) -> None:
        started = time.monotonic()
        if victim == "milvus":
            os.killpg(self.milvus.process.pid, signal.SIGKILL)
            self.milvus.process.wait(30)
            time.sleep(1.0)
            self.milvus.restart()
        elif victim == "mysql":
            self._kill_mysql()
        else:
            process = self.processes[victim]
            _kill_tree(process.pid)
            process.wait(30)
            time.sleep(0.5)
            self.start(victim)
        self.kills.append((victim, round(time.monotonic() - started, 1)))

    def _kill_mysql(self) -> None:
        if os.environ.get(KILL_MYSQL_ENV) == "1":
            _kill_and_restart_mariadb(self.mysql)
        else:
            _kill_connections_for(self.mysql, self.database, seconds=4.0)


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    return children


def _kill_tree(pid: int) -> None:
    """SIGKILL to a process and every descendant (the embedder's tritonserver runs in a session of its own, and
    Triton's Python backend stubs under it); also frees the shared memory the stubs leave in /dev/shm."""
    children = _children()
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    shared_memory = [arg for member in tree for arg in _cmdline(member) if arg.startswith("triton_python_backend_shm")]
    for member in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(_alive(member) for member in tree[1:]) and time.monotonic() < deadline:
        time.sleep(0.1)
    for name in shared_memory:
        with contextlib.suppress(OSError):
            (Path("/dev/shm") / name).unlink()


def _cmdline(pid: int) -> list[str]:
    with contextlib.suppress(OSError):
        return [arg for arg in (Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")) if arg]
    return []


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "zombie" not in status.lower()


def _kill_and_restart_mariadb(server: MySQLServer) -> None:
    """kill -9 of mariadbd itself, then the start CI uses (with the arguments it ran with), until it pings."""
    with contextlib.closing(server.connect()) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT @@pid_file")
        (pid_file,) = cursor.fetchone()
    pid = int(Path(pid_file).read_text().strip())
    arguments = _cmdline(pid)[1:]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    subprocess.run(["start-stop-daemon", "--start", "--oknodo", "--background", "--pidfile", pid_file,
                    "--exec", MYSQLD, "--", *arguments], check=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with contextlib.suppress(pymysql.err.Error):
            server.connect().close()
            return
        time.sleep(0.5)
    raise AssertionError("MariaDB did not come back within 120 s")


def _kill_connections_for(server: MySQLServer, database: str, seconds: float) -> None:
    """KILL CONNECTION for every connection on the test database, repeatedly for a while: to the catalog, the
    database is gone and back, as if the server had crashed (other databases on the server are left alone)."""
    deadline = time.monotonic() + seconds
    with contextlib.closing(server.connect()) as connection, connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT id FROM information_schema.processlist WHERE db = %s AND id <> CONNECTION_ID()",
                           (database,))
            for (connection_id,) in cursor.fetchall():
                with contextlib.suppress(pymysql.err.Error):
                    cursor.execute(f"KILL CONNECTION {int(connection_id)}")
            time.sleep(0.1)


# The clips: distinct content (kind, seed and a tone at a random frequency), 1 to 3.2 s long.


@dataclass(frozen=True)
class Clip:
    number: int
    name: str
    data: bytes


def make_clip(number: int) -> Clip:
    rng = random.Random(number)
    seconds = rng.uniform(1.0, 3.2)
    kind = sounds.KINDS[number % len(sounds.KINDS)]
    base = sounds.synth(kind, seconds=seconds, rate=RATE, seed=number)
    t = np.arange(len(base)) / RATE
    tone = np.sin(2 * np.pi * rng.uniform(120.0, 6000.0) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1, 7) * t))
    samples = (0.6 * base + 0.25 * tone).astype(np.float32)
    return Clip(number, f"clip-{number:04d}-{kind}.wav", sounds.to_bytes(samples, RATE, "WAV", "PCM_16"))


# The load: clients that ingest with retries, and a deleter.


@dataclass
class Outcome:
    acknowledged: dict[str, str] = field(default_factory=dict)  # clip name -> audio id
    failed: dict[str, str] = field(default_factory=dict)  # clip name -> last error
    clips: dict[str, Clip] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)  # audio ids whose delete was acknowledged (twice)
    delete_failed: set[str] = field(default_factory=set)
    conflicting_acks: list[str] = field(default_factory=list)  # one clip acknowledged under two ids
    retried_calls: int = 0
    errors_seen: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note_error(self, error: grpc.RpcError) -> None:
        with self.lock:
            key = error.code().name
            self.errors_seen[key] = self.errors_seen.get(key, 0) + 1


def with_retries(call: Callable[[], object], outcome: Outcome, retry_for_s: float = RETRY_FOR_S) -> object:
    deadline = time.monotonic() + retry_for_s
    delay = 0.2
    while True:
        try:
            return call()
        except grpc.RpcError as error:
            outcome.note_error(error)
            if error.code() not in RETRYABLE or time.monotonic() > deadline:
                raise
            with outcome.lock:
                outcome.retried_calls += 1
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 1.5, 2.0)


class Load:
    def __init__(self, gateway_address: str, outcome: Outcome) -> None:
        self._channel = grpc.insecure_channel(gateway_address, options=CLIENT_OPTIONS)
        self._client = audiosearch_pb2_grpc.AudioSearchServiceStub(self._channel)
        self._outcome = outcome
        self._numbers = itertools.count()
        self._numbers_lock = threading.Lock()
        self.kills_done = threading.Event()
        self.aborted = threading.Event()  # the run failed: take no new work (the threads are daemons)
        self._ingesters_done = threading.Event()
        self._threads = [threading.Thread(target=self._ingest_loop, name=f"client-{i}", daemon=True)
                         for i in range(CLIENTS)]
        self._deleter = threading.Thread(target=self._delete_loop, name="deleter", daemon=True)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()
        self._deleter.start()

    def join(self) -> None:
        for thread in self._threads:
            thread.join()
        self._ingesters_done.set()
        self._deleter.join()
        self._channel.close()

    def acknowledged_count(self) -> int:
        with self._outcome.lock:
            return len(self._outcome.acknowledged)

    def _next_clip(self) -> Clip | None:
        with self._numbers_lock:
            number = next(self._numbers)
        if self.aborted.is_set() or number >= MAX_FILES or (number >= MIN_FILES and self.kills_done.is_set()):
            return None
        return make_clip(number)

    def _ingest_loop(self) -> None:
        while (clip := self._next_clip()) is not None:
            with self._outcome.lock:
                self._outcome.clips[clip.name] = clip
            try:
                reply = with_retries(lambda clip=clip: self._client.IngestAudio(
                    iter(ingest_messages(COLLECTION, clip.name, clip.data)), timeout=60), self._outcome)
            except grpc.RpcError as error:
                with self._outcome.lock:
                    self._outcome.failed[clip.name] = f"{error.code().name}: {error.details()}"
                continue
            with self._outcome.lock:
                known = self._outcome.acknowledged.setdefault(clip.name, reply.audio.id)
                if known != reply.audio.id:
                    self._outcome.conflicting_acks.append(clip.name)

    def _delete_loop(self) -> None:
        """About one acknowledged ingest in eight is deleted, each twice (the second must succeed as well)."""
        rng = random.Random(7)
        while not self._ingesters_done.wait(1.5) and not self.aborted.is_set():
            with self._outcome.lock:
                candidates = sorted(set(self._outcome.acknowledged.values()) - self._outcome.deleted
                                    - self._outcome.delete_failed)
                wanted = len(self._outcome.acknowledged) // 8 - len(self._outcome.deleted)
            if not candidates or wanted <= 0:
                continue
            audio_id = rng.choice(candidates)
            request = pb.DeleteAudioRequest(collection=COLLECTION, audio_id=audio_id)
            try:
                for _ in range(2):
                    with_retries(lambda request=request: self._client.DeleteAudio(request, timeout=30),
                                 self._outcome)
            except grpc.RpcError:
                with self._outcome.lock:
                    self._outcome.delete_failed.add(audio_id)
                continue
            with self._outcome.lock:
                self._outcome.deleted.add(audio_id)


# The run, once for the module; the tests below read what it left.


@dataclass
class Aftermath:
    outcome: Outcome
    suite: CrashSuite
    records: list[pb.AudioRecord]  # every record in the catalog, any status, after the retries
    records_before_retries: list[pb.AudioRecord]
    vector_ids: list[str]  # audio ids with vectors, after the retries
    vector_counts: dict[str, int]  # per READY record
    retried: dict[str, pb.IngestAudioResponse]
    probe_id: str
    probe_purged: bool
    reconciled_from_log: set[str]
    timings: dict[str, float]
    client: audiosearch_pb2_grpc.AudioSearchServiceStub
    search: search_pb2_grpc.VectorSearchServiceStub


@pytest.fixture(scope="module")
def aftermath(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Aftermath]:
    mysql = require_server()
    root = tmp_path_factory.mktemp("crash")
    started = time.monotonic()
    timings: dict[str, float] = {}
    milvus = start_milvus_server(root / "milvus")
    landmark_milvus = start_milvus_lite_server(root / "milvus-lite")
    try:
        with temporary_database(mysql, prefix="audiosearch_crash") as database:
            suite = _start_suite(root, milvus, landmark_milvus.uri, mysql, database)
            timings["start"] = time.monotonic() - started
            try:
                yield _run(suite, timings, started)
            finally:
                suite.stop()
    finally:
        milvus.stop()
        landmark_milvus.stop()


def _start_suite(root: Path, milvus: MilvusServer, landmark_milvus_uri: str, mysql: MySQLServer, database: str
                 ) -> CrashSuite:
    ports = SuitePorts.free()
    overrides = {"CATALOG_DSN": mysql.dsn(database), "SEARCH_MILVUS_URI": milvus.uri,
                 "SEARCH_LANDMARK_MILVUS_URI": landmark_milvus_uri, "EMBEDDER_UNTRAINED": "true",
                 "GATEWAY_RECONCILE_GRACE_SECONDS": str(GRACE_S),
                 "GATEWAY_RECONCILE_INTERVAL_SECONDS": str(INTERVAL_S),
                 "GATEWAY_RECONCILE_ORPHAN_INTERVAL_SECONDS": str(ORPHAN_SWEEP_S),
                 "SEARCH_PROBE_INTERVAL_SECONDS": "1", "CATALOG_DB_STARTUP_WAIT_SECONDS": "120"}
    plans = {plan.name: plan for plan in plan_suite(root / "state", ports, overrides)}
    suite = CrashSuite(plans, root / "logs", milvus, mysql, database)
    try:
        for name in ("embedder", "search", "catalog", "gateway"):
            suite.start(name)
    except BaseException:
        suite.stop()
        raise
    return suite


def _run(suite: CrashSuite, timings: dict[str, float], started: float) -> Aftermath:
    gateway_channel = grpc.insecure_channel(suite.address("gateway"), options=CLIENT_OPTIONS)
    client = audiosearch_pb2_grpc.AudioSearchServiceStub(gateway_channel)
    search = search_pb2_grpc.VectorSearchServiceStub(grpc.insecure_channel(suite.address("search"),
                                                                           options=CLIENT_OPTIONS))
    catalog = catalog_pb2_grpc.CatalogServiceStub(grpc.insecure_channel(suite.address("catalog"),
                                                                        options=CLIENT_OPTIONS))
    dimension = ensure_collection(client, COLLECTION).model.embedding_dim
    outcome = Outcome()
    load = Load(suite.address("gateway"), outcome)
    load.start()
    try:
        for victim in VICTIMS:
            _wait_for_acks(load, load.acknowledged_count() + ACKS_BETWEEN_KILLS)
            suite.kill_and_restart(victim)
    except BaseException:
        load.aborted.set()
        raise
    load.kills_done.set()
    load.join()
    timings["chaos"] = time.monotonic() - started - timings["start"]

    for audio_id in sorted(outcome.delete_failed):  # the suite is whole again: these must go through now
        with_retries(lambda audio_id=audio_id: client.DeleteAudio(
            pb.DeleteAudioRequest(collection=COLLECTION, audio_id=audio_id), timeout=30), outcome)
        outcome.deleted.add(audio_id)
    probe_id, probe_purged = _reconciler_purges_a_stale_pending_record(catalog, search, dimension)
    _wait_until_settled(catalog)
    records_before = _all_records(catalog)
    retried = {}
    for name in sorted(outcome.failed):
        clip = outcome.clips[name]
        retried[name] = with_retries(lambda clip=clip: client.IngestAudio(
            iter(ingest_messages(COLLECTION, clip.name, clip.data)), timeout=60), outcome)
    records = _all_records(catalog)
    vector_ids = list(search.ListAudioIds(spb.ListAudioIdsRequest(collection=COLLECTION), timeout=60).audio_ids)
    vector_counts = {
        record.id: search.CountSegments(spb.CountSegmentsRequest(collection=COLLECTION, audio_id=record.id),
                                        timeout=30).count
        for record in records if record.status == pb.AUDIO_STATUS_READY
    }
    timings["total"] = time.monotonic() - started
    return Aftermath(outcome, suite, records, records_before, vector_ids, vector_counts, retried, probe_id,
                     probe_purged, _reconciled_ids(suite.log_dir / "gateway.log"), timings, client, search)


def _wait_for_acks(load: Load, target: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while load.acknowledged_count() < target and time.monotonic() < deadline:
        time.sleep(0.2)


def _reconciler_purges_a_stale_pending_record(catalog: catalog_pb2_grpc.CatalogServiceStub,
                                              search: search_pb2_grpc.VectorSearchServiceStub,
                                              dimension: int) -> tuple[str, bool]:
    """What a gateway that died between the vectors and READY leaves: a PENDING record with its vectors."""
    audio = pb.AudioRecord(collection=COLLECTION, name="probe.wav", sha256="f" * 64, duration_seconds=1.0,
                           sample_rate_hz=RATE, channels=1, codec="wav/pcm_16", size_bytes=1, segment_count=1)
    segment = cpb.Segment(index=0, range=pb.TimeRange(start_seconds=0.0, end_seconds=1.0))
    created = catalog.CreateAudio(cpb.CreateAudioRequest(audio=audio, segments=[segment]), timeout=30)
    vector = np.zeros(dimension, dtype="<f4")
    vector[0] = 1.0
    search.UpsertSegments(spb.UpsertSegmentsRequest(collection=COLLECTION, segments=[spb.SegmentVector(
        segment_id=created.segments[0].segment_id, audio_id=created.audio.id, start_seconds=0.0, end_seconds=1.0,
        vector=vector.tobytes())]), timeout=30)
    assert search.CountSegments(spb.CountSegmentsRequest(collection=COLLECTION, audio_id=created.audio.id),
                                timeout=30).count == 1
    deadline = time.monotonic() + GRACE_S + 30 * INTERVAL_S
    while time.monotonic() < deadline:
        time.sleep(INTERVAL_S)
        try:
            catalog.GetAudio(cpb.GetAudioRequest(collection=COLLECTION, audio_id=created.audio.id), timeout=10)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:
                raise
            count = search.CountSegments(spb.CountSegmentsRequest(collection=COLLECTION, audio_id=created.audio.id),
                                         timeout=30).count
            return created.audio.id, count == 0
    return created.audio.id, False


def _wait_until_settled(catalog: catalog_pb2_grpc.CatalogServiceStub, timeout_s: float = 60.0) -> None:
    """Until no record is PENDING or DELETING (the reconciler's grace plus a few passes), or the timeout."""
    time.sleep(GRACE_S + 2 * INTERVAL_S)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(record.status == pb.AUDIO_STATUS_READY for record in _all_records(catalog)):
            return
        time.sleep(INTERVAL_S)


def _all_records(catalog: catalog_pb2_grpc.CatalogServiceStub) -> list[pb.AudioRecord]:
    records: list[pb.AudioRecord] = []
    token = ""
    while True:
        page = catalog.ListAudio(cpb.ListAudioRequest(collection=COLLECTION, page_size=500, page_token=token),
                                 timeout=30)
        records.extend(page.audios)
        token = page.next_page_token
        if not token:
            return records


def _reconciled_ids(log_path: Path) -> set[str]:
    ids = set()
    for line in log_path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("msg") == "reconciled" and entry.get("audio_id"):
                ids.add(entry["audio_id"])
    return ids


def _list_ready(client: audiosearch_pb2_grpc.AudioSearchServiceStub) -> list[pb.AudioRecord]:
    records: list[pb.AudioRecord] = []
    token = ""
    while True:
        page = client.ListAudio(pb.ListAudioRequest(collection=COLLECTION, page_size=100, page_token=token),
                                timeout=30)
        records.extend(page.audios)
        token = page.next_page_token
        if not token:
            return records


# What must hold afterwards.


def test_every_service_was_killed_under_load_and_came_back(aftermath):
    outcome = aftermath.outcome
    print(f"\ncrash run: {len(outcome.clips)} clips, {len(outcome.acknowledged)} acknowledged, "
          f"{len(outcome.failed)} failed, {len(outcome.deleted)} deleted, {outcome.retried_calls} retried calls, "
          f"errors {outcome.errors_seen}, kills {aftermath.suite.kills}, "
          f"timings { {key: round(value) for key, value in aftermath.timings.items()} }")
    assert [victim for victim, _ in aftermath.suite.kills] == VICTIMS
    assert len(outcome.clips) >= MIN_FILES
    assert len(outcome.acknowledged) >= len(outcome.clips) // 2
    assert outcome.retried_calls > 0, "no kill interrupted an ingest"


def test_every_acknowledged_ingest_is_ready_listed_and_found_first(aftermath):
    outcome = aftermath.outcome
    expected = {name: audio_id for name, audio_id in outcome.acknowledged.items() if audio_id not in outcome.deleted}
    by_id = {record.id: record for record in aftermath.records}
    assert not outcome.conflicting_acks
    missing = {name: audio_id for name, audio_id in expected.items()
               if audio_id not in by_id or by_id[audio_id].status != pb.AUDIO_STATUS_READY}
    assert not missing, f"acknowledged but not READY: {missing}"
    listed = {record.id for record in _list_ready(aftermath.client)}
    assert set(expected.values()) <= listed

    def top_matches(name: str) -> list[tuple[str, str, float]]:
        reply = with_retries(lambda: aftermath.client.SearchAudio(pb.SearchAudioRequest(
            collection=COLLECTION, audio_content=outcome.clips[name].data, top_k=3), timeout=60), outcome)
        return [(match.audio.id, match.audio.name, round(match.score, 4)) for match in reply.matches]

    with ThreadPoolExecutor(CLIENTS) as pool:  # concurrent queries share the embedder's batches
        found = dict(zip(sorted(expected), pool.map(top_matches, sorted(expected)), strict=True))
    not_first = {name: matches for name, matches in found.items() if not matches or matches[0][0] != expected[name]}
    assert not not_first, f"not found first by its own bytes: {list(not_first.items())[:10]}"


def test_no_vector_exists_without_a_ready_record(aftermath):
    ready = {record.id for record in aftermath.records if record.status == pb.AUDIO_STATUS_READY}
    orphans = set(aftermath.vector_ids) - ready
    assert not orphans, f"vectors without a READY record: {sorted(orphans)}"


def test_every_ready_record_has_exactly_its_vectors(aftermath):
    wrong = {record.id: (record.segment_count, aftermath.vector_counts[record.id])
             for record in aftermath.records
             if record.status == pb.AUDIO_STATUS_READY and aftermath.vector_counts[record.id] != record.segment_count}
    assert not wrong, f"READY records whose vector count differs from segment_count: {wrong}"


def test_no_pending_or_deleting_record_is_left(aftermath):
    for records in (aftermath.records_before_retries, aftermath.records):
        stuck = [(record.name, pb.AudioStatus.Name(record.status)) for record in records
                 if record.status != pb.AUDIO_STATUS_READY]
        assert not stuck


def test_retrying_the_failed_ingests_yields_one_record_each(aftermath):
    outcome = aftermath.outcome
    names = [record.name for record in aftermath.records]
    duplicates = {name for name in names if names.count(name) > 1}
    assert not duplicates
    sha256s = [record.sha256 for record in aftermath.records]
    assert len(sha256s) == len(set(sha256s))
    deleted_names = {name for name, audio_id in outcome.acknowledged.items() if audio_id in outcome.deleted}
    assert set(names) == set(outcome.clips) - deleted_names
    for name, reply in aftermath.retried.items():
        assert reply.audio.status == pb.AUDIO_STATUS_READY
        assert reply.audio.name == name


def test_deleted_recordings_are_gone_everywhere(aftermath):
    outcome = aftermath.outcome
    assert outcome.deleted, "no delete ran during the kills"
    assert not outcome.deleted & {record.id for record in aftermath.records}
    assert not outcome.deleted & set(aftermath.vector_ids)
    for audio_id in sorted(outcome.deleted):
        count = aftermath.search.CountSegments(spb.CountSegmentsRequest(collection=COLLECTION, audio_id=audio_id),
                                               timeout=30).count
        assert count == 0
        with pytest.raises(grpc.RpcError) as failure:
            aftermath.client.GetAudio(pb.GetAudioRequest(collection=COLLECTION, audio_id=audio_id), timeout=30)
        assert failure.value.code() == grpc.StatusCode.NOT_FOUND
        aftermath.client.DeleteAudio(pb.DeleteAudioRequest(collection=COLLECTION, audio_id=audio_id), timeout=30)


def test_the_reconciler_resolved_what_the_crashes_left(aftermath):
    assert aftermath.probe_purged, "a stale PENDING record with a vector was not purged by the reconciler"
    assert aftermath.probe_id in aftermath.reconciled_from_log, "the gateway log does not show the probe reconciled"
    crash_left = aftermath.reconciled_from_log - {aftermath.probe_id}
    print(f"\nthe reconciler resolved {len(crash_left)} records the crashes left PENDING or DELETING")
