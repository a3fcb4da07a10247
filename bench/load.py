"""Load test: concurrent clients mixing search, ingest and delete against one suite for minutes on end.

    python -m bench.load [--sounds DIR] [--clients 16] [--minutes 10] [--search-share 0.7]
                         [--interval 30] [--milvus lite|server] [--catalog sqlite|mysql]
                         [--gateway ADDR --pids PID...] [--json [FILE]]

Starts its own suite (Milvus Lite, SQLite, Triton; as `make run`; --milvus server and --catalog mysql put a Milvus
server started here (the `milvus` package's 2.3.5, with `milvus-lite server` beside it for the landmark index, which
needs sparse vectors) and a fresh database on the local MySQL/MariaDB server behind it, and watch their memory too)
unless --gateway is given, seeds a collection
with real sounds, then runs `--clients` clients, each one call at a time and on its own connection, until the time
is up. A call is a search (a 5 s excerpt of a seeded sound, `--search-share` of the calls) or an ingest of a fresh
recording (a dev sound at a random gain and in a random format, so no two uploads are the same bytes); each client
deletes its oldest own recording once it holds more than KEPT_PER_CLIENT, so the collection stays the same size
and memory has no reason to grow.

Per interval it prints the calls, p50 and p99 latency per kind and the resident memory of every service (the
process and its children: the embedder counts tritonserver and its Python-backend stubs). At the end: errors by
status (RESOURCE_EXHAUSTED is the gateway's deliberate load shedding and is counted apart), and each service's
memory after the warm-up: from its start to its end (means of MEMORY_SAMPLES readings at each end), and its
trend (a straight line fitted to every reading, its rise over the window). Memory that swings in a sawtooth
(a collector, a store merging its files) moves the first figure by where in a swing the window ends; a leak
moves both. Exits 1 when any other error occurred or a service's trend rose more than MEMORY_GROWTH_LIMIT.
With --catalog mysql the server's RSS is judged, and reported beside it: its InnoDB buffer pool's pages in use, and on
MariaDB the memory the server counts as allocated (`Memory_used`). Beside the RSS of each gRPC service on jemalloc,
reported and not judged, what its allocator counts as allocated (`audiosearch_heap_bytes`, from its /metrics): a
heap that stays flat while the RSS rises is the allocator keeping freed memory, not a leak.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import soundfile

from audiosearch.common.metrics import HEAP_SERIES
from audiosearch.gateway.audio.decoding import AudioError, decode_audio
from audiosearch.v1 import audiosearch_pb2 as pb
from audiosearch.v1 import audiosearch_pb2_grpc
from bench.metrics import emit, percentiles, scrape
from bench.search_latency import import_sounds, make_queries
from bench.support import (
    DEFAULT_SOUNDS,
    MySQLCatalog,
    machine,
    milvus_servers,
    mysql_catalog,
    own_suite,
    shared_load_note,
    sound_files,
    tree_rss_bytes,
)
from devtools.suite import SuitePorts
from devtools.support.gateway import ingest_messages

COLLECTION = "bench_load"
RATE = 32_000
KEPT_PER_CLIENT = 4
MEMORY_GROWTH_LIMIT = 0.10
MEMORY_SAMPLES = 3  # interval readings averaged at each end of the comparison
UPLOAD_FORMATS = (("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS"))
SHED_BACKOFF_SECONDS = (0.2, 0.6)


@dataclass
class Call:
    finished: float  # seconds since the start of the run
    kind: str
    latency_ms: float
    code: str


@dataclass
class Ledger:
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, call: Call) -> None:
        with self.lock:
            self.calls.append(call)

    def between(self, start: float, end: float) -> list[Call]:
        with self.lock:
            return [call for call in self.calls if start <= call.finished < end]


def upload_pool(files: list[Path], count: int, seed: int) -> list[np.ndarray]:
    """Decoded dev sounds (32 kHz mono) that the ingest calls re-encode with a fresh gain each time."""
    rng = random.Random(seed)
    pool: list[np.ndarray] = []
    for path in rng.sample(files, min(len(files), count * 2)):
        with contextlib.suppress(AudioError):
            pool.append(decode_audio(path.read_bytes(), RATE).samples)
        if len(pool) == count:
            break
    return pool


def fresh_upload(samples: np.ndarray, rng: random.Random) -> bytes:
    peak = float(np.max(np.abs(samples))) or 1.0
    gain = rng.uniform(0.3, 0.9) / peak
    file_format, subtype = rng.choice(UPLOAD_FORMATS)
    buffer = io.BytesIO()
    # Block by block: libsndfile's Vorbis writer overflows a thread's stack when handed a long sound in one call.
    with soundfile.SoundFile(buffer, "w", RATE, 1, format=file_format, subtype=subtype) as sink:
        for start in range(0, len(samples), RATE):
            sink.write(samples[start:start + RATE] * gain)
    return buffer.getvalue()


class Client:
    def __init__(self, index: int, gateway: str, queries: list[bytes], pool: list[np.ndarray],
                 search_share: float, ledger: Ledger, started: float, seed: int) -> None:
        self._index = index
        self._channel = grpc.insecure_channel(gateway)
        self._stub = audiosearch_pb2_grpc.AudioSearchServiceStub(self._channel)
        self._queries = queries
        self._pool = pool
        self._search_share = search_share
        self._ledger = ledger
        self._started = started
        self._rng = random.Random(seed * 1000 + index)
        self._own: collections.deque[str] = collections.deque()
        self._uploads = 0

    def run(self, deadline: float) -> None:
        try:
            while time.monotonic() < deadline:
                if self._rng.random() < self._search_share:
                    self._call("search", self._search)
                else:
                    self._call("ingest", self._ingest)
                    if len(self._own) > KEPT_PER_CLIENT:
                        self._call("delete", self._delete)
        finally:
            self._channel.close()

    def _call(self, kind: str, action: object) -> None:
        began = time.monotonic()
        code = "OK"
        try:
            action()  # type: ignore[operator]
        except grpc.RpcError as error:
            code = error.code().name
        finished = time.monotonic()
        self._ledger.add(Call(finished - self._started, kind, (finished - began) * 1000, code))
        if code == "RESOURCE_EXHAUSTED":
            time.sleep(self._rng.uniform(*SHED_BACKOFF_SECONDS))

    def _search(self) -> None:
        query = self._rng.choice(self._queries)
        self._stub.SearchAudio(pb.SearchAudioRequest(collection=COLLECTION, audio_content=query, top_k=10),
                               timeout=120)

    def _ingest(self) -> None:
        self._uploads += 1
        data = fresh_upload(self._rng.choice(self._pool), self._rng)
        name = f"load-{self._index}-{self._uploads}"
        reply = self._stub.IngestAudio(iter(ingest_messages(COLLECTION, name, data, {"source": "bench.load"})),
                                       timeout=120)
        self._own.append(reply.audio.id)

    def _delete(self) -> None:
        self._stub.DeleteAudio(pb.DeleteAudioRequest(collection=COLLECTION, audio_id=self._own[0]), timeout=60)
        self._own.popleft()


def interval_row(ledger: Ledger, start: float, end: float, memory: dict[str, int]) -> dict:
    calls = ledger.between(start, end)
    row: dict = {"end_seconds": round(end), "calls": len(calls),
                 "errors": sum(call.code not in ("OK", "RESOURCE_EXHAUSTED") for call in calls),
                 "shed": sum(call.code == "RESOURCE_EXHAUSTED" for call in calls),
                 "rss_mb": {name: round(value / 2**20) for name, value in memory.items()}}
    for kind in ("search", "ingest", "delete"):
        row[kind] = percentiles([call.latency_ms for call in calls if call.kind == kind and call.code == "OK"])
    return row


def column_width(name: str) -> int:
    return max(6, len(name))


def print_row(row: dict, services: list[str]) -> None:
    def cell(kind: str) -> str:
        value = row[kind]
        return f"{value['p50']:.0f}/{value['p99']:.0f}" if value else "-"

    memory = " ".join(f"{row['rss_mb'][name]:{column_width(name)}d}" for name in services)
    print(f"{row['end_seconds']:6d} {row['calls']:6d} {row['errors']:4d} {row['shed']:5d} {cell('search'):>12s} "
          f"{cell('ingest'):>12s} {cell('delete'):>10s}  {memory}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class MemorySeries:
    """Bytes read once per interval; a series not `judged` is reported but does not decide PASSED."""
    read: Callable[[], int]
    judged: bool = True


def process_memory(pid: int) -> MemorySeries:
    return MemorySeries(lambda: tree_rss_bytes(pid) or 0)


def mysql_memory(catalog: MySQLCatalog, pid: int) -> dict[str, MemorySeries]:
    """The server's RSS, judged; beside it, reported, its InnoDB buffer pool's pages in use and, on MariaDB, the
    memory the server counts as allocated, which holds the whole pool from the start: RSS rising below a flat count
    is the server touching memory it already holds."""
    series = {"mysql": process_memory(pid), "mysql-pool": MemorySeries(catalog.buffer_pool_bytes, judged=False)}
    if catalog.memory_used_bytes() is not None:
        series["mysql-alloc"] = MemorySeries(lambda: catalog.memory_used_bytes() or 0, judged=False)
    return series


def heap_memory(metrics_port: int) -> MemorySeries | None:
    """The bytes a service's allocator counts as allocated, or None where it does not export them (not on jemalloc)."""
    def read() -> int:
        return int(scrape(metrics_port).get((HEAP_SERIES, (("kind", "allocated"),)), 0))

    return MemorySeries(read, judged=False) if read() else None


