"""Milvus's memory under insert/delete churn, without the model: what grows, and whether a setting bounds it.

    python -m bench.milvus_churn [--milvus server|lite] [--minutes 10] [--kept 64] [--max-segments 20]
                                 [--interval 30] [--config KEY=VALUE ...] [--json [FILE]]

`bench.load` churns a Milvus server at about one ingest and one delete per second, so one seal cycle (below) takes
it an hour. This bench does the same writes through the search service's own store (same schema, HNSW index
and consistency as the service's defaults) as fast as one writer and one reader go: each cycle upserts a
recording of 1 to --max-segments random 2048-d unit vectors, deletes the oldest so that --kept recordings
remain, and searches with a 13-vector query (a 5 s excerpt's windows). `--config` sets milvus.yaml entries of
the server it starts (dotted keys, as `--extra-config`), to try a setting against the same load.

Per interval it prints cycles, the server's resident memory (the process and its children), its Go heap in use,
and its segment counts by state as its data coordinator and query node report them (from its metrics port).
At the end: growth of resident memory from the end of the warm-up to the end (means of MEMORY_SAMPLES readings,
and the rise of a line fitted to them all), and the peak and low of each seal cycle. Milvus keeps every row
inserted into the growing segment, deleted or not (with an interim index), in the query node until that segment
is sealed, flushed, indexed and compacted; a cycle ends where the query node's entity count falls below
HANDOFF_LOW of its cycle's most. Peaks that do not rise from cycle to cycle mean the memory is bounded, whatever
the start-to-end growth of a window that ends mid-cycle.

`--milvus lite` runs the same cycles on Milvus Lite, the suite's default, inside this process as the search
service runs it: per interval this process's resident memory and the Lite folder's files and size on disk. Lite
flushes each write to a data file and merges files, dropping deleted rows, in the background (size-tiered
compaction), so there are no seal cycles to split.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from audiosearch.search.server import SearchSettings, route_pymilvus_logs, store_config
from audiosearch.search.store import MilvusStore, Segment
from bench.load import MEMORY_SAMPLES, memory_growth
from bench.metrics import emit, scrape
from bench.support import key_values, machine, milvus, tree_rss_bytes

COLLECTION = "bench_churn"
DIMENSION = 2048
QUERY_WINDOWS = 13
TOP_K = 64
WINDOW_SECONDS = 2.0
MIB = 1024 * 1024
HANDOFF_LOW = 0.3


def metrics_port(server_pid: int) -> int:
    """The port of the server's /metrics: the wrapper picks it (the first free from 9091) and hands it to the
    binary as METRICS_PORT. Two servers started at once can both be handed the same port, and only one binds
    it, so the port counts only if this server's binary is the one listening there."""
    for binary in _children(server_pid):
        for entry in Path(f"/proc/{binary}/environ").read_bytes().split(b"\0"):
            if entry.startswith(b"METRICS_PORT="):
                port = int(entry.split(b"=", 1)[1])
                if _listens_on(binary, port):
                    return port
                raise RuntimeError(f"port {port} is another Milvus's: start one server at a time")
    raise RuntimeError("no METRICS_PORT among the milvus-server's children")


def _children(pid: int) -> list[int]:
    return [int(child) for task in Path(f"/proc/{pid}/task").glob("*/children")
            for child in task.read_text().split()]


def _listens_on(pid: int, port: int) -> bool:
    """Whether a listening TCP socket on `port` belongs to process `pid` (by socket inode, from /proc)."""
    owned = set()
    for link in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # an fd closed meanwhile
            owned.add(os.readlink(link))
    listen_state = "0A"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == listen_state \
                    and f"socket:[{fields[9]}]" in owned:
                return True
    return False


