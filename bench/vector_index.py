"""Vector index types and compressions for a catalog of 1,000 hours (issue 30): recall@10 against the memory each
takes on a real Milvus 2.3.5 server, a 5 s query's search latency and the build time, per candidate.

    python -m bench.vector_index [--count 100000] [--source synthetic|catalog] [--candidates FLAT HNSW IVF_SQ8 ...]
                                 [--batches 60] [--rounds 2] [--windows-per-hour 1800] [--json [FILE]]

The vectors. `--source catalog` takes bench.catalog_scale's: the real segment vectors of the dev sounds and the dev
music (its cached source, ingested through the pipeline when missing), then copy after copy of every recording
turned toward another one to a cosine drawn from the real nearest-other-recording distribution
(catalog_scale.replica), until there are --count. `--source synthetic` takes bench.vector_scale's clustered unit
vectors (recordings of 20 segments around centres that share a low-rank structure). The queries are noisy copies of
stored vectors (cosine about 0.9, a re-recording of a known sound), sent as a 5 s query sends them: one search of
--batch windows (a 5 s query cut at the query hop of 0.25 s has 13 windows; audiosearch/gateway/audio/segments.py)
with top 64 (the gateway's HITS_PER_SEGMENT) and the hit fields the search service asks for. The exact top 10 of
each query over all --count vectors at 2048-d is computed by brute force (numpy); recall@10 is the share of it in
the first 10 hits.

The candidates (CANDIDATES): FLAT (exact, the reference), HNSW (M 16, efConstruction 200; ef 64 and 128),
IVF_FLAT, IVF_SQ8 and IVF_PQ (m 64 or 128, nbits 8), each with nlist --nlist (the search service's default, 1024)
and several nprobe; and a PCA projection (fitted on --pca-sample stored vectors, 2048 -> 512 or 256), then HNSW or
IVF_SQ8 on the projected vectors, with recall still against the exact 2048-d top 10. A projection stores
W (x - mean) and searches with W q by inner product, which ranks as x . q does up to the dropped components; its
"ceiling" is the recall@10 of exact search in the projected space.

How each is measured. One `milvus-server` (devtools/support/milvus.py) under a temporary folder; a collection with
the search service's own schema (audiosearch.search.store) per dimension, filled with the vectors and flushed. Per
candidate: the index built and loaded (bench.vector_scale.build: the build time includes one load), the collection
released and the server restarted (so that the memory of earlier candidates, which an allocator may keep, does not
count), its resident memory read from /proc, the collection loaded and left to settle (bench.vector_scale.settle:
sealed segments unchanged and the server idle), the memory read again: the growth is what the loaded collection
holds in the query node, index, scalar fields and all; per vector it is extrapolated to 10, 100 and 1,000 catalog
hours at --windows-per-hour (1,800: the stored windows are 2 s long at a 2 s hop, GatewaySettings'
default_window_seconds and default_hop_seconds; bench.catalog_scale counted 1,994 vectors in its first catalog
hour, short sounds taking a window or two each). Then, per search setting, one pass of other queries to warm up and
--rounds timed passes over the measured ones.

2048-d float32 is 8 KiB a vector: on this 2-core, 24 GB machine run 100,000 to 300,000 and read bytes per vector
and the recall as the basis for the extrapolation; an IVF's recall at a fixed nprobe falls as its lists grow, so
measure again at the scale you deploy. Several runs with different --candidates each print their own table; run
them one at a time on a shared machine, each in a few minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from pymilvus import MilvusClient

from audiosearch.search.store import HIT_FIELDS, METRIC, VECTOR_FIELD, MilvusStore, StoreConfig, query_bytes
from bench.metrics import emit, percentiles
from bench.support import machine, shared_load_note, tree_rss_bytes
from bench.vector_scale import NAME, PREFIX, ExactTopK, build, chunks, settle
from devtools.support.milvus import MilvusServer, start_milvus_server

DIM = 2048
TOP_K = 64  # the gateway's HITS_PER_SEGMENT: what a query window asks for
RECALL_K = 10
WINDOWS_PER_5S_QUERY = 13  # (5 s - a 2 s window) / the 0.25 s query hop + 1
WINDOWS_PER_HOUR = 1800  # 2 s windows at a 2 s hop
HOURS = (10, 100, 1000)
QUERY_NOISE = 0.5  # a unit noise vector of this length: cosine about 0.9 to the stored vector
INSERT_BATCH = 1000
EXACT_CHUNK = 20_000
CONSISTENCY = "Bounded"  # the search service's
HNSW_BUILD = {"M": 16, "efConstruction": 200}
NLIST = 1024  # the search service's default (StoreConfig.ivf_nlist)
NPROBE = (8, 16, 32, 64)
PROJECTED_DIMS = (512, 256)
RESTARTED_WAIT_S = 10.0  # after a restart, before the idle memory is read
SCALAR_BYTES = 8 + 4 + 4 + 16  # segment_id, start_s, end_s, and an audio id of ~16 characters


# ---------------------------------------------------------------------------------------------- the candidates


@dataclasses.dataclass(frozen=True)
class Candidate:
    name: str
    index_type: str
    build_params: dict[str, int]
    search_key: str  # "ef", "nprobe" or "" (FLAT)
    search_values: tuple[int, ...]
    dim: int = DIM  # the projected dimension, or DIM

    def search_params(self, value: int | None) -> dict:
        return {"metric_type": METRIC, "params": {self.search_key: value} if self.search_key else {}}

    def model_bytes_per_vector(self) -> int:
        """What the index holds per vector by its own layout (HNSW: the vectors and the level-0 links; IVF: the
        code and the id), plus the scalar fields: the floor a measured figure sits above."""
        code = {"FLAT": 4 * self.dim, "IVF_FLAT": 4 * self.dim + 8, "IVF_SQ8": self.dim + 8,
                "HNSW": 4 * self.dim + 2 * self.build_params.get("M", 0) * 4,
                "IVF_PQ": self.build_params.get("m", 0) * self.build_params.get("nbits", 8) // 8 + 8}
        return code[self.index_type] + SCALAR_BYTES


def candidates(nlist: int = NLIST) -> dict[str, Candidate]:
    ivf = {"nlist": nlist}
    found = [Candidate("FLAT", "FLAT", {}, "", (0,)),
             Candidate("HNSW", "HNSW", HNSW_BUILD, "ef", (64, 128)),
             Candidate("IVF_FLAT", "IVF_FLAT", ivf, "nprobe", NPROBE),
             Candidate("IVF_SQ8", "IVF_SQ8", ivf, "nprobe", NPROBE),
             Candidate("IVF_PQ64", "IVF_PQ", {**ivf, "m": 64, "nbits": 8}, "nprobe", NPROBE),
             Candidate("IVF_PQ128", "IVF_PQ", {**ivf, "m": 128, "nbits": 8}, "nprobe", NPROBE)]
    for dim in PROJECTED_DIMS:
        found += [Candidate(f"PCA{dim}_HNSW", "HNSW", HNSW_BUILD, "ef", (64, 128), dim),
                  Candidate(f"PCA{dim}_IVF_SQ8", "IVF_SQ8", ivf, "nprobe", NPROBE, dim)]
    return {candidate.name: candidate for candidate in found}


# --------------------------------------------------------------------------------------------------- the data


def unit_rows(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def synthetic_vectors(count: int, seed: int) -> np.ndarray:
    """bench.vector_scale's clustered unit vectors."""
    return np.concatenate([vectors for _, vectors in chunks(count, seed)])