def service_heaps(ports: SuitePorts) -> dict[str, MemorySeries]:
    ports_by_service = {"gateway": ports.gateway_metrics, "search": ports.search_metrics,
                        "catalog": ports.catalog_metrics}
    heaps = {f"{name}-heap": heap_memory(port) for name, port in ports_by_service.items()}
    return {name: series for name, series in heaps.items() if series is not None}


def read_memory(series: dict[str, MemorySeries]) -> dict[str, int]:
    return {name: item.read() for name, item in series.items()}


def run(args: argparse.Namespace, gateway: str, memory: dict[str, MemorySeries]) -> dict:
    files = sound_files(args.sounds)
    seeded = sorted(random.Random(args.seed).sample(files, min(args.seed_sounds, len(files))))
    print(f"seeding the collection with {len(seeded)} sounds ...", file=sys.stderr)
    summary = import_sounds(audiosearch_pb2_grpc.AudioSearchServiceStub(grpc.insecure_channel(gateway)), seeded,
                            COLLECTION)
    queries = make_queries(seeded, 32, args.seed)
    pool = upload_pool(files, 48, args.seed)
    services = sorted(memory)
    before = machine()
    ledger = Ledger()
    started = time.monotonic()
    deadline = started + args.minutes * 60
    clients = [Client(index, gateway, queries, pool, args.search_share, ledger, started, args.seed)
               for index in range(args.clients)]
    threads = [threading.Thread(target=client.run, args=(deadline,), daemon=True) for client in clients]
    for thread in threads:
        thread.start()
    print(f"{'t(s)':>6s} {'calls':>6s} {'err':>4s} {'shed':>5s} {'search p50/99':>12s} {'ingest p50/99':>12s} "
          f"{'delete':>10s}  " + " ".join(f"{name:>{column_width(name)}s}" for name in services) + "  (RSS MB)",
          file=sys.stderr)
    rows: list[dict] = []
    window_start = 0.0
    while any(thread.is_alive() for thread in threads):
        time.sleep(min(args.interval, max(0.5, deadline - time.monotonic() + 0.5)))
        now = time.monotonic() - started
        if now - window_start < args.interval and any(thread.is_alive() for thread in threads):
            continue
        rows.append(interval_row(ledger, window_start, now, read_memory(memory)))
        print_row(rows[-1], services)
        window_start = now
    for thread in threads:
        thread.join()
    now = time.monotonic() - started
    if ledger.between(window_start, now + 1):
        rows.append(interval_row(ledger, window_start, now + 1, read_memory(memory)))
    judged = sorted(name for name, item in memory.items() if item.judged)
    return summarise(args, ledger, rows, services, judged, summary, before)


