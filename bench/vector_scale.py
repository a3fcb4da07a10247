"""Vector search at scale on a real Milvus server: recall@10 against exact search, latency per query vector,
index build time and memory, for HNSW and IVF indexes; and what the search service adds on top of pymilvus.

    python -m bench.vector_scale [--count 1000000] [--queries 200] [--warmup-queries 100] [--uri http://host:19530]
                                 [--indexes HNSW IVF_FLAT IVF_SQ8] [--ef 64 128 256] [--nprobe 16 32 64]
                                 [--json [FILE]]

Without --uri it starts a `milvus-server` (devtools/support/milvus.py) under a temporary directory. The data are
`--count` synthetic 2048-d unit vectors shaped like segment embeddings, not uniform noise: "recordings" of 20
segments each scatter around a recording centre, and the centres share a low-rank structure (the anisotropy of
real CNN embeddings). Queries are noisy copies of stored segments (a re-recording of a known sound); the exact
top 10 of each is computed by brute force (numpy) while the data are generated. After each index build it waits
until the loaded segments have settled (sealed and unchanged, and a server it started nearly idle, for
--settle-seconds: no compaction, index build or handoff left to share the cores with the searches), and before each
search setting it runs --warmup-queries other queries, unmeasured, so that the figures are the steady state's, not
the first touches of a freshly loaded index.

The collection has the search service's own schema (created through audiosearch.search.store), so the same
collection then serves the overhead test: SearchSegments through a search service started on it versus the same
search through pymilvus directly, one vector with top 10 and four vectors with top 64 (what a 5 s query sends);
and, to take the difference apart, a health check through the service and the service's store called in process.
Every search here, as the service's, hands pymilvus its query vectors as float32 bytes, the fastest way it takes
them (audiosearch/search/store.py, `query_bytes`), so the direct call is the best pymilvus does.

1M x 2048 float32 is 8 GB of raw vectors: on a small machine run --count 100000 or 200000 and read the build
times and memory as the basis for extrapolation.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pymilvus import MilvusClient

from audiosearch.common.ports import free_port
from audiosearch.search.store import HIT_FIELDS, METRIC, VECTOR_FIELD, MilvusStore, StoreConfig, query_bytes
from audiosearch.search.v1 import search_pb2 as spb
from audiosearch.search.v1 import search_pb2_grpc
from bench.metrics import emit, percentiles
from bench.support import machine, milvus, shared_load_note, tree_cpu_seconds, tree_rss_bytes
from devtools.suite import REPO_ROOT, is_healthy

DIM = 2048
SEGMENTS_PER_RECORDING = 20
CHUNK = 10_000  # vectors generated and inserted at a time (a multiple of SEGMENTS_PER_RECORDING)
INSERT_BATCH = 500
LATENT_RANK = 64
PREFIX = "bench_"
SEGMENT_SEALED = 3  # commonpb.SegmentState.Sealed, as get_query_segment_info reports a loaded, indexed segment
SETTLE_POLL_S = 5.0
IDLE_CORES = 0.25  # a standalone Milvus with nothing to do uses a few percent of a core
CONSISTENCY = [StoreConfig(uri="").consistency]  # --consistency: what the searches (and the service) ask Milvus for
NAME = "vectors"


# --------------------------------------------------------------------------------------------------- the data


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def chunks(count: int, seed: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first id, vectors) of `count` clustered unit vectors, generated chunk by chunk, reproducibly."""
    basis = np.random.default_rng(seed).standard_normal((LATENT_RANK, DIM)).astype(np.float32)
    for start in range(0, count, CHUNK):
        rng = np.random.default_rng([seed, start])
        size = min(CHUNK, count - start)
        recordings = -(-size // SEGMENTS_PER_RECORDING)
        # A recording's centre: half shared low-rank structure, half its own direction.
        centres = _unit(_unit(rng.standard_normal((recordings, LATENT_RANK)).astype(np.float32) @ basis)
                        + _unit(rng.standard_normal((recordings, DIM)).astype(np.float32)))
        # Its segments: the centre plus noise of 0.7 its length (cosine about 0.8 to the centre).
        spread = rng.standard_normal((recordings * SEGMENTS_PER_RECORDING, DIM)).astype(np.float32)
        vectors = _unit(np.repeat(centres, SEGMENTS_PER_RECORDING, axis=0) + 0.7 * _unit(spread))[:size]
        yield start, vectors


class ExactTopK:
    """Brute-force top k of each query over the chunks as they pass."""

    def __init__(self, queries: np.ndarray, k: int = 10) -> None:
        self.queries = queries
        self.k = k
        self.ids = np.full((len(queries), 0), -1, dtype=np.int64)
        self.scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)

    def add(self, start: int, vectors: np.ndarray) -> None:
        scores = self.queries @ vectors.T
        ids = np.broadcast_to(np.arange(start, start + len(vectors)), scores.shape)
        all_scores = np.concatenate([self.scores, scores], axis=1)
        all_ids = np.concatenate([self.ids, ids], axis=1)
        best = np.argpartition(-all_scores, min(self.k, all_scores.shape[1] - 1), axis=1)[:, : self.k]
        self.scores = np.take_along_axis(all_scores, best, axis=1)
        self.ids = np.take_along_axis(all_ids, best, axis=1)


