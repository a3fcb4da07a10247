"""Search latency at the gateway: 5 s queries at 1, 4 and 16 concurrent clients, with the time spent embedding
and in the vector search reported separately.

    python -m bench.search_latency [--sounds DIR] [--limit N] [--queries N] [--concurrency 1 4 16]
                                   [--gateway ADDR] [--json [FILE]]

Starts its own suite (Milvus Lite, SQLite, Triton; as `make run`) unless --gateway is given, imports the dev
sounds into a collection (ImportAudio), then sends SearchAudio with 5 s excerpts of indexed sounds (shorter
sounds are looped to 5 s), each client one call at a time. Per call it records the wall latency at the client and
the gateway's own stage timings, which SearchAudio returns as trailing metadata: `x-decode-ms`, `x-embed-ms`
(Triton, the query's windows in one request), `x-search-ms` (the search service and Milvus, every query window in
one SearchSegments call) and `x-catalog-ms` (the batched read of the matched records).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import soundfile

from audiosearch.gateway.audio.decoding import AudioError, decode_audio
from audiosearch.v1 import audiosearch_pb2 as pb
from audiosearch.v1 import audiosearch_pb2_grpc
from bench.metrics import emit, percentiles
from bench.support import DEFAULT_SOUNDS, machine, own_suite, shared_load_note, sound_files

COLLECTION = "bench_latency"
QUERY_SECONDS = 5.0
RATE = 32_000
STAGES = ("decode", "embed", "search", "catalog")


def import_sounds(client: audiosearch_pb2_grpc.AudioSearchServiceStub, files: list[Path],
                  collection: str = COLLECTION) -> pb.ImportProgress:
    with contextlib.suppress(grpc.RpcError):
        client.CreateCollection(pb.CreateCollectionRequest(name=collection))

    def messages() -> Iterator[pb.ImportAudioRequest]:
        yield pb.ImportAudioRequest(header=pb.ImportAudioHeader(collection=collection))
        for path in files:
            yield pb.ImportAudioRequest(file=pb.ImportFileHeader(name=path.name))
            yield pb.ImportAudioRequest(chunk=path.read_bytes())
            yield pb.ImportAudioRequest(file_end=pb.ImportFileEnd())

    summary = pb.ImportProgress()
    for response in client.ImportAudio(messages(), timeout=24 * 3600):
        if response.WhichOneof("event") == "summary":
            summary = response.summary
    return summary


def make_queries(files: list[Path], count: int, seed: int) -> list[bytes]:
    """5 s wav excerpts of indexed sounds at a random offset (looped when the sound is shorter)."""
    rng = random.Random(seed)
    queries: list[bytes] = []
    while len(queries) < count:
        path = rng.choice(files)
        try:
            samples = decode_audio(path.read_bytes(), RATE).samples
        except AudioError:
            continue
        length = int(QUERY_SECONDS * RATE)
        if len(samples) < length:
            samples = np.resize(samples, length)
        start = rng.randrange(0, len(samples) - length + 1)
        buffer = io.BytesIO()
        soundfile.write(buffer, samples[start:start + length], RATE, format="WAV", subtype="PCM_16")
        queries.append(buffer.getvalue())
    return queries


def one_level(gateway: str, queries: list[bytes], concurrency: int) -> dict:
    channels = [grpc.insecure_channel(gateway) for _ in range(concurrency)]  # one connection per client
    stubs = [audiosearch_pb2_grpc.AudioSearchServiceStub(channel) for channel in channels]
    samples: list[dict[str, float]] = []
    lock = threading.Lock()
    position = iter(range(len(queries)))

    def client(index: int) -> None:
        while True:
            with lock:
                number = next(position, None)
            if number is None:
                return
            started = time.perf_counter()
            _, call = stubs[index].SearchAudio.with_call(
                pb.SearchAudioRequest(collection=COLLECTION, audio_content=queries[number], top_k=10), timeout=300)
            wall_ms = (time.perf_counter() - started) * 1000
            timings = {key.removeprefix("x-").removesuffix("-ms"): float(value)
                       for key, value in call.trailing_metadata() or () if key.startswith("x-")}
            with lock:
                samples.append({"total": wall_ms, **timings})

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(client, range(concurrency)))
    wall = time.perf_counter() - started
    for channel in channels:
        channel.close()
    result: dict = {"concurrency": concurrency, "queries": len(samples), "queries_per_second": len(samples) / wall}
    for stage in ("total", *STAGES):
        result[stage] = percentiles([sample.get(stage, 0.0) for sample in samples])
    return result


def warm_up(gateway: str, queries: list[bytes]) -> None:
    stub = audiosearch_pb2_grpc.AudioSearchServiceStub(grpc.insecure_channel(gateway))
    for query in queries[:3]:
        stub.SearchAudio(pb.SearchAudioRequest(collection=COLLECTION, audio_content=query), timeout=300)


def table(result: dict) -> str:
    lines = [f"collection: {result['indexed']['files']} files, {result['indexed']['audio_seconds']:.0f} s audio; "
             f"queries of {QUERY_SECONDS:g} s (latency in ms, p50 / p99)",
             f"{'clients':>7s} {'q/s':>6s} {'total':>15s} {'embed':>15s} {'vector search':>15s} "
             f"{'decode':>13s} {'catalog':>13s}"]
    for level in result["levels"]:
        def cell(stage: str, width: int, level: dict = level) -> str:
            value = level[stage]
            return f"{value['p50']:.0f} / {value['p99']:.0f}".rjust(width)

        lines.append(f"{level['concurrency']:7d} {level['queries_per_second']:6.2f} {cell('total', 15)} "
                     f"{cell('embed', 15)} {cell('search', 15)} {cell('decode', 13)} {cell('catalog', 13)}")
    lines.append("\n" + result["load_note"])
    return "\n".join(lines)


def run(args: argparse.Namespace, gateway: str) -> dict:
    files = sound_files(args.sounds)
    if args.limit:
        files = sorted(random.Random(args.seed).sample(files, min(args.limit, len(files))))
    before = machine()
    client = audiosearch_pb2_grpc.AudioSearchServiceStub(grpc.insecure_channel(gateway))
    print(f"importing {len(files)} files ...", file=sys.stderr)
    summary = import_sounds(client, files)
    queries = make_queries(files, args.queries, args.seed)
    warm_up(gateway, queries)
    levels = []
    for concurrency in args.concurrency:
        print(f"{concurrency} concurrent clients ...", file=sys.stderr)
        levels.append(one_level(gateway, queries, concurrency))
    after = machine()
    return {"indexed": {"files": summary.files_ingested + summary.files_already_existed,
                        "audio_seconds": summary.audio_seconds},
            "levels": levels, "machine_before": before, "machine_after": after,
            "load_note": shared_load_note(before, after)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.search_latency", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sounds", type=Path, default=DEFAULT_SOUNDS, help="folder of sounds (default %(default)s)")
    parser.add_argument("--limit", type=int, help="index N sounds only (a seeded random choice)")
    parser.add_argument("--queries", type=int, default=64, help="queries per concurrency level (default 64)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gateway", help="a running gateway to use instead of starting a suite")
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE", help="JSON to FILE, or stdout")
    args = parser.parse_args()
    if args.gateway:
        result = run(args, args.gateway)
    else:
        with own_suite() as bench:
            result = run(args, bench.gateway)
    emit(table(result), result, args.json)


if __name__ == "__main__":
    main()