def summarise(args: argparse.Namespace, ledger: Ledger, rows: list[dict], services: list[str], judged: list[str],
              seeded: pb.ImportProgress, before: dict) -> dict:
    calls = ledger.calls
    codes = collections.Counter(call.code for call in calls)
    settled = [row for row in rows if row["end_seconds"] >= args.warmup_seconds] or rows
    growth = {name: memory_growth([row["rss_mb"][name] for row in settled]) for name in services}
    errors = sum(count for code, count in codes.items() if code not in ("OK", "RESOURCE_EXHAUSTED"))
    wall = max(call.finished for call in calls) if calls else 0.0
    result = {
        "clients": args.clients, "minutes": args.minutes, "search_share": args.search_share,
        "seeded": {"files": seeded.files_ingested + seeded.files_already_existed,
                   "audio_seconds": seeded.audio_seconds},
        "calls": len(calls), "calls_per_second": len(calls) / wall if wall else 0.0,
        "codes": dict(codes), "errors": errors,
        "by_kind": {kind: {"calls": sum(call.kind == kind for call in calls),
                           **percentiles([call.latency_ms for call in calls
                                          if call.kind == kind and call.code == "OK"])}
                    for kind in ("search", "ingest", "delete")},
        "intervals": rows, "memory": growth, "memory_judged": judged, "machine_before": before,
        "machine_after": machine(),
    }
    result["passed"] = errors == 0 and all(growth[name]["trend"] <= MEMORY_GROWTH_LIMIT for name in judged)
    result["load_note"] = shared_load_note(before, result["machine_after"])
    return result


