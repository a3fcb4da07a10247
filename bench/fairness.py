"""Fairness between kinds of work: 5 s SearchAudio latency on an idle suite, beside two monitors, and beside a long
query and an import.

    python -m bench.fairness [--sounds DIR] [--music DIR] [--limit N] [--queries N] [--phase-seconds S]
                             [--feed-seconds S] [--set SERVICE_SETTING=VALUE ...] [--gateway ADDR] [--json [FILE]]

Starts its own suite (Milvus Lite, SQLite, Triton; as `make run`) unless --gateway is given and imports `--limit`
dev sounds into a collection. Then one client sends SearchAudio with 5 s excerpts of indexed sounds, one call at a
time (`--queries`, or fewer where a phase has run `--phase-seconds`), in three phases:

- idle: nothing else runs;
- monitors: two MonitorAudio feeds (raw PCM of other dev sounds, end to end) are streamed at full speed (as fast as
  the gateway takes them); each feed's real-time factor and lag (its `MonitorProgress`) are reported;
- long query + import: a dev-music track of at least 200 s is sent to SearchAudio over and over, and the held-back
  dev sounds are imported into a second collection (ImportAudio), both for as long as the phase lasts.

It reports each phase's p50/p99 client latency and its p50 as a multiple of the idle p50 (the goal of issue 31:
<= 1.5 beside two monitors), the monitors' real-time factor and lag, the long queries' durations and the import's
rate.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np

from audiosearch.gateway.audio.decoding import AudioError, decode_audio
from audiosearch.v1 import audiosearch_pb2 as pb
from audiosearch.v1 import audiosearch_pb2_grpc
from bench.metrics import emit, percentiles
from bench.search_latency import COLLECTION, import_sounds, make_queries
from bench.support import DEFAULT_SOUNDS, key_values, machine, own_suite, shared_load_note, sound_files

RATE = 32_000
MUSIC = Path("/tmp/dev-music")
LONG_QUERY_SECONDS = 200.0
IMPORT_COLLECTION = "bench_fairness_import"
FEED_CHUNK_BYTES = 64 * 1024
MONITORS = 2
MIN_QUERIES = 3


class Background:
    """Work that runs in threads until `stop`, each loop recording what it saw."""

    def __init__(self) -> None:
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self.errors: list[str] = []

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def start(self, name: str, work: Callable[[], None]) -> None:
        def guarded() -> None:
            try:
                work()
            except (grpc.RpcError, grpc.FutureCancelledError) as error:
                if not self.stopped:
                    self.errors.append(f"{name}: {error}")

        thread = threading.Thread(target=guarded, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def stop(self, calls: list[grpc.Future]) -> None:
        self._stopped.set()
        for call in calls:
            call.cancel()
        for thread in self._threads:
            thread.join(timeout=600)


def searches(stub: audiosearch_pb2_grpc.AudioSearchServiceStub, queries: list[bytes],
             seconds: float = float("inf")) -> list[float]:
    """Client latency (ms) of each query, one at a time; no new one after `seconds` (but at least MIN_QUERIES)."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    for query in queries:
        if len(latencies) >= MIN_QUERIES and time.perf_counter() > deadline:
            break
        started = time.perf_counter()
        stub.SearchAudio(pb.SearchAudioRequest(collection=COLLECTION, audio_content=query, top_k=10), timeout=600)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def feed_pcm(files: list[Path], seconds: float) -> bytes:
    """Sounds end to end as 16-bit mono PCM at 32 kHz, `seconds` long (the files repeated as needed)."""
    parts: list[np.ndarray] = []
    total = 0
    for path in _cycle(files):
        with contextlib.suppress(AudioError):
            samples = decode_audio(path.read_bytes(), RATE).samples
            parts.append(samples)
            total += len(samples)
        if total >= seconds * RATE:
            break
    joined = np.concatenate(parts)[: int(seconds * RATE)]
    return (np.clip(joined, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def _cycle(files: list[Path]) -> Iterator[Path]:
    if not files:
        raise SystemExit("no sounds left for the monitor feeds: lower --limit")
    while True:
        yield from files


def monitor(stub: audiosearch_pb2_grpc.AudioSearchServiceStub, feed: bytes, label: str, calls: list,
            progress: dict[str, pb.MonitorProgress], background: Background) -> None:
    def messages() -> Iterator[pb.MonitorAudioRequest]:
        yield pb.MonitorAudioRequest(header=pb.MonitorAudioHeader(
            collection=COLLECTION, feed_label=label,
            raw_format=pb.RawAudioFormat(sample_rate_hz=RATE, channels=1, sample_format=pb.SAMPLE_FORMAT_S16LE)))
        for start in range(0, len(feed), FEED_CHUNK_BYTES):
            if background.stopped:
                return
            yield pb.MonitorAudioRequest(chunk=feed[start : start + FEED_CHUNK_BYTES])

    call = stub.MonitorAudio(messages(), timeout=24 * 3600)
    calls.append(call)
    for response in call:
        if response.WhichOneof("event") == "progress":
            progress[label] = response.progress


def long_queries(stub: audiosearch_pb2_grpc.AudioSearchServiceStub, query: bytes, calls: list,
                 durations: list[float], background: Background) -> None:
    while not background.stopped:
        started = time.perf_counter()
        call = stub.SearchAudio.future(pb.SearchAudioRequest(collection=COLLECTION, audio_content=query, top_k=10),
                                       timeout=3600)
        calls.append(call)
        call.result()
        durations.append(time.perf_counter() - started)


def long_query(music: Path) -> tuple[bytes, float]:
    """The first dev-music track of at least LONG_QUERY_SECONDS, with its duration."""
    for path in sorted(music.iterdir()):
        with contextlib.suppress(AudioError):
            data = path.read_bytes()
            seconds = decode_audio(data, RATE).duration_seconds
            if seconds >= LONG_QUERY_SECONDS:
                return data, seconds
    raise SystemExit(f"no track of {LONG_QUERY_SECONDS:g} s or more in {music}; get the dev music with "
                     "../shared/data/fetch-dev-music.sh")


def importer(stub: audiosearch_pb2_grpc.AudioSearchServiceStub, files: list[Path], calls: list,
             summary: dict[str, float], background: Background) -> None:
    with contextlib.suppress(grpc.RpcError):
        stub.CreateCollection(pb.CreateCollectionRequest(name=IMPORT_COLLECTION))

    def messages() -> Iterator[pb.ImportAudioRequest]:
        yield pb.ImportAudioRequest(header=pb.ImportAudioHeader(collection=IMPORT_COLLECTION))
        for path in files:
            if background.stopped:
                return
            yield pb.ImportAudioRequest(file=pb.ImportFileHeader(name=path.name))
            yield pb.ImportAudioRequest(chunk=path.read_bytes())
            yield pb.ImportAudioRequest(file_end=pb.ImportFileEnd())

    started = time.perf_counter()
    call = stub.ImportAudio(messages(), timeout=24 * 3600)
    calls.append(call)
    for response in call:
        event = response.WhichOneof("event")
        if event in ("progress", "summary"):
            state = getattr(response, event)
            summary["files"] = state.files_ingested + state.files_already_existed
            summary["audio_seconds"] = state.audio_seconds
            summary["wall_seconds"] = time.perf_counter() - started


def phase(name: str, gateway: str, queries: list[bytes], seconds: float,
          with_background: Callable[..., None] | None = None, settle_seconds: float = 0.0) -> dict:
    """The searches, with background work started first and stopped after."""
    print(f"phase {name} ...", file=sys.stderr)
    channel = grpc.insecure_channel(gateway)
    stub = audiosearch_pb2_grpc.AudioSearchServiceStub(channel)
    background = Background()
    calls: list[grpc.Future] = []
    observed: dict = {}
    if with_background is not None:
        with_background(gateway, background, calls, observed)
        time.sleep(settle_seconds)  # the background work's requests are in flight before the first search
    latencies = searches(stub, queries, seconds)
    background.stop(calls)
    channel.close()
    total = percentiles(latencies)
    print(f"phase {name}: {len(latencies)} queries, p50 {total['p50']:.0f} ms, p99 {total['p99']:.0f} ms",
          file=sys.stderr)
    return {"phase": name, "queries": len(latencies), "total": total, "latencies_ms": latencies,
            "errors": background.errors, **observed}


def with_monitors(feeds: list[bytes]) -> Callable[..., None]:
    def start(gateway: str, background: Background, calls: list, observed: dict) -> None:
        progress: dict[str, pb.MonitorProgress] = {}
        observed["monitors"] = progress
        for index, feed in enumerate(feeds):
            stub = audiosearch_pb2_grpc.AudioSearchServiceStub(grpc.insecure_channel(gateway))
            label = f"feed-{index + 1}"
            background.start(label, lambda stub=stub, feed=feed, label=label: monitor(
                stub, feed, label, calls, progress, background))
    return start


def with_long_query_and_import(query: bytes, files: list[Path]) -> Callable[..., None]:
    def start(gateway: str, background: Background, calls: list, observed: dict) -> None:
        durations: list[float] = []
        summary: dict[str, float] = {}
        observed["long_query_seconds"] = durations
        observed["import"] = summary
        long_stub = audiosearch_pb2_grpc.AudioSearchServiceStub(grpc.insecure_channel(gateway))
        import_stub = audiosearch_pb2_grpc.AudioSearchServiceStub(grpc.insecure_channel(gateway))
        background.start("long-query", lambda: long_queries(long_stub, query, calls, durations, background))
        background.start("import", lambda: importer(import_stub, files, calls, summary, background))
    return start


def monitor_rows(progress: dict[str, pb.MonitorProgress]) -> list[dict]:
    return [{"feed": label, "audio_seconds": state.audio_seconds, "elapsed_seconds": state.elapsed_seconds,
             "real_time_factor": state.real_time_factor, "lag_seconds": state.lag_seconds}
            for label, state in sorted(progress.items())]


def run(args: argparse.Namespace, gateway: str) -> dict:
    files = sound_files(args.sounds)
    rng = random.Random(args.seed)
    shuffled = rng.sample(files, len(files))
    indexed, held_back = sorted(shuffled[: args.limit]), shuffled[args.limit :]
    feeds = [feed_pcm(held_back[index::MONITORS], args.feed_seconds) for index in range(MONITORS)]
    query, query_seconds = long_query(args.music)
    before = machine()
    stub = audiosearch_pb2_grpc.AudioSearchServiceStub(grpc.insecure_channel(gateway))
    print(f"importing {len(indexed)} files ...", file=sys.stderr)
    summary = import_sounds(stub, indexed)
    queries = make_queries(indexed, args.queries, args.seed)
    searches(stub, queries[:3])  # warm-up
    idle = phase("idle", gateway, queries, args.phase_seconds)
    monitors = phase("monitors", gateway, queries, args.phase_seconds, with_monitors(feeds), settle_seconds=5.0)
    monitors["monitors"] = monitor_rows(monitors["monitors"])
    print(f"monitors: {monitors['monitors']}", file=sys.stderr)
    busy = phase("long query + import", gateway, queries, args.phase_seconds,
                 with_long_query_and_import(query, held_back), settle_seconds=5.0)
    after = machine()
    idle_p50 = idle["total"]["p50"]
    for result in (idle, monitors, busy):
        result["p50_vs_idle"] = result["total"]["p50"] / idle_p50
    return {"indexed": {"files": summary.files_ingested + summary.files_already_existed,
                        "audio_seconds": summary.audio_seconds},
            "long_query_audio_seconds": query_seconds, "feed_seconds": args.feed_seconds,
            "phases": [idle, monitors, busy], "machine_before": before, "machine_after": after,
            "load_note": shared_load_note(before, after)}


def table(result: dict) -> str:
    lines = [f"collection: {result['indexed']['files']} files, {result['indexed']['audio_seconds']:.0f} s audio; "
             "queries of 5 s, one at a time (client latency in ms)",
             f"{'phase':<22s} {'queries':>7s} {'p50':>7s} {'p99':>7s} {'p50 / idle':>10s}"]
    for row in result["phases"]:
        lines.append(f"{row['phase']:<22s} {row['queries']:7d} {row['total']['p50']:7.0f} {row['total']['p99']:7.0f} "
                     f"{row['p50_vs_idle']:10.2f}")
    monitors, busy = result["phases"][1], result["phases"][2]
    for feed in monitors["monitors"]:
        lines.append(f"monitor {feed['feed']}: {feed['audio_seconds']:.0f} s of feed in {feed['elapsed_seconds']:.0f}"
                     f" s, real-time factor {feed['real_time_factor']:.2f}, lag {feed['lag_seconds']:.1f} s")
    durations = ", ".join(f"{seconds:.0f}" for seconds in busy["long_query_seconds"])
    lines.append(f"long query ({result['long_query_audio_seconds']:.0f} s of music): {durations or 'none'} s "
                 "(the last one cut short when the phase ended)")
    imported = busy["import"]
    if imported:
        lines.append(f"import: {imported['files']:.0f} files, {imported['audio_seconds']:.0f} s of audio in "
                     f"{imported['wall_seconds']:.0f} s")
    for row in result["phases"]:
        lines.extend(f"error in {row['phase']}: {error}" for error in row["errors"])
    lines.append("\n" + result["load_note"])
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fairness", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sounds", type=Path, default=DEFAULT_SOUNDS, help="folder of sounds (default %(default)s)")
    parser.add_argument("--music", type=Path, default=MUSIC, help="folder of music tracks (default %(default)s)")
    parser.add_argument("--limit", type=int, default=100, help="sounds indexed (a seeded random choice; default 100)")
    parser.add_argument("--queries", type=int, default=20, help="5 s queries per phase (default 20)")
    parser.add_argument("--phase-seconds", type=float, default=150.0,
                        help="no new query in a phase after this long, once 3 are done (default 150)")
    parser.add_argument("--feed-seconds", type=float, default=900.0, help="audio per monitor feed (default 900)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a service setting for the suite (EMBEDDER_*, GATEWAY_*), repeatable")
    parser.add_argument("--gateway", help="a running gateway to use instead of starting a suite")
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE", help="JSON to FILE, or stdout")
    args = parser.parse_args()
    if args.gateway:
        result = run(args, args.gateway)
    else:
        with own_suite(key_values(args.set, "--set")) as bench:
            result = run(args, bench.gateway)
    emit(table(result), result, args.json)


if __name__ == "__main__":
    main()