def server_figures(port: int) -> dict[str, float]:
    """Go heap in use (MB) and segment counts by component and state, from the server's metrics."""
    samples = scrape(port)
    figures: dict[str, float] = collections.defaultdict(float)
    for (name, labels), value in samples.items():
        label = dict(labels)
        if name == "go_memstats_heap_inuse_bytes":
            figures["go_heap_mb"] = round(value / MIB)
        elif name == "milvus_datacoord_segment_num":
            figures[f"datacoord_{label.get('segment_state', '?')}"] += value
        elif name == "milvus_querynode_segment_num":
            figures[f"querynode_{label.get('segment_state', '?')}"] += value
        elif name == "milvus_querynode_entity_num":
            figures["querynode_entities"] += value
    return {key: value for key, value in figures.items() if value}


class Churn:
    """One recording in, the oldest out, one search: the service's writes and reads, minus the model."""

    def __init__(self, store: MilvusStore, kept: int, max_segments: int, seed: int) -> None:
        self._store = store
        self._kept = kept
        self._max_segments = max_segments
        self._random = np.random.default_rng(seed)
        self._held: collections.deque[str] = collections.deque()
        self._next_segment_id = 1
        self._next_audio = 0

    def cycle(self) -> None:
        self.ingest()
        while len(self._held) > self._kept:
            self._store.delete_audio(COLLECTION, [self._held.popleft()])
        self._store.search(COLLECTION, self._unit_vectors(QUERY_WINDOWS), TOP_K)

    def ingest(self) -> None:
        audio_id = f"churn-{self._next_audio:08d}"
        self._next_audio += 1
        count = int(self._random.integers(1, self._max_segments + 1))
        vectors = self._unit_vectors(count)
        segments = [Segment(self._next_segment_id + index, audio_id, index * WINDOW_SECONDS,
                            (index + 1) * WINDOW_SECONDS, vector) for index, vector in enumerate(vectors)]
        self._next_segment_id += count
        self._store.upsert(COLLECTION, segments)
        self._held.append(audio_id)

    def _unit_vectors(self, count: int) -> np.ndarray:
        vectors = self._random.standard_normal((count, DIMENSION)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def server_reading(server_pid: int) -> Callable[[], dict[str, float]]:
    """The Milvus server's resident memory (with its children) and its figures from its metrics port."""
    port = metrics_port(server_pid)
    return lambda: {"rss_mb": round((tree_rss_bytes(server_pid) or 0) / MIB), **server_figures(port)}


def lite_reading(folder: Path) -> Callable[[], dict[str, float]]:
    """This process's resident memory (Lite runs inside it) and the Lite folder's files and bytes on disk."""
    def read() -> dict[str, float]:
        files = [path for path in folder.rglob("*") if path.is_file()]
        return {"rss_mb": round((tree_rss_bytes(os.getpid()) or 0) / MIB), "lite_files": len(files),
                "lite_disk_mb": round(sum(path.stat().st_size for path in files) / MIB, 1)}
    return read


def run(args: argparse.Namespace, uri: str, reading: Callable[[], dict[str, float]]) -> dict:
    settings = SearchSettings(milvus_uri=uri)
    route_pymilvus_logs()
    store = MilvusStore(store_config(settings))
    store.ensure_collection(COLLECTION, DIMENSION)
    churn = Churn(store, args.kept, args.max_segments, args.seed)
    for _ in range(args.kept):
        churn.ingest()
    started = time.monotonic()
    rows: list[dict] = []
    cycles = 0
    next_report = started + args.interval
    end = started + args.minutes * 60
    while time.monotonic() < end:
        churn.cycle()
        cycles += 1
        if time.monotonic() >= next_report:
            next_report += args.interval
            rows.append({"seconds": round(time.monotonic() - started), "cycles": cycles, **reading()})
            print(row_line(rows[-1]), file=sys.stderr, flush=True)
    store.close()
    after_warmup = [row["rss_mb"] for row in rows if row["seconds"] >= args.warmup_seconds]
    growth = memory_growth(after_warmup) if len(after_warmup) >= 2 * MEMORY_SAMPLES else {}
    return {"milvus": args.milvus, "minutes": args.minutes, "kept": args.kept, "max_segments": args.max_segments,
            "config": args.config, "cycles": cycles, "cycles_per_second": cycles / (time.monotonic() - started),
            "intervals": rows, "growth": growth,
            "seal_cycles": seal_cycles(rows) if args.milvus == "server" else [], "machine": machine()}


def seal_cycles(rows: list[dict]) -> list[dict]:
    """Readings split where the query node's entity count falls below HANDOFF_LOW of the most it held in the
    cycle so far (a sealed, compacted segment replaced the growing one; during the handoff both are counted):
    per cycle, its time span, peak and low resident memory, and the most entities the query node held."""
    cycles: list[list[dict]] = [[]]
    most = 0.0
    for row in rows:
        entities = row.get("querynode_entities", 0)
        if cycles[-1] and entities < HANDOFF_LOW * most:
            cycles.append([])
            most = 0.0
        most = max(most, entities)
        cycles[-1].append(row)
    return [{"from_s": cycle[0]["seconds"], "to_s": cycle[-1]["seconds"],
             "peak_mb": max(row["rss_mb"] for row in cycle), "low_mb": min(row["rss_mb"] for row in cycle),
             "peak_entities": max(row.get("querynode_entities", 0) for row in cycle)} for cycle in cycles if cycle]


def row_line(row: dict) -> str:
    common = f"{row['seconds']:5d} s {row['cycles']:7d} cycles  RSS {row['rss_mb']:5d} MB  "
    if "lite_files" in row:
        return common + f"Lite files {row['lite_files']:4d}, {row['lite_disk_mb']:6.1f} MB on disk"
    states = " ".join(f"{key}={value:g}" for key, value in sorted(row.items())
                      if key.startswith(("datacoord_", "querynode_")))
    return common + f"Go heap {row.get('go_heap_mb', 0):4.0f} MB  {states}"


def table(result: dict) -> str:
    lines = [f"Milvus {result['milvus']}: {result['cycles']} cycles in {result['minutes']:g} min "
             f"({result['cycles_per_second']:.1f}/s): upsert 1-{result['max_segments']} segments, delete the "
             f"oldest of {result['kept']}, search; config {result['config'] or 'defaults'}"]
    lines += [row_line(row) for row in result["intervals"]]
    growth = result["growth"]
    if growth:
        measured = "Milvus server" if result["milvus"] == "server" else "this process (Milvus Lite inside)"
        lines.append(f"{measured} RSS after warm-up -> end: {growth['after_warmup_mb']} -> {growth['end_mb']} MB "
                     f"({growth['growth']:+.1%}), trend {growth['trend']:+.1%}, peak {growth['peak_mb']} MB")
    if result["milvus"] == "server":
        lines.append("seal cycles (query node entities fall as a sealed segment takes over):")
    lines += [f"  {cycle['from_s']:5d}-{cycle['to_s']:5d} s: RSS {cycle['low_mb']}-{cycle['peak_mb']} MB, "
              f"up to {cycle['peak_entities']:.0f} entities" for cycle in result["seal_cycles"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.milvus_churn", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--milvus", choices=["server", "lite"], default="server",
                        help="a Milvus standalone started here (default), or Milvus Lite in this process")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--kept", type=int, default=64, help="recordings kept (default 64: bench.load's 16 x 4)")
    parser.add_argument("--max-segments", type=int, default=20, help="most segments per recording (20)")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds per reading")
    parser.add_argument("--warmup-seconds", type=float, default=120.0, help="growth is measured from here on")
    parser.add_argument("--config", nargs="*", default=[], metavar="KEY=VALUE", help="milvus.yaml overrides")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE", help="JSON to FILE, or stdout")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that leaving `milvus` stops the server
    if args.milvus == "lite":
        if args.config:
            raise SystemExit("--config sets a Milvus server's milvus.yaml; Milvus Lite has none")
        with tempfile.TemporaryDirectory(prefix="audiosearch-lite-") as folder:
            result = run(args, f"{folder}/churn.db", lite_reading(Path(folder)))
    else:
        with milvus(None, key_values(args.config, "--config")) as (uri, server_pid):
            result = run(args, uri, server_reading(int(server_pid or 0)))
    emit(table(result), result, args.json)


if __name__ == "__main__":
    main()