def memory_growth(samples_mb: list[int]) -> dict:
    """Growth from the first to the last MEMORY_SAMPLES samples after warm-up (means, so one noisy reading
    cannot decide), the trend (rise of a least-squares line through all the samples, taken at equal intervals,
    relative to where it starts), and the peak."""
    first = float(np.mean(samples_mb[:MEMORY_SAMPLES]))
    last = float(np.mean(samples_mb[-MEMORY_SAMPLES:]))
    slope, start = np.polyfit(np.arange(len(samples_mb)), np.asarray(samples_mb, dtype=np.float64), 1)
    return {"after_warmup_mb": round(first), "end_mb": round(last), "peak_mb": max(samples_mb),
            "growth": (last - first) / max(first, 1.0),
            "trend": float(slope * (len(samples_mb) - 1) / max(start, 1.0))}


def table(result: dict) -> str:
    lines = [f"{result['clients']} clients for {result['minutes']:g} min, {result['search_share']:.0%} searches, "
             f"Milvus {result.get('milvus', 'as given')}, catalog on {result.get('catalog', 'as given')}; "
             f"collection seeded with {result['seeded']['files']} sounds "
             f"({result['seeded']['audio_seconds']:.0f} s audio)",
             f"calls: {result['calls']} ({result['calls_per_second']:.2f}/s); by status: "
             + ", ".join(f"{code} {count}" for code, count in sorted(result["codes"].items())),
             f"errors other than RESOURCE_EXHAUSTED: {result['errors']}",
             f"{'kind':8s} {'calls':>6s} {'p50 ms':>8s} {'p99 ms':>8s}"]
    for kind, figures in result["by_kind"].items():
        lines.append(f"{kind:8s} {figures['calls']:6d} {figures.get('p50', 0):8.0f} {figures.get('p99', 0):8.0f}")
    lines.append("p99 over time (s: search / ingest ms): " + ", ".join(
        f"{row['end_seconds']}: {row['search'].get('p99', 0):.0f} / {row['ingest'].get('p99', 0):.0f}"
        for row in result["intervals"]))
    lines.append(f"memory (RSS MB; NAME-heap: MB its allocator counts as allocated; mean of {MEMORY_SAMPLES} readings) "
                 f"after warm-up -> end; trend over the window, "
                 f"limit +{MEMORY_GROWTH_LIMIT:.0%}:")
    for name, item in result["memory"].items():
        aside = "" if name in result["memory_judged"] else "  (reported, not judged)"
        lines.append(f"  {name:11s} {item['after_warmup_mb']:6d} -> {item['end_mb']:6d} ({item['growth']:+.1%}), "
                     f"trend {item['trend']:+.1%}, peak {item['peak_mb']}{aside}")
    lines.append("PASSED" if result["passed"] else "FAILED")
    lines.append(result["load_note"])
    return "\n".join(lines)


