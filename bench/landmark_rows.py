"""Landmarks as rows of a Milvus collection (issue 30): the layout that a Milvus without sparse vectors allows, the
standalone server the tests start (the `milvus` package, 2.3.5), measured against bench.landmark_index's sparse
windows.

    python -m bench.landmark_rows [--queries 12] [--music DIR] [--work-dir DIR]

Every landmark of the dev music, fingerprinted as the gateway does at ingest (bench.landmark_index's cache), is one
row: its hash (an INT64 scalar under STL_SORT), recording id and time, and the 2-dimension zero vector that a 2.3
collection needs. A 5 s query (a noisy excerpt, as bench.landmark_index makes them) reads the rows of its distinct
hashes with `query(hash in [...])`, 200 hashes per request (a filter expression must stay short), and votes on the
time offset per recording. It reports the rows read per query, the lookup's p50 and largest time and top-1.
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.landmark_index import QueryCase, SourceRecording, fingerprinted, query_cases
from bench.support import sound_files
from devtools.support.milvus import start_milvus_server

COLLECTION = "landmark_rows"
INSERT_BATCH = 20_000
HASHES_PER_QUERY = 200
QUERY_ROW_LIMIT = 16_384  # Milvus's largest query result
OFFSET_BIN_MS = 20


def create_rows_collection(client: object) -> None:
    from pymilvus import DataType

    schema = client.create_schema(auto_id=True)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("hash", DataType.INT64)
    schema.add_field("audio_id", DataType.INT64)
    schema.add_field("time_ms", DataType.INT32)
    schema.add_field("unused", DataType.FLOAT_VECTOR, dim=2)
    index = client.prepare_index_params()
    index.add_index("unused", index_type="FLAT", metric_type="L2")
    index.add_index("hash", index_type="STL_SORT")
    client.create_collection(COLLECTION, schema=schema, index_params=index)


def insert_rows(client: object, recordings: list[SourceRecording]) -> int:
    total = 0
    for audio_id, recording in enumerate(recordings):
        hashes, times = recording.hashes.astype(np.int64).tolist(), recording.times_ms.tolist()
        for first in range(0, len(hashes), INSERT_BATCH):
            client.insert(COLLECTION, [{"hash": h, "audio_id": audio_id, "time_ms": t, "unused": [0.0, 0.0]}
                                       for h, t in zip(hashes[first:first + INSERT_BATCH],
                                                       times[first:first + INSERT_BATCH], strict=True)])
        total += len(hashes)
    client.flush(COLLECTION)
    client.load_collection(COLLECTION)
    return total


def lookup(client: object, case: QueryCase) -> list[dict[str, int]]:
    distinct = np.unique(case.hashes).astype(np.int64).tolist()
    rows: list[dict[str, int]] = []
    for first in range(0, len(distinct), HASHES_PER_QUERY):
        rows += client.query(COLLECTION, filter=f"hash in {distinct[first:first + HASHES_PER_QUERY]}",
                             output_fields=["hash", "audio_id", "time_ms"], limit=QUERY_ROW_LIMIT)
    return rows


def top_recording(case: QueryCase, rows: list[dict[str, int]]) -> int:
    query_times: dict[int, list[int]] = {}
    for hash_value, time_ms in zip(case.hashes.tolist(), case.times_ms.tolist(), strict=True):
        query_times.setdefault(hash_value, []).append(time_ms)
    votes = Counter((row["audio_id"], (row["time_ms"] - query_ms) // OFFSET_BIN_MS)
                    for row in rows for query_ms in query_times.get(row["hash"], ()))
    return votes.most_common(1)[0][0][0] if votes else -1


def run(args: argparse.Namespace) -> str:
    music = [("music", p) for p in sound_files(args.music)]
    recordings = fingerprinted(music, args.work_dir / f"landmarks-0-{len(music)}.npz")
    cases = query_cases(recordings, {p.name: p for _, p in music}, 5.0, args.queries, args.seed)
    shutil.rmtree(args.work_dir / "milvus-server", ignore_errors=True)
    server = start_milvus_server(args.work_dir / "milvus-server")
    try:
        from pymilvus import MilvusClient

        client = MilvusClient(uri=server.uri)
        create_rows_collection(client)
        started = time.perf_counter()
        total = insert_rows(client, recordings)
        adding_s = time.perf_counter() - started
        latencies, rows_read, right = [], [], 0
        for case in cases:
            started = time.perf_counter()
            rows = lookup(client, case)
            latencies.append((time.perf_counter() - started) * 1000)
            rows_read.append(len(rows))
            right += top_recording(case, rows) == case.source
        hours = sum(r.duration_ms for r in recordings) / 3_600_000
        return (f"Milvus {client.get_server_version()}: {total:,} landmark rows ({hours:.2f} catalog hours), added "
                f"at {total / adding_s:,.0f} rows/s; 5 s query ({len(cases)}): {np.median(rows_read):,.0f} rows "
                f"read (median), lookup p50 {np.percentile(latencies, 50):.0f} ms, largest {max(latencies):.0f} ms, "
                f"top-1 {right / len(cases):.3f}")
    finally:
        server.stop()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.landmark_rows", description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--music", type=Path, default=Path("/tmp/dev-music"))
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/landmark-rows"))
    return parser.parse_args(argv)


def main() -> None:
    print(run(parse_args()))


if __name__ == "__main__":
    main()
