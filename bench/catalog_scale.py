"""The catalog at scale: storage per catalog hour, the rate of adding to the index, the cost of each retrieval step
and bench.quality's figures, on synthetic catalogs of many hours built from real landmarks and vectors.

    python -m bench.catalog_scale [--hours 10 100] [--sounds DIR] [--music DIR] [--queries-5s 60]
                                  [--queries-60s 20] [--quality-at 10] [--quality-queries 20] [--hash-bucket 64]
                                  [--work-dir DIR] [--keep] [--json [FILE]]

The source. A suite of its own (bench.support.own_suite: Milvus Lite, SQLite, Triton) ingests the dev sounds that
bench.quality indexes with the same --seed (its held-back fifth is left out of everything here, so that its
true-negative rate keeps its meaning against the big catalog) and the dev music, through the gateway; the
catalog's records and segments and the search service's vectors and landmarks are then read back from their stores
(audiosearch.catalog.store; audiosearch.search.store and the landmark index, audiosearch.search.landmark_index) and
cached under --work-dir, keyed by the files, the seed and the weights, so a second run does not embed again.

The big catalog. A fresh SQLite catalog and Milvus Lite file (as `make run` has them: the vectors and the landmark
index in the same file) under --work-dir, written through the services' own store modules, as an ingest writes
them without the gRPC hops: CatalogStore.create_audio (PENDING, with the segments), MilvusStore.upsert (the
vectors, in batches of recordings), LandmarkIndex.upsert (a recording's landmarks as windows of hashes; the batch's
recordings from LANDMARK_WRITERS threads at once, which Milvus Lite's group commit writes together, as it does for
concurrent ingests), then set_audio_status READY. The originals go in first, as they were ingested (their ids,
hashes, times and vectors; their sha256, so bench.quality's ingest finds them), then copy after copy of every
source until the catalog holds the next --hours. A copy is made so as not to be a duplicate,
which a real catalog of distinct sounds would not hold either, while what the lookups read stays real:

    new ids    a new record id (so new segment ids), the source's name with " (copy N)", the source's
               sha256 hashed with N (the catalog dedupes by sha256); metadata and tags are the source's
    times      the recording cut at a seeded point (on the 10 ms landmark grid) and its two parts swapped: every
               landmark time and segment start moves by the same rotation, modulo the duration, so a copy has
               as many landmarks, at the same density, as its source
    hashes     every hash replaced through copy N's code book (HashCodeBook): the source's distinct hashes
               ranked by how many times the source holds each, in buckets of --hash-bucket neighbouring ranks,
               and copy N takes for the hash at place j of a bucket the one at place j + N (round the bucket).
               So each stored hash stands for one about as frequent: the big catalog's count of every hash is
               its count in the source times the copies, as with exact copies, and the hot hashes, which decide
               what a lookup reads, stay as hot. Being a bijection, it keeps a copy's own structure (a repeated
               phrase repeats its hashes); mapped back, a copy's hashes are its source's exactly. No hash maps to
               itself or to another copy's (the buckets are made larger than the number of copies), so a copy
               lines up neither with its source nor with another copy, which exact copies would: each would
               answer a query of its source as well as the source itself. Moving each hash's anchor frequency
               by a few bins (a transposed copy) would keep the pairs' shapes but spread the hot hashes: on
               the dev sounds and music it reads 2.5 times fewer rows than real audio would.
    vectors    each copy turned, as a whole, toward another source recording (a seeded one; the unit mean of
               its vectors), to a cosine with its source drawn from the real distribution of the cosine between
               a segment and its nearest segment of another recording. So a copy sits as near its source as
               real recordings sit to each other, in directions real embeddings take: no near-duplicates to fill
               the top 64, no strangers outside the cone real embeddings fill.

How real the hash distribution stays is measured rather than assumed: from the source alone, the rows a lookup
reads per query landmark and per million stored landmarks, for the landmarks of one recording against (a) the
other real recordings, (b) the copies made as here, (c) exact copies. (a) is what more real audio would give.

Per scale it then measures the stores and starts a suite on them. Storage per catalog hour: the landmarks are the
landmark collection's folder in the Milvus Lite file (`<file>/collections/audiosearch_scale__landmarks`, its data
files) with its hash counts' beside it, the vectors the vector collection's folder (data and FLAT index files), the
records the catalog's tables with their indexes (SQLite's dbstat; the legacy `landmarks` table, empty here, counts
under the catalog's other bytes). What the landmark index holds in memory is not on disk: it shows in the search
service's resident memory (its process tree; Milvus Lite runs in it), read after the queries. The suite times each
retrieval step of a search as the gateway makes it: the gateway's own Query.match runs in this process, its calls to the
search and catalog services go over gRPC and are timed per method: SearchSegments (the vector step) and
MatchLandmarks (the landmark step) on the search service, BatchGetAudio (the record read) on the catalog. Queries
are 5 s and 60 s excerpts of originals in the catalog (seeded starts; a 5 s query comes from a sound of at least 5 s
or from a music track, alternately, a 60 s one from a track) with white noise at 20 dB SNR, sent as 16-bit WAV;
each is embedded once (Triton in the suite), then matched at every scale with min_score -1 (so the record read
always runs) after a few other queries to warm up. The gateway's orphan sweep is pushed out of the window, and
timing starts once the suite's processes are idle. At the scales --quality-at names, bench.quality runs against the
suite on the big collection (its ingest finds the originals by sha256; its calibration runs on the big collection).

1000 hours do not fit a small machine: Milvus Lite holds every vector in memory (8 KiB each) and its landmark
index takes about 120 MB of memory per catalog hour (bench.landmark_index), so size --hours by the free memory and
disk (it checks the disk).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import soundfile

from audiosearch.catalog.database import Database
from audiosearch.catalog.migrations import apply_migrations
from audiosearch.catalog.records import AudioStatus, Collection, NewAudio, NewSegment
from audiosearch.catalog.store import CatalogStore
from audiosearch.common.errors import Unavailable
from audiosearch.common.settings import load_settings
from audiosearch.gateway.audio.decoding import AudioLimits, decode_audio
from audiosearch.gateway.audio.pipeline import AudioPipeline, EmbeddedAudio
from audiosearch.gateway.backends.embedder import EmbedderClient
from audiosearch.gateway.backends.stubs import Backends
from audiosearch.gateway.query.search import Query
from audiosearch.gateway.settings import GatewaySettings
from audiosearch.search.hash_counts import COLLECTION_SUFFIX as HASH_COUNTS_SUFFIX
from audiosearch.search.landmark_index import COLLECTION_SUFFIX, LandmarkConfig, LandmarkIndex
from audiosearch.search.store import MilvusStore, Segment, StoreConfig
from audiosearch.v1 import audiosearch_pb2 as pb
from audiosearch.v1 import audiosearch_pb2_grpc
from bench import transforms
from bench.metrics import emit, percentiles
from bench.support import BenchSuite, machine, own_suite, sound_files, tree_cpu_seconds, tree_rss_bytes
from devtools.support.gateway import ensure_collection, ingest_messages

DEFAULT_MUSIC = Path("/tmp/dev-music")
DEFAULT_SOUNDS = Path("/tmp/dev-sounds")
DEFAULT_WORK_DIR = Path("/tmp/audiosearch-catalog-scale")
SOURCE_COLLECTION = "scale_source"
CATALOG_COLLECTION = "scale"
QUERY_RATE = 44_100
QUERY_SNR_DB = 20.0
QUERY_LENGTHS = (5.0, 60.0)
LANDMARK_GRID_MS = 10  # audiosearch/gateway/audio/fingerprints.py HOP_SECONDS: landmark times are whole frames
# Hashes of neighbouring frequency ranks a copy's hashes are drawn from: small keeps each hash as frequent as the one
# it stands for, and more than the copies keeps copies apart (HashCodeBook).
HASH_BUCKET = 64
VECTOR_BATCH_SEGMENTS = 2000  # vectors per MilvusStore.upsert here (the gateway sends one recording's)
LANDMARK_WRITERS = 8  # recordings whose landmarks are written at once (as concurrent ingests write them)
NEIGHBOUR_SAMPLE = 2000  # segments whose nearest other recording sets the copies' cosines
READ_BATCH = 50  # recordings per read of vectors from the source's store
# The source's suite waits longer on the embedder than the gateway's default 120 s: a 6-minute track on a machine
# shared with other work can take longer, and the ingest is timed only for the report.
SOURCE_SUITE = {"GATEWAY_EMBED_TIMEOUT_SECONDS": "1800"}
INGEST_ATTEMPTS = 3
SUITE_ATTEMPTS = 3
RETRIED_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED)
# The gateway's own deadline on a backend call; here the calls get far longer, so that a slow step is measured
# instead of cut off, and the ones over it are counted.
GATEWAY_DEADLINE_MS = GatewaySettings.model_fields["rpc_timeout_seconds"].default * 1000
BENCH_DEADLINE_S = 900.0
IDLE_CORES = 0.3  # the whole suite at rest uses a few percent of a core
SETTLE_WINDOW_S = 10.0
SETTLE_LIMIT_S = 900.0
# Landmarks (~8 MB, bench.landmark_index), vectors (~30 MB) and records (~1 MB) per catalog hour: the disk check.
BYTES_PER_HOUR_ESTIMATE = 60 * 1024**2
STEPS = {"SearchSegments": "vectors", "MatchLandmarks": "landmarks", "BatchGetAudio": "records"}


# --------------------------------------------------------------------------------------------------- the source


@dataclasses.dataclass(frozen=True)
class SourceRecording:
    kind: str  # "sound" or "music"
    path: str  # the file it was ingested from
    audio: NewAudio
    segments: tuple[NewSegment, ...]
    hashes: np.ndarray  # uint32, by time
    times_ms: np.ndarray  # int32
    vectors: np.ndarray  # float32 (segments, dim), row i is segment index i

    @property
    def duration_ms(self) -> int:
        """At least one grid step past the last landmark, so a rotation never folds two times together."""
        last = int(self.times_ms.max()) + LANDMARK_GRID_MS if len(self.times_ms) else 0
        return max(round(self.audio.duration_seconds * 1000), last, LANDMARK_GRID_MS)


@dataclasses.dataclass(frozen=True)
class Source:
    collection: Collection
    recordings: list[SourceRecording]
    held_back: list[str]  # bench.quality's held-back sounds, left out
    ingest_seconds: float

    def hours(self, kind: str = "") -> float:
        return sum(r.audio.duration_seconds for r in self.recordings if kind in ("", r.kind)) / 3600


def quality_split(sounds: Path, seed: int) -> tuple[list[Path], list[str]]:
    """(the files bench.quality indexes with this seed, the names it holds back or leaves out)."""
    from bench.quality import load_sounds, split

    loaded, _ = load_sounds(sounds, None, np.random.default_rng(seed))
    indexed, _, _ = split(loaded)
    kept = {sound.name for sound in indexed}
    return [sounds / name for name in sorted(kept)], sorted(s.name for s in loaded if s.name not in kept)


def source_key(files: Sequence[Path], seed: int) -> str:
    """Names and sizes of the files, the seed and the weights the suite would load."""
    from bench.support import checkpoint_env

    digest = hashlib.sha256(json.dumps([seed, checkpoint_env(), os.environ.get("EMBEDDER_UNTRAINED", "")]).encode())
    for path in files:
        digest.update(f"{path.name}:{path.stat().st_size}".encode())
    return digest.hexdigest()[:16]


def load_source(sounds: Path, music: Path, seed: int, work_dir: Path) -> Source:
    """The cached source, or a fresh one ingested through the real pipeline and cached."""
    music_paths = sound_files(music)
    cache = work_dir / f"source-{source_key([*sound_files(sounds), *music_paths], seed)}.pickle"
    if cache.exists():
        print(f"source from {cache}", file=sys.stderr)
        with cache.open("rb") as file:
            return pickle.load(file)  # a cache this bench wrote itself
    sound_paths, held_back = quality_split(sounds, seed)
    source = ingest_source([("sound", p) for p in sound_paths] + [("music", p) for p in music_paths], held_back)
    work_dir.mkdir(parents=True, exist_ok=True)
    with cache.open("wb") as file:
        pickle.dump(source, file, protocol=pickle.HIGHEST_PROTOCOL)
    return source


def ingest_source(files: list[tuple[str, Path]], held_back: list[str]) -> Source:
    """Ingests the files through a suite of its own, then reads the stores it wrote."""
    with suite(SOURCE_SUITE, keep_state=True) as bench:
        state_dir = bench.state_dir
        with grpc.insecure_channel(bench.gateway) as channel:
            client = audiosearch_pb2_grpc.AudioSearchServiceStub(channel)
            ensure_collection(client, SOURCE_COLLECTION)
            started = time.monotonic()
            ids = parallel(lambda item: ingest_file(client, item[1]), files, workers=2, label="source ingest")
            ingest_seconds = time.monotonic() - started
    kinds = {audio_id: (kind, str(path)) for (kind, path), audio_id in zip(files, ids, strict=True) if audio_id}
    source = read_source(state_dir, kinds, held_back, ingest_seconds)
    shutil.rmtree(state_dir, ignore_errors=True)  # kept when the reading fails, to look at
    return source


def ingest_file(client: audiosearch_pb2_grpc.AudioSearchServiceStub, path: Path) -> str:
    """The record id, or "" when the gateway refuses the file; an ingest that the embedder could not serve in time
    (a machine shared with other work) is tried again."""
    messages = ingest_messages(SOURCE_COLLECTION, path.name, path.read_bytes())
    for attempt in range(INGEST_ATTEMPTS):
        try:
            return client.IngestAudio(iter(messages), timeout=3600).audio.id
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                print(f"  {path.name} refused: {error.details()}", file=sys.stderr)
                return ""
            if error.code() not in RETRIED_CODES or attempt == INGEST_ATTEMPTS - 1:
                raise
            print(f"  {path.name}: {error.code().name} ({error.details()}), again", file=sys.stderr)
            time.sleep(10.0 * (attempt + 1))
    raise AssertionError("unreachable")


def read_source(state_dir: Path, kinds: dict[str, tuple[str, str]], held_back: list[str],
                ingest_seconds: float) -> Source:
    database = Database.open(f"sqlite:///{state_dir / 'catalog.db'}", pool_size=1)
    catalog = CatalogStore(database)
    vectors = MilvusStore(StoreConfig(uri=str(state_dir / "milvus.db")))
    landmarks = LandmarkIndex(vectors, LandmarkConfig())  # the suite's search service keeps both in one file
    try:
        ids = sorted(kinds)
        vectors.dimension(SOURCE_COLLECTION)  # attaches to the collection, which loads it
        stored: dict[int, Segment] = {}
        for start in range(0, len(ids), READ_BATCH):
            batch = vectors.segments_of(SOURCE_COLLECTION, ids[start:start + READ_BATCH])
            stored.update({segment.segment_id: segment for segment in batch})
        recordings = [read_recording(catalog, stored, landmarks, audio_id, *kinds[audio_id]) for audio_id in ids]
        collection = catalog.get_collection(SOURCE_COLLECTION)
    finally:
        vectors.close()
        release_lite(str(state_dir / "milvus.db"))
        database.close()
    return Source(collection, recordings, held_back, ingest_seconds)


def release_lite(uri: str) -> None:
    """Milvus Lite serves a file from a thread of the process that opened it and holds the file's lock until that
    process ends, or until it lets go as here: only then can the suite's search service open it."""
    if not StoreConfig(uri=uri).is_lite:
        return
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(uri)