def run_own_suite(args: argparse.Namespace) -> dict:
    with contextlib.ExitStack() as stack:
        overrides: dict[str, str] = {}
        memory: dict[str, MemorySeries] = {}
        if args.milvus == "server":
            servers = stack.enter_context(milvus_servers())
            overrides.update(servers.search_env())
            memory["milvus"] = process_memory(servers.pid)
            memory["milvus-lite"] = process_memory(servers.landmark_pid)
        if args.catalog == "mysql":
            catalog = stack.enter_context(mysql_catalog())
            overrides["CATALOG_DSN"] = catalog.dsn
            if catalog.pid:
                memory.update(mysql_memory(catalog, catalog.pid))
        bench = stack.enter_context(own_suite(overrides))
        memory.update({plan.name: process_memory(process.pid)
                       for plan, process in zip(bench.suite.plans, bench.suite.processes, strict=True)})
        memory.update(service_heaps(bench.ports))
        return {**run(args, bench.gateway, memory), "milvus": args.milvus, "catalog": args.catalog}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sounds", type=Path, default=DEFAULT_SOUNDS, help="folder of sounds (default %(default)s)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--search-share", type=float, default=0.7, help="share of calls that search (0.7)")
    parser.add_argument("--seed-sounds", type=int, default=60, help="sounds in the collection before the load")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds per reported interval")
    parser.add_argument("--warmup-seconds", type=float, default=120.0, help="memory is compared from here on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gateway", help="a running gateway to use instead of starting a suite")
    parser.add_argument("--pids", nargs="*", default=[], metavar="NAME=PID",
                        help="with --gateway: the services whose memory to watch")
    parser.add_argument("--milvus", choices=["lite", "server"], default="lite",
                        help="the suite's vector store: Milvus Lite in the search service (as `make run`), or a "
                             "Milvus standalone server started here, with a milvus-lite server for the landmark "
                             "index (as the tests)")
    parser.add_argument("--catalog", choices=["sqlite", "mysql"], default="sqlite",
                        help="the catalog's database: SQLite in its state folder (as `make run`), or a fresh database "
                             "on the MySQL/MariaDB server AUDIOSEARCH_TEST_MYSQL names (as the tests and a deployment)")
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE", help="JSON to FILE, or stdout")
    args = parser.parse_args()
    if args.gateway:
        memory = {name: process_memory(int(pid)) for name, pid in (item.split("=", 1) for item in args.pids)}
        result = run(args, args.gateway, memory)
    else:
        result = run_own_suite(args)
    emit(table(result), result, args.json)
    sys.exit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()