def make_queries(count: int, queries: int, seed: int, pick_seed: int | None = None) -> np.ndarray:
    """Noisy copies of randomly chosen stored vectors (regenerated from their chunk); `pick_seed` picks another
    set of them (the warm-up's)."""
    rng = np.random.default_rng(seed + 1 if pick_seed is None else pick_seed)
    picked = np.sort(rng.choice(count, size=queries, replace=False))
    found = []
    for start, vectors in chunks(count, seed):
        inside = picked[(picked >= start) & (picked < start + len(vectors))]
        found.append(vectors[inside - start])
        if start + len(vectors) > picked[-1]:
            break
    originals = np.concatenate(found)
    noise = _unit(rng.standard_normal(originals.shape).astype(np.float32))
    return _unit(originals + 0.5 * noise)  # cosine about 0.9 to the stored segment


# ------------------------------------------------------------------------------------------------ the server


# ------------------------------------------------------------------------------------------------ measuring


def load(client: MilvusClient, store: MilvusStore, count: int, seed: int, exact: ExactTopK) -> float:
    store.ensure_collection(NAME, DIM)
    collection = PREFIX + NAME
    started = time.perf_counter()
    for start, vectors in chunks(count, seed):
        exact.add(start, vectors)
        for offset in range(0, len(vectors), INSERT_BATCH):
            rows = [{"segment_id": start + offset + i, "audio_id": f"r{(start + offset + i) // SEGMENTS_PER_RECORDING}",
                     "start_s": float(i), "end_s": float(i + 2), "vector": vector}
                    for i, vector in enumerate(vectors[offset:offset + INSERT_BATCH])]
            client.insert(collection, rows)
        print(f"  inserted {start + len(vectors)}/{count}", file=sys.stderr)
    client.flush(collection)
    return time.perf_counter() - started


def build(client: MilvusClient, index_type: str, params: dict[str, int], count: int) -> float:
    collection = PREFIX + NAME
    started = time.perf_counter()
    client.release_collection(collection)
    for name in client.list_indexes(collection):
        client.drop_index(collection, name)
    index_params = client.prepare_index_params()
    index_params.add_index(field_name="vector", index_type=index_type, metric_type=METRIC, params=params)
    client.create_index(collection, index_params, timeout=24 * 3600)
    while True:
        info = client.describe_index(collection, client.list_indexes(collection)[0])
        if int(info.get("indexed_rows", 0)) >= count or info.get("state") == "Finished":
            break
        time.sleep(2)
    client.load_collection(collection, timeout=24 * 3600)
    return time.perf_counter() - started


def settle(client: MilvusClient, quiet_s: float, pid: int | None, timeout_s: float = 3600.0) -> list[int]:
    """Waits until the loaded segments are all sealed and the same for `quiet_s`, and the server (when the bench
    started it) has used under IDLE_CORES of CPU all that time: no compaction, index build or handoff still under
    way, which would share the cores with the searches. Returns the segments' row counts, largest first."""
    collection = PREFIX + NAME
    deadline = time.monotonic() + timeout_s
    last: tuple[int, ...] = ()
    quiet_since = time.monotonic()
    cpu_before, polled_at = (tree_cpu_seconds(pid) if pid else 0.0), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(SETTLE_POLL_S)
        segments = client.list_loaded_segments(collection)
        current = tuple(sorted(segment.segment_id for segment in segments))
        cpu_now, now = (tree_cpu_seconds(pid) if pid else 0.0), time.monotonic()
        busy_cores = (cpu_now - cpu_before) / (now - polled_at)
        cpu_before, polled_at = cpu_now, now
        if current != last or any(segment.state != SEGMENT_SEALED for segment in segments) or busy_cores > IDLE_CORES:
            last, quiet_since = current, now
        elif now - quiet_since >= quiet_s:
            return sorted((segment.num_rows for segment in segments), reverse=True)
    raise TimeoutError(f"segments still changing or the server still busy after {timeout_s:.0f} s")