def read_recording(catalog: CatalogStore, stored: dict[int, Segment], landmarks: LandmarkIndex, audio_id: str,
                   kind: str, path: str, collection: str = SOURCE_COLLECTION) -> SourceRecording:
    record = catalog.get_audio(collection, audio_id)
    segments = catalog.segments(collection, audio_id)
    hashes, times_ms = landmarks.landmarks_of(collection, audio_id)
    audio = NewAudio(**{field.name: getattr(record, field.name) for field in dataclasses.fields(NewAudio)})
    return SourceRecording(
        kind, path, audio,
        tuple(NewSegment(s.index, s.start_seconds, s.end_seconds, s.tags) for s in segments),
        hashes.astype(np.uint32), times_ms.astype(np.int32),
        np.stack([stored[s.segment_id].vector for s in segments]).astype(np.float32))


@contextlib.contextmanager
def suite(overrides: dict[str, str], keep_state: bool = False) -> Iterator[BenchSuite]:
    """bench.support's own suite, started again when a start fails: on a machine shared with other benches a
    free port can be taken before a service binds it, or a service killed while it starts."""
    with contextlib.ExitStack() as stack:
        for attempt in range(SUITE_ATTEMPTS):
            try:
                bench = stack.enter_context(own_suite(overrides, keep_state))
                break
            except RuntimeError as error:
                if attempt == SUITE_ATTEMPTS - 1:
                    raise
                print(f"the suite did not start ({str(error).splitlines()[0]}); again", file=sys.stderr)
        yield bench


