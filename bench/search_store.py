"""Measures the store: upsert throughput and per-query search latency on random unit vectors.

    python -m bench.search_store --uri ./var/bench.db                 # Milvus Lite
    python -m bench.search_store --uri http://127.0.0.1:19530         # a Milvus server
"""

from __future__ import annotations

import argparse
import time
import uuid

import numpy as np

from audiosearch.search.server import route_pymilvus_logs
from audiosearch.search.store import CONSISTENCY_LEVELS, INDEX_TYPES, MilvusStore, Segment, StoreConfig


def _unit_vectors(count: int, dim: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _upsert(store: MilvusStore, name: str, vectors: np.ndarray, batch: int) -> float:
    audio_ids = [uuid.uuid4().hex for _ in range(max(1, len(vectors) // 20))]
    segments = [Segment(i, audio_ids[i % len(audio_ids)], i, i + 1.0, v) for i, v in enumerate(vectors)]
    started = time.perf_counter()
    for start in range(0, len(segments), batch):
        store.upsert(name, segments[start:start + batch])
    return time.perf_counter() - started


def _latencies_ms(store: MilvusStore, name: str, queries: np.ndarray, top_k: int) -> np.ndarray:
    timings = []
    for query in queries:
        started = time.perf_counter()
        store.search(name, query[None, :], top_k)
        timings.append((time.perf_counter() - started) * 1000)
    return np.array(timings)


def run(args: argparse.Namespace) -> None:
    route_pymilvus_logs()
    config = StoreConfig(uri=args.uri, index_type=args.index_type, consistency=args.consistency)
    store = MilvusStore(config)
    name = f"bench_{uuid.uuid4().hex[:8]}"
    store.ensure_collection(name, args.dim)
    try:
        vectors = _unit_vectors(args.count, args.dim, seed=1)
        elapsed = _upsert(store, name, vectors, args.batch)
        print(f"{config.effective_index_type} on {'Milvus Lite' if config.is_lite else args.uri}, "
              f"consistency {args.consistency}: upserted {args.count} x {args.dim}-d in {elapsed:.1f} s "
              f"({args.count / elapsed:.0f} vectors/s, batches of {args.batch})")
        queries = vectors[np.random.default_rng(2).choice(args.count, args.queries, replace=False)]
        store.search(name, queries[:1], args.top_k)  # warm-up
        timings = _latencies_ms(store, name, queries, args.top_k)
        print(f"single-vector search, top {args.top_k}: p50 {np.percentile(timings, 50):.1f} ms, "
              f"p95 {np.percentile(timings, 95):.1f} ms, mean {timings.mean():.1f} ms over {args.queries}")
        started = time.perf_counter()
        store.search(name, queries[:args.batch_queries], args.top_k)
        batched_ms = (time.perf_counter() - started) * 1000
        print(f"one call with {args.batch_queries} query vectors: {batched_ms:.1f} ms")
    finally:
        store.drop_collection(name)
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.search_store", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uri", required=True)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=500, help="segments per upsert call")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch-queries", type=int, default=32)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--index-type", default="auto", choices=["auto", *INDEX_TYPES])
    parser.add_argument("--consistency", default="Strong", choices=CONSISTENCY_LEVELS)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