def catalog_vectors(count: int, seed: int, sounds: Path, music: Path, work_dir: Path) -> tuple[np.ndarray, str]:
    """bench.catalog_scale's vectors: the originals, then copy after copy of every recording; and what they are."""
    from bench.catalog_scale import load_source, positions, replica, replication_for

    source = load_source(sounds, music, seed, work_dir)
    per_round = sum(len(recording.vectors) for recording in source.recordings)
    replication = replication_for(source, seed, -(-count // per_round))
    found, total = [], 0
    for copy, index in positions(len(source.recordings)):
        vectors = replica(source.recordings[index], index, copy, replication).vectors
        found.append(vectors)
        total += len(vectors)
        if total >= count:
            break
    model = source.collection.model
    about = (f"{len(source.recordings)} recordings ({source.hours():.2f} h, {per_round:,} vectors) of model "
             f"{model.name}:{model.version}, replicated")
    return np.concatenate(found)[:count].astype(np.float32), about


def noisy_copies(vectors: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Copies of `count` randomly chosen rows, each moved by a random unit vector of length QUERY_NOISE."""
    picked = rng.choice(len(vectors), size=count, replace=False)
    noise = unit_rows(rng.standard_normal((count, vectors.shape[1])).astype(np.float32))
    return unit_rows(vectors[picked] + QUERY_NOISE * noise)


def exact_top_k(queries: np.ndarray, vectors: np.ndarray, k: int = RECALL_K) -> np.ndarray:
    """The ids (row numbers) of each query's k best by inner product, by brute force."""
    exact = ExactTopK(queries, k)
    for start in range(0, len(vectors), EXACT_CHUNK):
        exact.add(start, vectors[start:start + EXACT_CHUNK])
    return exact.ids


def recall_at_k(found: Sequence[Sequence[int]], truth: np.ndarray, k: int = RECALL_K) -> float:
    """The share of each query's true top k among the first k it found, over all queries."""
    hits = sum(len({int(i) for i in ids[:k]} & {int(i) for i in row[:k]}) for ids, row in zip(found, truth,
                                                                                             strict=True))
    return hits / (k * len(truth)) if len(truth) else 0.0


@dataclasses.dataclass(frozen=True)
class Projection:
    mean: np.ndarray  # (DIM,)
    basis: np.ndarray  # (dim, DIM), orthonormal rows: the principal directions, largest variance first

    @classmethod
    def fit(cls, sample: np.ndarray, dim: int) -> Projection:
        mean = sample.mean(axis=0)
        centred = (sample - mean).astype(np.float64)
        _, eigenvectors = np.linalg.eigh(centred.T @ centred)
        return cls(mean.astype(np.float32), eigenvectors[:, ::-1][:, :dim].T.astype(np.float32))

    def stored(self, vectors: np.ndarray) -> np.ndarray:
        return ((vectors - self.mean) @ self.basis.T).astype(np.float32)

    def query(self, queries: np.ndarray) -> np.ndarray:
        """Without the mean: x . q - mean . q ranks the stored x as x . q does."""
        return (queries @ self.basis.T).astype(np.float32)

    def explained(self, sample: np.ndarray) -> float:
        centred = sample - self.mean
        return float(np.sum((centred @ self.basis.T) ** 2) / np.sum(centred**2))


def extrapolated_bytes(bytes_per_vector: float, windows_per_hour: float, hours: Sequence[float] = HOURS
                       ) -> dict[str, float]:
    return {f"{h:g}h": bytes_per_vector * windows_per_hour * h for h in hours}


# ------------------------------------------------------------------------------------------------ the server


class Server:
    """A milvus-server of the bench's own, restarted before each memory reading."""

    def __init__(self, folder: Path) -> None:
        self._server: MilvusServer = start_milvus_server(folder)
        self.client = MilvusClient(uri=self._server.uri, timeout=600)

    @property
    def uri(self) -> str:
        return self._server.uri

    @property
    def pid(self) -> int:
        return self._server.process.pid

    def restart(self) -> None:
        # pymilvus keeps trying to recover the closed client's connection while the server is down, and logs a
        # traceback for every failed try.
        logging.getLogger("pymilvus.client.connection_manager").setLevel(logging.ERROR)
        self.client.close()
        self._server.restart()
        self.client = MilvusClient(uri=self._server.uri, timeout=600)

    def stop(self) -> None:
        self.client.close()
        self._server.stop()


@contextlib.contextmanager
def server() -> Iterator[Server]:
    with tempfile.TemporaryDirectory(prefix="audiosearch-vector-index-") as folder:
        started = Server(Path(folder))
        try:
            yield started
        finally:
            started.stop()


def fill(milvus: Server, vectors: np.ndarray) -> float:
    """A fresh collection of the search service's schema holding `vectors` (ids are row numbers); the seconds."""
    with contextlib.suppress(Exception):
        milvus.client.drop_collection(PREFIX + NAME)
    store = MilvusStore(StoreConfig(uri=milvus.uri, index_type="FLAT", collection_prefix=PREFIX, timeout_s=600))
    store.ensure_collection(NAME, vectors.shape[1])
    store.close()
    started = time.perf_counter()
    for start in range(0, len(vectors), INSERT_BATCH):
        rows = [{"segment_id": start + i, "audio_id": f"r{(start + i) // 20:015d}", "start_s": float(i),
                 "end_s": float(i + 2), VECTOR_FIELD: vector}
                for i, vector in enumerate(vectors[start:start + INSERT_BATCH])]
        milvus.client.insert(PREFIX + NAME, rows)
    milvus.client.flush(PREFIX + NAME)
    print(f"  inserted {len(vectors)} vectors of {vectors.shape[1]}-d", file=sys.stderr)
    return time.perf_counter() - started


# ------------------------------------------------------------------------------------------------ measuring


@dataclasses.dataclass(frozen=True)
class Workload:
    queries: np.ndarray  # the measured ones, as sent (projected for a projected candidate)
    warmup: np.ndarray
    truth: np.ndarray  # exact 2048-d top RECALL_K of each measured query
    batch: int
    rounds: int


def search_batch(client: MilvusClient, queries: np.ndarray, params: dict) -> list[list[int]]:
    """One search as a query sends it: all its windows, top 64, the hit fields; the ids of each window's hits."""
    found = client.search(PREFIX + NAME, data=query_bytes(queries), anns_field=VECTOR_FIELD, limit=TOP_K,
                          search_params=params, output_fields=HIT_FIELDS, consistency_level=CONSISTENCY)
    return [[int(hit["id"]) for hit in hits] for hits in found]


def measure_setting(client: MilvusClient, workload: Workload, params: dict) -> dict:
    for start in range(0, len(workload.warmup), workload.batch):
        search_batch(client, workload.warmup[start:start + workload.batch], params)
    latencies, found = [], []
    for round_number in range(workload.rounds):
        for start in range(0, len(workload.queries), workload.batch):
            started = time.perf_counter()
            ids = search_batch(client, workload.queries[start:start + workload.batch], params)
            latencies.append((time.perf_counter() - started) * 1000)
            if round_number == 0:
                found.extend(ids)
    return {"params": params["params"], "recall_at_10": recall_at_k(found, workload.truth),
            "searches": len(latencies), **{f"{key}_ms": value for key, value in percentiles(latencies).items()}}


def measure_candidate(milvus: Server, candidate: Candidate, workload: Workload, count: int, settle_s: float,
                      windows_per_hour: float) -> dict:
    print(f"building {candidate.name} ({candidate.index_type} {candidate.build_params}) ...", file=sys.stderr)
    build_seconds = build(milvus.client, candidate.index_type, candidate.build_params, count)
    milvus.client.release_collection(PREFIX + NAME)
    milvus.restart()
    time.sleep(RESTARTED_WAIT_S)
    idle = tree_rss_bytes(milvus.pid) or 0
    started = time.perf_counter()
    milvus.client.load_collection(PREFIX + NAME, timeout=3600)
    load_seconds = time.perf_counter() - started
    segment_rows = settle(milvus.client, settle_s, milvus.pid)
    loaded = tree_rss_bytes(milvus.pid) or 0
    per_vector = (loaded - idle) / count
    entry = {"name": candidate.name, "index": candidate.index_type, "dim": candidate.dim,
             "build_params": candidate.build_params, "build_seconds": build_seconds, "load_seconds": load_seconds,
             "segment_rows": segment_rows, "rss_idle_bytes": idle, "rss_loaded_bytes": loaded,
             "bytes_per_vector": per_vector, "model_bytes_per_vector": candidate.model_bytes_per_vector(),
             "extrapolated_bytes": extrapolated_bytes(per_vector, windows_per_hour), "search": []}
    for value in candidate.search_values:
        entry["search"].append(measure_setting(milvus.client, workload, candidate.search_params(value)))
        print(f"  {entry['search'][-1]}", file=sys.stderr)
    return entry


def run(args: argparse.Namespace) -> dict:
    before = machine()
    chosen = [candidates(args.nlist)[name] for name in args.candidates]
    started = time.perf_counter()
    if args.source == "catalog":
        vectors, about = catalog_vectors(args.count, args.seed, args.sounds, args.music, args.work_dir)
    else:
        vectors, about = synthetic_vectors(args.count, args.seed), "bench.vector_scale's clustered unit vectors"
    rng = np.random.default_rng(args.seed + 1)
    queries = noisy_copies(vectors, args.batches * args.batch, rng)
    warmup = noisy_copies(vectors, args.warmup_batches * args.batch, rng)
    truth = exact_top_k(queries, vectors)
    result: dict = {"count": args.count, "dim": DIM, "source": args.source, "vectors": about, "batch": args.batch,
                    "batches": args.batches, "rounds": args.rounds, "top_k": TOP_K,
                    "windows_per_hour": args.windows_per_hour, "raw_bytes": vectors.nbytes,
                    "data_seconds": time.perf_counter() - started, "projections": {}, "candidates": []}
    with server() as milvus:
        for dim in sorted({candidate.dim for candidate in chosen}, reverse=True):
            if dim == DIM:
                stored, sent, sent_warmup = vectors, queries, warmup
            else:
                sample = vectors[rng.choice(len(vectors), size=min(args.pca_sample, len(vectors)), replace=False)]
                projection = Projection.fit(sample, dim)
                stored, sent, sent_warmup = projection.stored(vectors), projection.query(queries), \
                    projection.query(warmup)
                ceiling = recall_at_k(exact_top_k(sent, stored), truth)
                result["projections"][str(dim)] = {"explained_variance": projection.explained(sample),
                                                   "exact_recall_at_10": ceiling, "fit_sample": len(sample)}
                print(f"PCA {dim}: {result['projections'][str(dim)]}", file=sys.stderr)
            insert_seconds = fill(milvus, stored)
            workload = Workload(sent, sent_warmup, truth, args.batch, args.rounds)
            for candidate in (c for c in chosen if c.dim == dim):
                entry = measure_candidate(milvus, candidate, workload, args.count, args.settle_seconds,
                                          args.windows_per_hour)
                result["candidates"].append({**entry, "insert_seconds": insert_seconds})
    result["machine_before"], result["machine_after"] = before, machine()
    result["load_note"] = shared_load_note(before, result["machine_after"])
    return result


# ----------------------------------------------------------------------------------------------------- report


def table(result: dict) -> str:
    hours = list(HOURS)
    lines = [f"{result['count']:,} vectors x {result['dim']} ({result['vectors']}; raw {result['raw_bytes'] / 1e9:.2f} "
             f"GB); {result['batches']} searches of {result['batch']} windows, top {result['top_k']}, x "
             f"{result['rounds']} rounds; memory extrapolated at {result['windows_per_hour']:g} windows per hour",
             f"{'candidate':16s} {'build s':>7s} {'B/vector':>8s} {'(model)':>7s} "
             + " ".join(f"{f'GB@{h}h':>8s}" for h in hours)
             + f" {'search':>11s} {'R@10':>6s} {'p50 ms':>7s} {'p99 ms':>7s}"]
    for entry in result["candidates"]:
        for number, search in enumerate(entry["search"]):
            if number == 0:
                gigabytes = " ".join(f"{entry['extrapolated_bytes'][f'{h}h'] / 1e9:8.2f}" for h in hours)
                head = (f"{entry['name']:16s} {entry['build_seconds']:7.0f} {entry['bytes_per_vector']:8.0f} "
                        f"{entry['model_bytes_per_vector']:7d} {gigabytes}")
            else:
                head = " " * (16 + 8 + 9 + 8 + 9 * len(hours))
            setting = ", ".join(f"{key}={value}" for key, value in search["params"].items()) or "exact"
            lines.append(f"{head} {setting:>11s} {search['recall_at_10']:6.3f} {search['p50_ms']:7.1f} "
                         f"{search['p99_ms']:7.1f}")
    for dim, projection in result["projections"].items():
        lines.append(f"PCA to {dim}: {projection['explained_variance']:.3f} of the variance (fitted on "
                     f"{projection['fit_sample']:,}); exact search in the projection: recall@10 "
                     f"{projection['exact_recall_at_10']:.3f}")
    for entry in result["candidates"]:
        lines.append(f"{entry['name']}: RSS {entry['rss_idle_bytes'] / 1e9:.2f} GB idle, "
                     f"{entry['rss_loaded_bytes'] / 1e9:.2f} GB loaded; {len(entry['segment_rows'])} sealed "
                     f"segments of {', '.join(map(str, entry['segment_rows']))} rows")
    lines.append(result["load_note"])
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.vector_index", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000, help="stored vectors (default %(default)s)")
    parser.add_argument("--source", choices=["synthetic", "catalog"], default="catalog",
                        help="the vectors (default %(default)s: bench.catalog_scale's real ones, replicated)")
    parser.add_argument("--candidates", nargs="+", default=list(candidates()), choices=list(candidates()),
                        metavar="NAME", help=f"of {', '.join(candidates())} (default: all)")
    parser.add_argument("--batch", type=int, default=WINDOWS_PER_5S_QUERY,
                        help="query windows per search (default %(default)s, a 5 s query's)")
    parser.add_argument("--batches", type=int, default=60, help="measured searches (default %(default)s)")
    parser.add_argument("--warmup-batches", type=int, default=20,
                        help="other searches, unmeasured, before each setting (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=2, help="timed passes over the searches (default %(default)s)")
    parser.add_argument("--nlist", type=int, default=NLIST, help="IVF lists per segment (default %(default)s)")
    parser.add_argument("--pca-sample", type=int, default=20_000, help="vectors the PCA is fitted on")
    parser.add_argument("--settle-seconds", type=float, default=20.0,
                        help="measure once the loaded segments have not changed for this long (default 20)")
    parser.add_argument("--windows-per-hour", type=float, default=WINDOWS_PER_HOUR,
                        help="stored vectors per catalog hour, for the extrapolation (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sounds", type=Path, default=Path("/tmp/dev-sounds"))
    parser.add_argument("--music", type=Path, default=Path("/tmp/dev-music"))
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/audiosearch-catalog-scale"),
                        help="bench.catalog_scale's source cache (default %(default)s)")
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE", help="JSON to FILE, or stdout")
    args = parser.parse_args()
    result = run(args)
    emit(table(result), result, args.json)


if __name__ == "__main__":
    main()