def parallel(function: Callable[[Any], Any], items: Sequence[Any], workers: int, label: str) -> list[Any]:
    results = []
    started = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        for number, result in enumerate(pool.map(function, items), 1):
            results.append(result)
            if number % 50 == 0 or number == len(items):
                print(f"  {label}: {number}/{len(items)} ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    return results


# ------------------------------------------------------------------------------------------------ replication


@dataclasses.dataclass(frozen=True)
class Replica:
    audio: NewAudio
    segments: tuple[NewSegment, ...]
    hashes: np.ndarray
    times_ms: np.ndarray
    vectors: np.ndarray
    rotation_ms: int = 0  # how far its times moved (modulo the duration)
    cosine: float = 1.0  # of each vector with its source's


@dataclasses.dataclass(frozen=True)
class HashCodeBook:
    """The source's distinct hashes ranked by how often the source holds them (ties in a seeded order), in
    buckets of `bucket` neighbouring ranks (the last bucket takes the remainder too, so none is smaller). Copy c
    gives the hash at place j of its bucket the hash at place (j + c) modulo the bucket's size: a bijection that
    sends every hash to one about as frequent, and, for 0 < c < `bucket`, to another hash than the source's and
    than any other copy's."""

    by_rank: np.ndarray  # uint32 distinct hashes, most frequent first
    bucket: int
    _sorted: np.ndarray  # the same hashes, sorted
    _rank_of_sorted: np.ndarray  # the rank of each

    @classmethod
    def of(cls, hashes: np.ndarray, bucket: int, rng: np.random.Generator) -> HashCodeBook:
        distinct, counts = np.unique(hashes, return_counts=True)
        by_rank = distinct[np.lexsort((rng.random(len(distinct)), -counts))]
        order = np.argsort(by_rank)
        return cls(by_rank, bucket, by_rank[order], order)

    def mapped(self, hashes: np.ndarray, copy: int) -> np.ndarray:
        rank = self._rank_of_sorted[np.searchsorted(self._sorted, hashes)]
        last = max(0, len(self.by_rank) // self.bucket - 1)
        first = np.minimum(rank // self.bucket, last) * self.bucket
        size = np.where(first == last * self.bucket, len(self.by_rank) - first, self.bucket)
        return self.by_rank[first + (rank - first + copy) % size]


@dataclasses.dataclass(frozen=True)
class Replication:
    """How copies are made (module docstring): the seed, the hash code book, the real cosines to draw from and,
    per source recording, the direction it is turned toward when another copies it."""

    seed: int
    code_book: HashCodeBook
    neighbour_cosines: np.ndarray
    centres: np.ndarray  # unit mean vector of each source recording


def rotated(times_ms: np.ndarray, shift_ms: int, duration_ms: int) -> np.ndarray:
    return ((times_ms.astype(np.int64) + shift_ms) % duration_ms).astype(np.int32)


def turned_toward(vectors: np.ndarray, toward: np.ndarray, cosine: float) -> np.ndarray:
    """Each unit row turned toward the unit vector `toward` until its cosine with where it was is `cosine` (a row
    parallel to `toward` stays)."""
    along = toward[None, :] - (vectors @ toward)[:, None] * vectors
    norms = np.linalg.norm(along, axis=1, keepdims=True)
    unit = np.divide(along, norms, out=np.zeros_like(along), where=norms > 1e-6)
    turned = cosine * vectors + np.sqrt(max(0.0, 1.0 - cosine**2)) * unit
    turned[norms[:, 0] <= 1e-6] = vectors[norms[:, 0] <= 1e-6]
    return (turned / np.linalg.norm(turned, axis=1, keepdims=True)).astype(np.float32)


def replica(source: SourceRecording, index: int, copy: int, replication: Replication) -> Replica:
    """Copy `copy` of source recording `index`; copy 0 is the original as ingested."""
    if copy == 0:
        return Replica(source.audio, source.segments, source.hashes, source.times_ms, source.vectors)
    rng = np.random.default_rng([replication.seed, index, copy])
    duration_ms = source.duration_ms
    shift_ms = LANDMARK_GRID_MS * int(rng.integers(0, max(1, duration_ms // LANDMARK_GRID_MS)))
    times = rotated(source.times_ms, shift_ms, duration_ms)
    hashes = replication.code_book.mapped(source.hashes, copy)
    order = np.argsort(times, kind="stable")
    other = int(rng.integers(0, len(replication.centres) - 1))
    other += other >= index  # another recording than the source
    cosine = float(rng.choice(replication.neighbour_cosines))
    vectors = turned_toward(source.vectors, replication.centres[other], cosine)
    shift_s = shift_ms / 1000
    segments = tuple(dataclasses.replace(s, start_seconds=(s.start_seconds + shift_s) % (duration_ms / 1000),
                                         end_seconds=(s.start_seconds + shift_s) % (duration_ms / 1000)
                                         + s.end_seconds - s.start_seconds) for s in source.segments)
    audio = dataclasses.replace(source.audio, name=f"{source.audio.name} (copy {copy})",
                                sha256=hashlib.sha256(f"{source.audio.sha256}:{copy}".encode()).hexdigest())
    return Replica(audio, segments, hashes[order], times[order], vectors, shift_ms, cosine)


def replication_for(source: Source, seed: int, copies: int, bucket: int = HASH_BUCKET) -> Replication:
    """Copies of `source` for up to `copies` copies of each recording (the code book's buckets grow to hold them
    all apart)."""
    vectors = [r.vectors for r in source.recordings]
    centres = np.stack([v.mean(axis=0) for v in vectors])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    code_book = HashCodeBook.of(np.concatenate([r.hashes for r in source.recordings]), max(bucket, copies + 1), rng)
    return Replication(seed, code_book, nearest_other_cosines(vectors, rng), centres.astype(np.float32))


def nearest_other_cosines(vectors: list[np.ndarray], rng: np.random.Generator,
                          sample: int = NEIGHBOUR_SAMPLE) -> np.ndarray:
    """For a seeded sample of segments, the cosine with the nearest segment of another recording."""
    stacked = np.concatenate(vectors)
    owner = np.repeat(np.arange(len(vectors)), [len(v) for v in vectors])
    picked = rng.choice(len(stacked), size=min(sample, len(stacked)), replace=False)
    found = []
    for start in range(0, len(picked), 256):
        rows = picked[start:start + 256]
        cosines = stacked[rows] @ stacked.T
        cosines[owner[rows][:, None] == owner[None, :]] = -np.inf
        found.append(cosines.max(axis=1))
    return np.concatenate(found).astype(np.float32)


def positions(sources: int, start: tuple[int, int] = (0, 0)) -> Iterator[tuple[int, int]]:
    """(copy, source index) in writing order: every original, then every first copy, and so on."""
    copy, index = start
    while True:
        for position in range(index, sources):
            yield copy, position
        copy, index = copy + 1, 0


# ----------------------------------------------------------------------- how real the replicated hashes stay


def lookup_load(source: Source, replication: Replication, copies: int) -> dict[str, float]:
    """Rows a lookup reads per query landmark and per million stored landmarks, a query being one of the source
    recordings (its landmarks as stored): against the other real recordings; against copies 1 to `copies` made as
    here (each query meets the copies of every recording, its own included); against exact copies."""
    per_recording = [np.unique(r.hashes, return_counts=True) for r in source.recordings]
    all_hashes, all_counts = np.unique(np.concatenate([r.hashes for r in source.recordings]), return_counts=True)
    total = float(all_counts.sum())
    self_pairs = sum(float(np.sum(counts.astype(np.float64) ** 2)) for _, counts in per_recording)
    exact = float(np.sum(all_counts.astype(np.float64) ** 2))
    others = (exact - self_pairs) / (total**2 - sum(float(c.sum()) ** 2 for _, c in per_recording))
    made = [_overlap(all_hashes, all_counts, replication.code_book.mapped(all_hashes, copy), all_counts)
            for copy in range(1, max(1, copies) + 1)]
    return {"other_real_recordings": others * 1e6, "copies_as_made": float(np.mean(made)) / total**2 * 1e6,
            "exact_copies": exact / total**2 * 1e6}


def _overlap(hashes: np.ndarray, counts: np.ndarray, other_hashes: np.ndarray, other_counts: np.ndarray) -> float:
    """Sum over hashes of count x other count."""
    order = np.argsort(other_hashes)
    sorted_hashes, sorted_counts = other_hashes[order], other_counts[order].astype(np.float64)
    where = np.clip(np.searchsorted(sorted_hashes, hashes), 0, len(sorted_hashes) - 1)
    found = sorted_hashes[where] == hashes
    return float(np.sum(counts[found].astype(np.float64) * sorted_counts[where[found]]))


# ---------------------------------------------------------------------------------------------- the big catalog


@dataclasses.dataclass
class Growth:
    """What was written, and how long the stores took to take it."""

    recordings: int = 0
    seconds_of_audio: float = 0.0
    landmarks: int = 0
    landmark_windows: int = 0  # rows of the landmark index
    vectors: int = 0
    catalog_seconds: float = 0.0  # create_audio and set_audio_status
    vector_seconds: float = 0.0  # MilvusStore.upsert
    landmark_seconds: float = 0.0  # LandmarkIndex.upsert

    def minus(self, before: Growth) -> Growth:
        return Growth(*(getattr(self, f.name) - getattr(before, f.name) for f in dataclasses.fields(Growth)))


@dataclasses.dataclass(frozen=True)
class PendingRecording:
    """A record written PENDING whose vectors and landmarks are still to be written."""

    audio_id: str
    duration_ms: int
    segments: list[Segment]
    hashes: np.ndarray
    times_ms: np.ndarray


class CatalogWriter:
    """Writes replicas through the services' store modules, as an ingest would: the record with its segments
    (PENDING), the vectors and the landmarks, then READY; vectors of several recordings go in one upsert, and the
    landmarks of those recordings are written by LANDMARK_WRITERS threads at once."""

    def __init__(self, catalog: CatalogStore, vectors: MilvusStore, landmarks: LandmarkIndex,
                 collection: str) -> None:
        self._catalog = catalog
        self._vectors = vectors
        self._landmarks = landmarks
        self._collection = collection
        self._pending: list[PendingRecording] = []
        self.growth = Growth()
        self.original_ids: dict[str, str] = {}  # source name -> id of the original

    def add(self, replica: Replica, original: bool) -> None:
        audio = dataclasses.replace(replica.audio, collection=self._collection)
        started = time.perf_counter()
        created = self._catalog.create_audio(audio, replica.segments)
        self.growth.catalog_seconds += time.perf_counter() - started
        audio_id = created.audio.id
        if original:
            self.original_ids[audio.name] = audio_id
        segments = [Segment(s.segment_id, audio_id, s.start_seconds, s.end_seconds, replica.vectors[s.index])
                    for s in created.segments]
        # the duration as the gateway sends it with UpsertLandmarks
        duration_ms = max(1, round(audio.duration_seconds * 1000))
        self._pending.append(PendingRecording(audio_id, duration_ms, segments, replica.hashes, replica.times_ms))
        self.growth.recordings += 1
        self.growth.seconds_of_audio += audio.duration_seconds
        self.growth.landmarks += len(replica.hashes)
        self.growth.vectors += len(replica.vectors)
        if sum(len(pending.segments) for pending in self._pending) >= VECTOR_BATCH_SEGMENTS:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        started = time.perf_counter()
        self._vectors.upsert(self._collection, [s for pending in self._pending for s in pending.segments])
        self.growth.vector_seconds += time.perf_counter() - started
        started = time.perf_counter()
        self.growth.landmark_windows += self._write_landmarks(self._pending)
        self.growth.landmark_seconds += time.perf_counter() - started
        started = time.perf_counter()
        for pending in self._pending:
            self._catalog.set_audio_status(self._collection, pending.audio_id, AudioStatus.READY,
                                           AudioStatus.PENDING)
        self.growth.catalog_seconds += time.perf_counter() - started
        self._pending = []

    def _write_landmarks(self, recordings: list[PendingRecording]) -> int:
        """The windows written."""
        def write(pending: PendingRecording) -> int:
            return self._landmarks.upsert(self._collection, pending.audio_id, pending.duration_ms, pending.hashes,
                                          pending.times_ms)

        with ThreadPoolExecutor(LANDMARK_WRITERS) as pool:
            return sum(pool.map(write, recordings))


@dataclasses.dataclass
class BigCatalog:
    folder: Path
    source: Source
    replication: Replication
    milvus_uri: str
    position: tuple[int, int] = (0, 0)  # the next (copy, source index) to write
    original_ids: dict[str, str] = dataclasses.field(default_factory=dict)
    growth: Growth = dataclasses.field(default_factory=Growth)

    @property
    def catalog_path(self) -> Path:
        return self.folder / "catalog.db"

    @property
    def dsn(self) -> str:
        return f"sqlite:///{self.catalog_path}"

    @property
    def landmark_folder(self) -> Path:
        """The landmark collection's folder in the Milvus Lite file."""
        return lite_collection_folder(self.milvus_uri, CATALOG_COLLECTION + COLLECTION_SUFFIX)

    @property
    def hash_count_folder(self) -> Path:
        """The landmark index's hash counts (search/hash_counts.py), which count with the landmarks."""
        return lite_collection_folder(self.milvus_uri, CATALOG_COLLECTION + COLLECTION_SUFFIX + HASH_COUNTS_SUFFIX)

    @property
    def vector_folder(self) -> Path:
        return lite_collection_folder(self.milvus_uri, CATALOG_COLLECTION)

    @contextlib.contextmanager
    def writer(self) -> Iterator[CatalogWriter]:
        database = Database.open(self.dsn, pool_size=1)
        vectors = MilvusStore(StoreConfig(uri=self.milvus_uri, timeout_s=600))
        try:
            apply_migrations(database)
            catalog = CatalogStore(database)
            self._ensure_collection(catalog, vectors)
            writer = CatalogWriter(catalog, vectors, LandmarkIndex(vectors, LandmarkConfig()), CATALOG_COLLECTION)
            writer.growth, writer.original_ids = self.growth, self.original_ids
            yield writer
            writer.flush()
        finally:
            vectors.close()
            release_lite(self.milvus_uri)
            database.close()

    def restore_thresholds(self) -> None:
        """The source's thresholds again, after bench.quality calibrated the collection: every scale is timed with
        the same ones."""
        collection = self.source.collection
        database = Database.open(self.dsn, pool_size=1)
        try:
            CatalogStore(database).update_collection_threshold(
                CATALOG_COLLECTION, collection.score_threshold, collection.threshold_source,
                collection.landmark_threshold, collection.landmark_share_threshold)
        finally:
            database.close()

    def _ensure_collection(self, catalog: CatalogStore, vectors: MilvusStore) -> None:
        with contextlib.suppress(Exception):
            catalog.get_collection(CATALOG_COLLECTION)
            return
        catalog.create_collection(dataclasses.replace(self.source.collection, name=CATALOG_COLLECTION,
                                                      description="bench.catalog_scale"))
        vectors.ensure_collection(CATALOG_COLLECTION, self.source.collection.model.embedding_dim)

    def grow_to(self, hours: float) -> Growth:
        """Adds copies until the catalog holds `hours` of audio; returns what this step added."""
        before = dataclasses.replace(self.growth)
        with self.writer() as writer:
            for copy, index in positions(len(self.source.recordings), self.position):
                if self.growth.seconds_of_audio >= hours * 3600:
                    self.position = (copy, index)
                    break
                writer.add(replica(self.source.recordings[index], index, copy, self.replication), original=copy == 0)
                if self.growth.recordings % 2000 == 0:
                    print(f"  {self.growth.recordings} recordings, {self.growth.seconds_of_audio / 3600:.1f} h",
                          file=sys.stderr)
        return self.growth.minus(before)


def storage(big: BigCatalog) -> dict[str, int]:
    """Bytes on disk: the landmark and the vector collections' folders in the Milvus Lite file, and the catalog's
    record tables with their indexes (SQLite's dbstat)."""
    groups = {"records": ("audio", "segments", "audio_tags", "audio_metadata")}
    database = Database.open(big.dsn, pool_size=1)
    try:
        with database.transaction() as tx:
            rows = tx.fetchall("SELECT s.tbl_name, SUM(d.pgsize) FROM dbstat d JOIN sqlite_schema s ON s.name = d.name"
                               " GROUP BY s.tbl_name")
    finally:
        database.close()
    by_table = {str(table): int(size) for table, size in rows}
    result = {group: sum(by_table.get(t, 0) for t in tables) for group, tables in groups.items()}
    result["catalog_other"] = sum(by_table.values()) - sum(result.values())
    result["catalog_file"] = sum(p.stat().st_size for p in big.folder.glob("catalog.db*"))
    result["landmarks"] = du_bytes(big.landmark_folder) + du_bytes(big.hash_count_folder)
    result["vectors"] = du_bytes(big.vector_folder)
    result["milvus_file"] = du_bytes(Path(big.milvus_uri))
    return result


def lite_collection_folder(uri: str, collection: str) -> Path:
    """Where a Milvus Lite file (a folder) keeps a collection of the search service: its data and index files."""
    return Path(uri) / "collections" / (StoreConfig(uri=uri).collection_prefix + collection)


def du_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


# ------------------------------------------------------------------------------------------------- the queries


@dataclasses.dataclass(frozen=True)
class QueryCase:
    seconds: float
    source: str
    kind: str
    expected_id: str
    audio: bytes = dataclasses.field(repr=False)


def query_cases(source: Source, original_ids: dict[str, str], seconds: float, count: int, seed: int,
                offset: int = 0) -> list[QueryCase]:
    """`count` excerpts of `seconds` from originals in the catalog long enough, sounds and music alternately where
    sounds are long enough (music otherwise), with white noise at QUERY_SNR_DB; `offset` draws another set."""
    long_enough = [r for r in source.recordings
                   if r.audio.duration_seconds >= seconds + 0.5 and r.audio.name in original_ids]
    pools = [p for p in ([r for r in long_enough if r.kind == "sound"], [r for r in long_enough if r.kind == "music"])
             if p]
    cases = []
    for number in range(offset, offset + count):
        rng = np.random.default_rng([seed, round(seconds * 1000), number])
        pool = pools[number % len(pools)]
        recording = pool[int(rng.integers(len(pool)))]
        samples = decode_audio(Path(recording.path).read_bytes(), QUERY_RATE,
                               AudioLimits(max_duration_seconds=3600.0)).samples
        first = int(rng.integers(0, max(1, len(samples) - round(seconds * QUERY_RATE))))
        excerpt = samples[first:first + round(seconds * QUERY_RATE)]
        noisy = transforms.with_noise(excerpt, QUERY_SNR_DB, rng)
        cases.append(QueryCase(seconds, recording.audio.name, recording.kind, original_ids[recording.audio.name],
                               wav(noisy)))
    return cases


def wav(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(samples, -1.0, 1.0), QUERY_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


class TimedStub:
    """A backend stub whose calls are timed, by method, as the gateway makes them; with their request sizes."""

    def __init__(self, stub: Any, log: list[tuple[str, float, int]]) -> None:
        self._stub = stub
        self._log = log

    def __getattr__(self, method: str) -> Callable[..., Any]:
        call = getattr(self._stub, method)

        def timed(request: Any, timeout: float | None = None) -> Any:
            started = time.perf_counter()
            try:
                return call(request, timeout=timeout)
            finally:
                self._log.append((method, (time.perf_counter() - started) * 1000, request_size(method, request)))

        return timed


def request_size(method: str, request: Any) -> int:
    """Query vectors of a SearchSegments, landmarks of a MatchLandmarks, ids of a BatchGetAudio."""
    if method == "SearchSegments":
        return len(request.vectors)
    if method == "MatchLandmarks":
        return len(request.landmarks.hashes)
    return len(getattr(request, "audio_ids", ()))


class InProcessGateway:
    """The gateway's Query on the suite's embedder, search and catalog services, its backend calls timed."""

    def __init__(self, bench: BenchSuite) -> None:
        env = bench.env("gateway")
        with patched_environ(env):
            settings = load_settings(GatewaySettings)
        self.calls: list[tuple[str, float, int]] = []
        self._embedder = EmbedderClient(bench.address("embedder"), BENCH_DEADLINE_S)
        self._backends = Backends(bench.address("catalog"), bench.address("search"), BENCH_DEADLINE_S)
        self._backends.catalog = TimedStub(self._backends.catalog, self.calls)
        self._backends.search = TimedStub(self._backends.search, self.calls)
        pipeline = AudioPipeline(self._embedder, AudioLimits(max_duration_seconds=3600.0))
        self.query = Query(self._backends, pipeline, settings)

    def close(self) -> None:
        self._backends.close()
        self._embedder.close()


@contextlib.contextmanager
def patched_environ(values: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def embedded_query(gateway: InProcessGateway, collection: pb.Collection, case: QueryCase) -> EmbeddedAudio:
    """The query embedded as the gateway embeds it, without the windows the embedder saw (60 MB for a minute; the
    matching needs only their times), tried again when the embedder fails on a machine short of memory."""
    for attempt in range(INGEST_ATTEMPTS):
        try:
            embedded = gateway.query.embed_query(collection, case.audio)
            break
        except Unavailable as error:
            if attempt == INGEST_ATTEMPTS - 1:
                raise
            print(f"  embedding {case.source}: {error}, again", file=sys.stderr)
            time.sleep(30.0)
    segments = dataclasses.replace(embedded.segments, windows=np.empty((len(embedded.segments), 0), np.float32))
    return dataclasses.replace(embedded, segments=segments)


class QuerySet:
    """Per query length, the warm-up and the measured queries, embedded once (by the first suite that needs them):
    the embedding does not depend on the catalog."""

    def __init__(self, cases: dict[float, tuple[list[QueryCase], list[QueryCase]]]) -> None:
        self._cases = cases
        self._embedded: dict[float, list[tuple[QueryCase, EmbeddedAudio]]] = {}

    @property
    def empty(self) -> bool:
        return not any(measured for _, measured in self._cases.values())

    def embedded(self, gateway: InProcessGateway, collection: pb.Collection) -> Iterator[
            tuple[float, list[tuple[QueryCase, EmbeddedAudio]], list[tuple[QueryCase, EmbeddedAudio]]]]:
        """(length, warm-up, measured) per query length."""
        for seconds, (warmup, measured) in self._cases.items():
            if seconds not in self._embedded:
                self._embedded[seconds] = parallel(
                    lambda case: (case, embedded_query(gateway, collection, case)), warmup + measured,
                    workers=2, label=f"embedding the {seconds:g} s queries")
            embedded = self._embedded[seconds]
            yield seconds, embedded[:len(warmup)], embedded[len(warmup):]


def time_queries(gateway: InProcessGateway, collection: pb.Collection,
                 embedded: list[tuple[QueryCase, EmbeddedAudio]]) -> list[dict[str, Any]]:
    """Each query matched as the gateway matches it (min_score -1), its backend calls timed one by one."""
    outcomes = []
    for case, audio in embedded:
        gateway.calls.clear()
        started = time.perf_counter()
        matches = gateway.query.match(collection, audio, top_k=10, threshold=-1.0)
        total_ms = (time.perf_counter() - started) * 1000
        steps = {STEPS[method]: {"ms": ms, "size": size} for method, ms, size in gateway.calls if method in STEPS}
        ids = [match.audio.id for match in matches]
        outcomes.append({"seconds": case.seconds, "source": case.source, "kind": case.kind, "total_ms": total_ms,
                         "steps": steps, "rank": ids.index(case.expected_id) if case.expected_id in ids else None})
    return outcomes


def step_summary(outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"queries": len(outcomes),
                               "top1": float(np.mean([o["rank"] == 0 for o in outcomes])) if outcomes else None,
                               "match_ms": percentiles([o["total_ms"] for o in outcomes])}
    for step in STEPS.values():
        timed = [o["steps"][step] for o in outcomes if step in o["steps"]]
        summary[step] = {**percentiles([t["ms"] for t in timed]), "calls": len(timed),
                         "over_gateway_deadline": sum(t["ms"] > GATEWAY_DEADLINE_MS for t in timed),
                         "mean_request_size": float(np.mean([t["size"] for t in timed])) if timed else 0.0}
    return summary


def settle(bench: BenchSuite) -> float:
    """Waits until the suite's processes use under IDLE_CORES together (over SETTLE_WINDOW_S); the seconds waited."""
    started = time.monotonic()
    pids = [process.pid for process in bench.suite.processes]
    while time.monotonic() - started < SETTLE_LIMIT_S:
        before = sum(tree_cpu_seconds(pid) for pid in pids)
        time.sleep(SETTLE_WINDOW_S)
        if (sum(tree_cpu_seconds(pid) for pid in pids) - before) / SETTLE_WINDOW_S < IDLE_CORES:
            break
    return time.monotonic() - started


# -------------------------------------------------------------------------------------------------- quality


def run_quality(args: argparse.Namespace, gateway: str, json_path: Path) -> dict[str, Any]:
    """bench.quality against the suite, on the big collection; its summary and timings."""
    command = [sys.executable, "-m", "bench.quality", "--sounds", str(args.sounds), "--seed", str(args.seed),
               "--gateway", gateway, "--collection", CATALOG_COLLECTION, "--queries", str(args.quality_queries),
               "--json", str(json_path)]
    subprocess.run(command, check=True, cwd=Path(__file__).resolve().parent.parent)
    result = json.loads(json_path.read_text())
    info, summary = result["info"], result["summary"]
    return {"top1": summary["transforms"]["all"]["top1"], "recall_at_10": summary["transforms"]["all"]["recall_at_10"],
            "top1_above_threshold": summary["transforms"]["all"]["top1_above_threshold"],
            "true_negative_rate": summary["true_negative_rate"], "negatives": summary["negatives"],
            "positives": summary["transforms"]["all"]["n"], "threshold": info["threshold"],
            "landmark_threshold": info["landmark_threshold"], "calibrate_seconds": info["calibrate_seconds"],
            "query_seconds": info["query_seconds"], "indexed": info["indexed"]}


# ------------------------------------------------------------------------------------------------------- run


def measure_scale(args: argparse.Namespace, big: BigCatalog, growth: Growth, queries: QuerySet,
                  quality: bool) -> dict[str, Any]:
    hours = big.growth.seconds_of_audio / 3600
    sizes = storage(big)
    result: dict[str, Any] = {
        "hours": hours, "recordings": big.growth.recordings, "landmarks": big.growth.landmarks,
        "landmark_windows": big.growth.landmark_windows, "vectors": big.growth.vectors, "storage_bytes": sizes,
        "mb_per_hour": {key: sizes[key] / 1e6 / hours for key in ("landmarks", "vectors", "records")},
        "added": dataclasses.asdict(growth), "add_rate": add_rate(growth), "machine_after_adding": machine()}
    if queries.empty and not quality:
        return result
    # The landmark index lives in the vectors' Milvus Lite file (SEARCH_LANDMARK_MILVUS_URI left empty), as with
    # `make run`.
    overrides = {"CATALOG_DSN": big.dsn, "SEARCH_MILVUS_URI": big.milvus_uri,
                 "GATEWAY_RECONCILE_ORPHAN_INTERVAL_SECONDS": "86400"}
    with suite(overrides) as bench:
        result["settle_seconds"] = settle(bench)
        result.update(measure_queries(bench, queries))
        result["search_rss_bytes"] = tree_rss_bytes(service_pid(bench, "search"))
        if quality:
            result["quality"] = run_quality(args, bench.gateway, args.work_dir / f"quality-{hours:.0f}h.json")
    if quality:
        big.restore_thresholds()
    return result


def measure_queries(bench: BenchSuite, queries: QuerySet) -> dict[str, Any]:
    """Per query length, each step's cost over the measured queries, after the warm-up ones."""
    gateway = InProcessGateway(bench)
    try:
        with grpc.insecure_channel(bench.gateway) as channel:
            client = audiosearch_pb2_grpc.AudioSearchServiceStub(channel)
            collection = client.GetCollection(pb.GetCollectionRequest(name=CATALOG_COLLECTION)).collection
        result: dict[str, Any] = {"machine_before_queries": machine(), "queries": {}}
        for seconds, warmup, measured in queries.embedded(gateway, collection):
            time_queries(gateway, collection, warmup)
            outcomes = time_queries(gateway, collection, measured)
            result["queries"][f"{seconds:g}s"] = {**step_summary(outcomes), "outcomes": outcomes}
        result["machine_after_queries"] = machine()
        return result
    finally:
        gateway.close()


def service_pid(bench: BenchSuite, name: str) -> int:
    return next(process.pid for plan, process in zip(bench.suite.plans, bench.suite.processes, strict=True)
                if plan.name == name)


def add_rate(growth: Growth) -> dict[str, float]:
    seconds = growth.catalog_seconds + growth.vector_seconds + growth.landmark_seconds
    landmark_seconds = growth.landmark_seconds
    return {"landmarks_per_s": growth.landmarks / landmark_seconds if landmark_seconds else 0.0,
            "landmark_windows_per_s": growth.landmark_windows / landmark_seconds if landmark_seconds else 0.0,
            "vectors_per_s": growth.vectors / growth.vector_seconds if growth.vector_seconds else 0.0,
            "catalog_hours_per_s": growth.seconds_of_audio / 3600 / seconds if seconds else 0.0,
            "recordings_per_s": growth.recordings / seconds if seconds else 0.0}


def check_disk(folder: Path, hours: float) -> None:
    free = shutil.disk_usage(folder).free
    if free < hours * BYTES_PER_HOUR_ESTIMATE * 1.2:
        raise SystemExit(f"{hours:g} catalog hours need about {hours * BYTES_PER_HOUR_ESTIMATE / 1e9:.0f} GB; "
                         f"{folder} has {free / 1e9:.0f} GB free")


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    check_disk(args.work_dir, max(args.hours))
    source = load_source(args.sounds, args.music, args.seed, args.work_dir)
    copies = math.ceil(max(args.hours) / source.hours())
    replication = replication_for(source, args.seed, copies, args.hash_bucket)
    folder = Path(tempfile.mkdtemp(prefix="catalog-", dir=args.work_dir))
    big = BigCatalog(folder, source, replication, str(folder / "milvus.db"))
    result: dict[str, Any] = {
        "source": {"sounds": sum(r.kind == "sound" for r in source.recordings),
                   "music": sum(r.kind == "music" for r in source.recordings),
                   "hours_sounds": source.hours("sound"), "hours_music": source.hours("music"),
                   "landmarks": int(sum(len(r.hashes) for r in source.recordings)),
                   "vectors": int(sum(len(r.vectors) for r in source.recordings)),
                   "held_back_left_out": len(source.held_back), "ingest_seconds": source.ingest_seconds,
                   "model": f"{source.collection.model.name}:{source.collection.model.version}"},
        "replication": {"seed": args.seed, "copies": copies, "hash_bucket": replication.code_book.bucket,
                        "neighbour_cosine": percentiles(replication.neighbour_cosines, (5, 50, 95)),
                        "lookup_rows_per_query_landmark_per_million": lookup_load(source, replication, copies)},
        "machine_before": machine(), "scales": []}
    queries: QuerySet | None = None
    try:
        for hours in sorted(args.hours):
            print(f"growing the catalog to {hours:g} h ...", file=sys.stderr)
            growth = big.grow_to(hours)
            queries = queries or QuerySet(make_all_cases(args, source, big.original_ids))
            result["scales"].append(measure_scale(args, big, growth, queries, hours in args.quality_at))
            print(scale_table(result["scales"][-1]), file=sys.stderr)
            if args.json and args.json != "-":  # what is measured so far outlives a failure at a larger scale
                Path(args.json).write_text(json.dumps(result, indent=1))
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    result["machine_after"] = machine()
    result["wall_seconds"] = time.monotonic() - started
    return result


def make_all_cases(args: argparse.Namespace, source: Source, original_ids: dict[str, str]
                   ) -> dict[float, tuple[list[QueryCase], list[QueryCase]]]:
    counts = {5.0: args.queries_5s, 60.0: args.queries_60s}
    return {seconds: (query_cases(source, original_ids, seconds, args.warmup_queries, args.seed, offset=10_000),
                      query_cases(source, original_ids, seconds, counts[seconds], args.seed))
            for seconds in QUERY_LENGTHS if counts[seconds]}


# ----------------------------------------------------------------------------------------------------- report


def scale_table(scale: dict[str, Any]) -> str:
    rate, per_hour = scale["add_rate"], scale["mb_per_hour"]
    sizes = scale["storage_bytes"]
    lines = [
        f"{scale['hours']:.1f} catalog hours: {scale['recordings']} recordings, {scale['landmarks']:,} landmarks in "
        f"{scale['landmark_windows']:,} windows, {scale['vectors']:,} vectors",
        f"  storage MB per catalog hour: landmarks {per_hour['landmarks']:.1f}, vectors {per_hour['vectors']:.1f}, "
        f"records {per_hour['records']:.2f} (Milvus Lite file {sizes['milvus_file'] / 1e6:.0f} MB: landmark "
        f"collection {sizes['landmarks'] / 1e6:.0f} MB, vector collection {sizes['vectors'] / 1e6:.0f} MB; catalog "
        f"file {sizes['catalog_file'] / 1e6:.0f} MB)",
        f"  adding the last {scale['added']['seconds_of_audio'] / 3600:.1f} h: {rate['landmarks_per_s']:,.0f} "
        f"landmarks/s ({rate['landmark_windows_per_s']:,.0f} windows/s) to the landmark index, "
        f"{rate['vectors_per_s']:,.0f} vectors/s, {rate['catalog_hours_per_s']:.3f} "
        f"catalog h/s ({rate['recordings_per_s']:.1f} recordings/s; load average "
        f"{scale['machine_after_adding']['load_average_5m']} over the last 5 minutes of it)",
        f"  {'query':6s} {'n':>4s} {'vectors p50/p99 ms':>19s} {'landmarks p50/p99 ms':>21s} "
        f"{'records p50/p99 ms':>19s} {'top-1':>6s} {'landmarks sent':>15s}",
    ]
    for name, summary in scale.get("queries", {}).items():
        cells = [f"{summary[step].get('p50', float('nan')):8.1f}/{summary[step].get('p99', float('nan')):<8.1f}"
                 for step in STEPS.values()]
        lines.append(f"  {name:6s} {summary['queries']:4d} {cells[0]:>19s} {cells[1]:>21s} {cells[2]:>19s} "
                     f"{summary['top1']:6.3f} {summary['landmarks']['mean_request_size']:15.0f}")
        over = {step: summary[step]["over_gateway_deadline"] for step in STEPS.values()}
        if any(over.values()):
            lines.append(f"    over the gateway's {GATEWAY_DEADLINE_MS / 1000:g} s deadline: {over}")
    if "quality" in scale:
        quality = scale["quality"]
        lines.append(f"  bench.quality: top-1 {quality['top1']:.3f} (n {quality['positives']}), R@10 "
                     f"{quality['recall_at_10']:.3f}, top-1>=thr {quality['top1_above_threshold']:.3f}, TNR "
                     f"{quality['true_negative_rate']:.3f} (n {quality['negatives']}); threshold "
                     f"{quality['threshold']:.4f}, landmarks {quality['landmark_threshold']}; calibrate "
                     f"{quality['calibrate_seconds']:.0f} s, queries {quality['query_seconds']:.0f} s")
    before, after = scale.get("machine_before_queries", {}), scale.get("machine_after_queries", {})
    if before:
        lines.append(f"  load average {before['load_average_1m']} before the queries, {after['load_average_1m']} "
                     f"after, on {before['cpus']} CPUs; settled {scale['settle_seconds']:.0f} s")
    if scale.get("search_rss_bytes"):
        lines.append(f"  search service resident memory after the queries (Milvus Lite runs in it): "
                     f"{scale['search_rss_bytes'] / 1e6:.0f} MB")
    return "\n".join(lines)


def table(result: dict[str, Any]) -> str:
    source, replication = result["source"], result["replication"]
    load = replication["lookup_rows_per_query_landmark_per_million"]
    cosine = replication["neighbour_cosine"]
    lines = [
        f"source: {source['sounds']} dev sounds ({source['hours_sounds']:.2f} h; {source['held_back_left_out']} "
        f"held back by bench.quality left out) and {source['music']} music tracks ({source['hours_music']:.2f} h): "
        f"{source['landmarks']:,} landmarks, {source['vectors']:,} vectors; model {source['model']}",
        f"copies: up to {replication['copies']} of each, hashes through code book buckets of "
        f"{replication['hash_bucket']}, vectors turned to a nearest-other cosine (p5/p50/p95 {cosine['p5']:.3f}/"
        f"{cosine['p50']:.3f}/{cosine['p95']:.3f}); rows read per query landmark per million stored: other real "
        f"recordings {load['other_real_recordings']:.1f}, copies as made {load['copies_as_made']:.1f}, exact copies "
        f"{load['exact_copies']:.1f}",
    ]
    lines += [scale_table(scale) for scale in result["scales"]]
    lines.append(f"wall time {result['wall_seconds']:.0f} s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.catalog_scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, nargs="+", default=[10.0, 100.0],
                        help="catalog sizes, grown one after the other in one catalog (default 10 100)")
    parser.add_argument("--sounds", type=Path, default=DEFAULT_SOUNDS, help="default %(default)s")
    parser.add_argument("--music", type=Path, default=DEFAULT_MUSIC, help="default %(default)s")
    parser.add_argument("--seed", type=int, default=0, help="bench.quality's split and the copies (default 0)")
    parser.add_argument("--hash-bucket", type=int, default=HASH_BUCKET,
                        help="neighbouring ranks of the hash code book (default %(default)s; more when more copies "
                             "are needed)")
    parser.add_argument("--queries-5s", type=int, default=60)
    parser.add_argument("--queries-60s", type=int, default=20)
    parser.add_argument("--warmup-queries", type=int, default=4, help="per length, unmeasured (default 4)")
    parser.add_argument("--quality-at", type=float, nargs="+", default=[], metavar="HOURS",
                        help="run bench.quality against the catalog at these of the --hours")
    parser.add_argument("--quality-queries", type=int, default=20, help="bench.quality --queries (default 20)")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR,
                        help="the source cache and the catalogs (default %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the big catalog's stores")
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE", help="JSON to FILE, or stdout")
    args = parser.parse_args()
    result = run(args)
    emit(table(result), result, args.json)


if __name__ == "__main__":
    # Run as the module's own name, so that the source cache pickles classes that bench.catalog_scale names.
    from bench.catalog_scale import main as module_main

    module_main()