def search_params(index_type: str, value: int) -> dict:
    key = "ef" if index_type == "HNSW" else "nprobe"
    return {"metric_type": METRIC, "params": {key: value}}


def search_one(client: MilvusClient, query: np.ndarray, params: dict) -> list:
    """The top 10 of one query vector, ids only."""
    return client.search(PREFIX + NAME, data=query_bytes(query[np.newaxis]), anns_field=VECTOR_FIELD, limit=10,
                         search_params=params, output_fields=[], consistency_level=CONSISTENCY[0])


def measure(client: MilvusClient, queries: np.ndarray, exact: ExactTopK, params: dict) -> dict:
    latencies, hits = [], 0
    for query, truth in zip(queries, exact.ids, strict=True):
        started = time.perf_counter()
        found = search_one(client, query, params)
        latencies.append((time.perf_counter() - started) * 1000)
        hits += len({int(hit["id"]) for hit in found[0]} & {int(i) for i in truth})
    return {"params": params["params"], "recall_at_10": hits / (10 * len(queries)),
            **{f"{key}_ms": value for key, value in percentiles(latencies).items()}}


@contextlib.contextmanager
def search_service(uri: str, index_type: str, value: int) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "SEARCH_MILVUS_URI": uri, "SEARCH_PORT": str(port), "SEARCH_METRICS_PORT": str(free_port()),
           "SEARCH_COLLECTION_PREFIX": PREFIX, "SEARCH_INDEX_TYPE": index_type,
           "SEARCH_SEARCH_EF": str(value), "SEARCH_IVF_NPROBE": str(value), "SEARCH_LOG_LEVEL": "WARNING",
           "SEARCH_CONSISTENCY": CONSISTENCY[0]}
    process = subprocess.Popen([sys.executable, "-m", "audiosearch.search.server"], cwd=REPO_ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not is_healthy(address):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the search service did not start")
            time.sleep(0.5)
        yield address
    finally:
        process.terminate()
        process.wait(30)


def overhead(uri: str, client: MilvusClient, queries: np.ndarray, index_type: str, value: int,
             rounds: int) -> dict:
    """SearchSegments through the service vs the same search via pymilvus, same consistency, `rounds` passes over
    the queries; and, to take the difference apart, a health check through the service (the bare gRPC hop) and
    the service's own store called in this process (its Milvus call without the hop), one vector with top 10.

    The two calls of a pair search the same vectors, so whichever runs second finds the graph nodes the first
    visited still in the CPU's caches: they take turns going first."""
    collection = PREFIX + NAME
    calls = []
    hop: dict[str, list[float]] = {"health_check_ms": [], "store_in_process_ms": []}
    store = MilvusStore(StoreConfig(uri=uri, index_type=index_type, collection_prefix=PREFIX, search_ef=value,
                                    ivf_nprobe=value, consistency=CONSISTENCY[0]))
    with search_service(uri, index_type, value) as address:
        channel = grpc.insecure_channel(address)
        stub = search_pb2_grpc.VectorSearchServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        for vectors_per_call, top_k in ((1, 10), (4, 64)):
            timings: dict[str, dict[bool, list[float]]] = {"service": {True: [], False: []},
                                                           "direct": {True: [], False: []}}
            starts = range(0, len(queries) - vectors_per_call + 1, vectors_per_call)
            for round_number, (number, index) in itertools.product(range(rounds), enumerate(starts)):
                batch = queries[index:index + vectors_per_call]
                vectors = query_bytes(batch)
                request = spb.SearchSegmentsRequest(collection=NAME, top_k=top_k, vectors=vectors)
                by_service = partial(stub.SearchSegments, request, timeout=60)
                direct = partial(
                    client.search, collection, data=vectors, anns_field=VECTOR_FIELD, limit=top_k,
                    output_fields=HIT_FIELDS,
                    search_params=search_params(index_type, max(value, top_k) if index_type == "HNSW" else value),
                    consistency_level=CONSISTENCY[0])
                order = [("service", by_service), ("direct", direct)]
                if (number + round_number) % 2:  # each query goes first through each path in turn
                    order.reverse()
                for position, (name, call) in enumerate(order):
                    timings[name][position == 0].append(_timed_ms(call))
                if vectors_per_call == 1:
                    hop["health_check_ms"].append(_timed_ms(
                        partial(health.Check, health_pb2.HealthCheckRequest(), timeout=60)))
                    hop["store_in_process_ms"].append(_timed_ms(partial(store.search, NAME, batch, top_k)))
            service = percentiles([*timings["service"][True], *timings["service"][False]])
            direct_all = percentiles([*timings["direct"][True], *timings["direct"][False]])
            calls.append({"vectors_per_call": vectors_per_call, "top_k": top_k, "calls": len(starts) * rounds,
                          "service_ms": service, "pymilvus_ms": direct_all,
                          "ratio_p50": service["p50"] / direct_all["p50"],
                          "ratio_p99": service["p99"] / direct_all["p99"],
                          "first_ms": {name: percentiles(timings[name][True]) for name in timings},
                          "second_ms": {name: percentiles(timings[name][False]) for name in timings}})
        channel.close()
    store.close()
    return {"calls": calls, **{name: percentiles(samples) for name, samples in hop.items()}}


def _timed_ms(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def run(args: argparse.Namespace) -> dict:
    before = machine()
    queries = make_queries(args.count, args.queries, args.seed)
    warmup = make_queries(args.count, args.warmup_queries, args.seed, pick_seed=args.seed + 2) \
        if args.warmup_queries else np.zeros((0, DIM), np.float32)
    exact = ExactTopK(queries)
    result: dict = {"count": args.count, "dim": DIM, "queries": args.queries, "warmup_queries": args.warmup_queries,
                    "raw_bytes": args.count * DIM * 4,
                    "consistency": args.consistency, "indexes": []}
    result["milvus_config"] = segment_config(args.segment_max_mb) if args.segment_max_mb and not args.uri else {}
    with milvus(args.uri, result["milvus_config"]) as (uri, pid):
        client = MilvusClient(uri=uri, timeout=600)
        store = MilvusStore(StoreConfig(uri=uri, index_type="FLAT", collection_prefix=PREFIX, timeout_s=600))
        with contextlib.suppress(Exception):
            client.drop_collection(PREFIX + NAME)
        result["insert_seconds"] = load(client, store, args.count, args.seed, exact)
        result["rss_after_insert_bytes"] = tree_rss_bytes(pid)
        last: tuple[str, int] | None = None
        for index_type in args.indexes:
            params = ({"M": args.hnsw_m, "efConstruction": args.hnsw_ef_construction} if index_type == "HNSW"
                      else {"nlist": args.nlist or max(64, int(4 * np.sqrt(args.count)))})
            print(f"building {index_type} {params} ...", file=sys.stderr)
            seconds = build(client, index_type, params, args.count)
            segment_rows = settle(client, args.settle_seconds, pid)
            entry = {"index": index_type, "build_params": params, "build_seconds": seconds,
                     "segment_rows": segment_rows, "rss_bytes": tree_rss_bytes(pid), "search": []}
            for value in args.ef if index_type == "HNSW" else args.nprobe:
                params_of_value = search_params(index_type, value)
                for query in warmup:
                    search_one(client, query, params_of_value)
                entry["search"].append(measure(client, queries, exact, params_of_value))
            result["indexes"].append(entry)
            last = (index_type, args.ef[-1] if index_type == "HNSW" else args.nprobe[-1])
        if last and not args.skip_overhead:
            chosen = choose(result["indexes"]) or last
            print(f"search service vs pymilvus on {chosen} ...", file=sys.stderr)
            if chosen[0] != last[0]:
                entry = next(e for e in result["indexes"] if e["index"] == chosen[0])
                build(client, chosen[0], entry["build_params"], args.count)
            result["overhead"] = {"index": chosen[0], "param": chosen[1],
                                  **overhead(uri, client, queries, chosen[0], chosen[1], args.overhead_rounds)}
        client.close()
        store.close()
    result["machine_before"], result["machine_after"] = before, machine()
    result["load_note"] = shared_load_note(before, result["machine_after"])
    return result


def segment_config(segment_max_mb: int) -> dict[str, str | int | float]:
    """Milvus builds and searches one index per sealed segment, and every query visits each. At 2048-d a row is
    8 KiB, so the default 512 MB segments split a million rows into some 17 graphs, and larger segments into a few
    large ones."""
    return {"dataCoord.segment.maxSize": segment_max_mb, "dataCoord.segment.sealProportion": 0.6}


def choose(indexes: list[dict]) -> tuple[str, int] | None:
    """The fastest setting (p99) that reaches recall@10 >= 0.98."""
    good = [(search["p99_ms"], entry["index"], next(iter(search["params"].values())))
            for entry in indexes for search in entry["search"] if search["recall_at_10"] >= 0.98]
    return (min(good)[1], min(good)[2]) if good else None


def table(result: dict) -> str:
    gib = 1024**3
    lines = [f"{result['count']} vectors x {result['dim']} (raw {result['raw_bytes'] / gib:.2f} GiB), "
             f"{result['queries']} queries after {result['warmup_queries']} others to warm up, "
             f"consistency {result['consistency']}, "
             f"milvus {result['milvus_config'] or 'defaults'}; "
             f"insert {result['insert_seconds']:.0f} s",
             f"{'index':9s} {'build s':>8s} {'RSS GiB':>8s} {'search':>14s} {'recall@10':>9s} {'p50 ms':>7s} "
             f"{'p99 ms':>7s}"]
    for entry in result["indexes"]:
        rss = f"{entry['rss_bytes'] / gib:.2f}" if entry["rss_bytes"] else "-"
        for number, search in enumerate(entry["search"]):
            head = (f"{entry['index']:9s} {entry['build_seconds']:8.0f} {rss:>8s}" if number == 0
                    else f"{'':9s} {'':>8s} {'':>8s}")
            params = ", ".join(f"{key}={value}" for key, value in search["params"].items())
            lines.append(f"{head} {params:>14s} {search['recall_at_10']:9.3f} {search['p50_ms']:7.1f} "
                         f"{search['p99_ms']:7.1f}")
    for entry in result["indexes"]:
        rows = entry["segment_rows"]
        lines.append(f"{entry['index']}: searched {len(rows)} sealed segments of {', '.join(map(str, rows))} rows")
    if "overhead" in result:
        lines.append(f"\nsearch service vs pymilvus ({result['overhead']['index']}, {result['overhead']['param']}):")
        for call in result["overhead"]["calls"]:
            lines.append(f"  {call['vectors_per_call']} vector(s), top {call['top_k']}: service "
                         f"{call['service_ms']['p50']:.1f}/{call['service_ms']['p99']:.1f} ms, pymilvus "
                         f"{call['pymilvus_ms']['p50']:.1f}/{call['pymilvus_ms']['p99']:.1f} ms (p50/p99); "
                         f"ratio {call['ratio_p50']:.2f}x p50, {call['ratio_p99']:.2f}x p99 "
                         f"({call['calls']} pairs)")
            first, second = call["first_ms"], call["second_ms"]
            lines.append(f"    p50 when first / second: service {first['service']['p50']:.1f}/"
                         f"{second['service']['p50']:.1f} ms, pymilvus {first['direct']['p50']:.1f}/"
                         f"{second['direct']['p50']:.1f} ms")
        health, in_process = result["overhead"]["health_check_ms"], result["overhead"]["store_in_process_ms"]
        lines.append(f"  the hop taken apart (1 vector): health check through the service {health['p50']:.2f}/"
                     f"{health['p99']:.2f} ms, the service's store called in this process "
                     f"{in_process['p50']:.1f}/{in_process['p99']:.1f} ms")
    lines.append("\n" + result["load_note"])
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.vector_scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000, help="vectors (default 100000; 1000000 at scale)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--warmup-queries", type=int, default=100,
                        help="other queries run, unmeasured, before each setting (default 100)")
    parser.add_argument("--settle-seconds", type=float, default=60.0,
                        help="measure once the loaded segments have not changed for this long (default 60)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--uri", help="a running Milvus server (default: start one)")
    parser.add_argument("--indexes", nargs="+", default=["HNSW", "IVF_FLAT", "IVF_SQ8"],
                        choices=["HNSW", "IVF_FLAT", "IVF_SQ8", "FLAT"])
    parser.add_argument("--hnsw-m", type=int, default=16)
    parser.add_argument("--hnsw-ef-construction", type=int, default=200)
    parser.add_argument("--segment-max-mb", type=int, default=0,
                        help="Milvus dataCoord.segment.maxSize (MB) of the server started here, sealed at 60 %% of "
                             "it (default: Milvus's own, 512 MB sealed at 23 %%)")
    parser.add_argument("--ef", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--nlist", type=int, help="IVF lists (default 4 * sqrt(count))")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--consistency", choices=["Strong", "Session", "Bounded", "Eventually"],
                        default=CONSISTENCY[0], help="Milvus consistency of the searches (default: the search "
                        "service's, %(default)s; Strong waits for a time tick, about 200 ms on a standalone server)")
    parser.add_argument("--skip-overhead", action="store_true", help="leave out the service-vs-pymilvus test")
    parser.add_argument("--overhead-rounds", type=int, default=3,
                        help="passes over the queries in the service-vs-pymilvus test (default 3: 600 pairs of "
                             "one-vector calls with the default 200 queries)")
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE", help="JSON to FILE, or stdout")
    args = parser.parse_args()
    CONSISTENCY[0] = args.consistency
    result = run(args)
    emit(table(result), result, args.json)


if __name__ == "__main__":
    main()
