"""Landmarks in Milvus (issue 30, measure first): a layout that moves the landmark index out of the catalog's SQL rows,
measured on catalogs of many hours built from the real landmarks of the dev sounds and the dev music.

    python -m bench.landmark_index [--hours 1 10] [--uri URI] [--window-seconds 4] [--candidates 16]
                                   [--queries 40] [--sounds DIR] [--music DIR] [--work-dir DIR] [--json [FILE]]

The layout (`sparse-window`): each recording is cut into windows of --window-seconds; a window is one Milvus row
with its recording's id and start, a SPARSE_FLOAT_VECTOR whose keys are the window's distinct landmark hashes (each
with the value 1, under SPARSE_INVERTED_INDEX), and its landmarks packed for the vote (hash << 12 | the landmark's
time after the window's start in 10 ms frames) in an INT64 ARRAY field. A query is cut into windows of the same
length; an inner-product search per query window (one batched request) scores the stored windows by the distinct
hashes they share with it, the --candidates best come back with their packed landmarks, and the time-offset vote of
the catalog (audiosearch.search.landmark_vote.vote) runs over them. So one request to the engine that scales out
replaces the per-landmark SQL lookup, and a stored landmark costs its posting in the inverted index and 8 bytes.

The catalog. The dev sounds and the dev music are decoded and fingerprinted in this process, as the gateway does at
ingest (audiosearch.gateway.audio.fingerprints), and cached under --work-dir. The originals go in first, then copies
of every source until the catalog holds the next --hours, made as bench.catalog_scale makes them (its docstring says
why): the recording cut at a seeded point and its two parts swapped, every hash sent through the copy's code book to
one about as frequent, so the hot hashes that decide what a lookup reads stay as hot.

The queries: 5 s and 60 s excerpts of originals (seeded; a 5 s query alternately from a sound of at least 5 s and from
a music track, a 60 s one from a track) with white noise at 20 dB SNR, fingerprinted as the gateway fingerprints a
query. Per scale it reports storage per catalog hour (the Milvus data directory on disk, and the growth of this
process's resident memory while the collection is loaded, for an embedded Milvus Lite), the rate of adding, the
search and the vote p50/p99, and top-1: the layout's, and the exact vote's over every stored landmark of the
catalog (what today's SQL lookup reads), so the layout's loss is measured against the design it replaces.

--uri names a Milvus to use instead of an embedded Milvus Lite file (for example a server that `milvus-lite server`
or a cluster runs); its storage is then not measured.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audiosearch.gateway.audio.decoding import decode_audio
from audiosearch.gateway.audio.fingerprints import extract_landmarks, query_landmarks
from audiosearch.search.landmark_vote import vote
from bench.catalog_scale import HashCodeBook, du_bytes, rotated
from bench.metrics import emit, percentiles
from bench.support import sound_files

SAMPLE_RATE_HZ = 32_000
FRAME_MS = 10
TIME_BITS = 12  # frames after a window's start: windows up to 40.95 s
COLLECTION = "landmark_windows"
INSERT_BATCH_ROWS = 500
MAX_PACKED = 4096  # Milvus's largest ARRAY capacity
SPARSE_KEYS = 2**32 - 1  # Milvus takes sparse keys below this
NOISE_SNR_DB = 20.0
WARM_UP_QUERIES = 3


@dataclass(frozen=True)
class SourceRecording:
    name: str
    kind: str  # "sound" or "music"
    duration_ms: int
    hashes: np.ndarray  # uint32, sorted by time
    times_ms: np.ndarray  # int32


@dataclass(frozen=True)
class QueryCase:
    source: int
    start_ms: int
    hashes: np.ndarray
    times_ms: np.ndarray


def decoded(path: Path) -> np.ndarray:
    return decode_audio(path.read_bytes(), SAMPLE_RATE_HZ).samples.astype(np.float32)


def fingerprinted(paths: Sequence[tuple[str, Path]], cache: Path) -> list[SourceRecording]:
    if cache.exists():
        with np.load(cache, allow_pickle=False) as stored:
            names, kinds = stored["names"].tolist(), stored["kinds"].tolist()
            return [SourceRecording(name, kind, int(stored["durations"][i]), stored[f"h{i}"], stored[f"t{i}"])
                    for i, (name, kind) in enumerate(zip(names, kinds, strict=True))]
    recordings = []
    for kind, path in paths:
        samples = decoded(path)
        landmarks = extract_landmarks(samples, SAMPLE_RATE_HZ)
        if len(landmarks):
            recordings.append(SourceRecording(path.name, kind, len(samples) * 1000 // SAMPLE_RATE_HZ,
                                              landmarks.hashes, landmarks.times_ms))
    arrays: dict[str, np.ndarray] = {"names": np.array([r.name for r in recordings]),
                                     "kinds": np.array([r.kind for r in recordings]),
                                     "durations": np.array([r.duration_ms for r in recordings])}
    for i, recording in enumerate(recordings):
        arrays[f"h{i}"], arrays[f"t{i}"] = recording.hashes, recording.times_ms
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **arrays)
    return recordings


def copy_of(source: SourceRecording, index: int, copy: int, code_book: HashCodeBook, seed: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """Copy `copy` of source `index` (0: the original): hashes and times, sorted by time."""
    if copy == 0:
        return source.hashes, source.times_ms
    rng = np.random.default_rng([seed, index, copy])
    shift_ms = FRAME_MS * int(rng.integers(0, max(1, source.duration_ms // FRAME_MS)))
    times = rotated(source.times_ms, shift_ms, source.duration_ms)
    order = np.argsort(times, kind="stable")
    return code_book.mapped(source.hashes, copy)[order], times[order]


def sparse(hashes: np.ndarray) -> dict[int, float]:
    return dict.fromkeys(np.unique(hashes % SPARSE_KEYS).tolist(), 1.0)


def window_rows(audio_id: int, hashes: np.ndarray, times_ms: np.ndarray, window_ms: int) -> list[dict[str, Any]]:
    rows = []
    window_of = times_ms // window_ms
    for window in np.unique(window_of):
        inside = window_of == window
        window_hashes = hashes[inside].astype(np.int64)
        frames = (times_ms[inside] - window * window_ms) // FRAME_MS
        rows.append({"id": audio_id * 1_000_000 + int(window), "audio_id": audio_id,
                     "start_ms": int(window * window_ms),
                     "hashes": sparse(window_hashes),
                     "packed": (window_hashes << TIME_BITS | frames).tolist()[:MAX_PACKED]})
    return rows


class LandmarkWindows:
    """The sparse-window layout in one Milvus collection."""

    def __init__(self, uri: str, window_ms: int) -> None:
        from pymilvus import DataType, MilvusClient

        self.client = MilvusClient(uri=uri)
        self.window_ms = window_ms
        if self.client.has_collection(COLLECTION):
            self.client.drop_collection(COLLECTION)
        schema = self.client.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("audio_id", DataType.INT64)
        schema.add_field("start_ms", DataType.INT32)
        schema.add_field("hashes", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_field("packed", DataType.ARRAY, element_type=DataType.INT64, max_capacity=MAX_PACKED)
        index = self.client.prepare_index_params()
        index.add_index("hashes", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        self.client.create_collection(COLLECTION, schema=schema, index_params=index)
        self.pending: list[dict[str, Any]] = []

    def add(self, audio_id: int, hashes: np.ndarray, times_ms: np.ndarray) -> None:
        self.pending.extend(window_rows(audio_id, hashes, times_ms, self.window_ms))
        if len(self.pending) >= INSERT_BATCH_ROWS:
            self.write()

    def write(self) -> None:
        if self.pending:
            self.client.insert(COLLECTION, self.pending)
            self.pending = []

    def flush(self) -> None:
        self.write()
        self.client.flush(COLLECTION)

    def search(self, case: QueryCase, candidates: int) -> list[dict[str, Any]]:
        window_of = case.times_ms // self.window_ms
        queries = [sparse(case.hashes[window_of == w].astype(np.int64)) for w in np.unique(window_of)]
        results = self.client.search(COLLECTION, data=queries, anns_field="hashes", limit=candidates,
                                     search_params={"metric_type": "IP"},
                                     output_fields=["audio_id", "start_ms", "packed"])
        seen: dict[int, dict[str, Any]] = {}
        for hits in results:
            for hit in hits:
                seen[hit["id"]] = hit["entity"]
        return list(seen.values())

    def close(self) -> None:
        self.client.close()


def voted(case: QueryCase, windows: list[dict[str, Any]]) -> int:
    """The recording that the catalog's vote puts first over the candidate windows' landmarks (-1: none)."""
    query_times: dict[int, list[int]] = defaultdict(list)
    for hash_value, time_ms in zip(case.hashes.tolist(), case.times_ms.tolist(), strict=True):
        query_times[hash_value].append(time_ms)
    hits = []
    for window in windows:
        packed = np.asarray(window["packed"], dtype=np.int64)
        for hash_value, frame in zip((packed >> TIME_BITS).tolist(), (packed & (1 << TIME_BITS) - 1).tolist(),
                                     strict=True):
            for query_ms in query_times.get(hash_value, ()):
                hits.append((str(window["audio_id"]), hash_value, window["start_ms"] + frame * FRAME_MS, query_ms))
    votes = vote(hits)
    return int(votes[0].audio_id) if votes else -1


class ExactIndex:
    """Every stored landmark by hash, in memory: what the catalog's SQL lookup reads, voted the same way."""

    def __init__(self) -> None:
        self.hashes: list[np.ndarray] = []
        self.times: list[np.ndarray] = []
        self.audio_ids: list[np.ndarray] = []
        self._sorted: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def add(self, audio_id: int, hashes: np.ndarray, times_ms: np.ndarray) -> None:
        self.hashes.append(hashes)
        self.times.append(times_ms)
        self.audio_ids.append(np.full(len(hashes), audio_id, np.int64))
        self._sorted = None

    def resident_mb(self) -> float:
        arrays = [*self.hashes, *self.times, *self.audio_ids, *(self._sorted or ())]
        return sum(a.nbytes for a in arrays) / 2**20

    def top(self, case: QueryCase) -> int:
        if self._sorted is None:
            hashes = np.concatenate(self.hashes)
            order = np.argsort(hashes, kind="stable")
            self._sorted = hashes[order], np.concatenate(self.times)[order], np.concatenate(self.audio_ids)[order]
        hashes, times, audio_ids = self._sorted
        first = np.searchsorted(hashes, case.hashes, "left")
        last = np.searchsorted(hashes, case.hashes, "right")
        hits = [(str(audio_ids[j]), int(hashes[j]), int(times[j]), int(query_ms))
                for i, query_ms in enumerate(case.times_ms.tolist()) for j in range(first[i], last[i])]
        votes = vote(hits)
        return int(votes[0].audio_id) if votes else -1


def query_cases(recordings: list[SourceRecording], paths: dict[str, Path], seconds: float, count: int,
                seed: int) -> list[QueryCase]:
    rng = np.random.default_rng([seed, int(seconds * 1000)])
    length_ms = int(seconds * 1000)
    long_sounds = [i for i, r in enumerate(recordings) if r.kind == "sound" and r.duration_ms >= length_ms]
    tracks = [i for i, r in enumerate(recordings) if r.kind == "music" and r.duration_ms >= length_ms]
    cases = []
    for n in range(count):
        pool = long_sounds if seconds <= 5 and n % 2 == 0 and long_sounds else tracks
        index = int(rng.choice(pool))
        samples = decoded(paths[recordings[index].name])
        start = int(rng.integers(0, len(samples) - length_ms * SAMPLE_RATE_HZ // 1000 + 1))
        excerpt = samples[start:start + length_ms * SAMPLE_RATE_HZ // 1000]
        noise_rms = np.sqrt(np.mean(excerpt.astype(np.float64) ** 2) / 10 ** (NOISE_SNR_DB / 10))
        noisy = (excerpt + rng.normal(0.0, noise_rms, len(excerpt))).astype(np.float32)
        landmarks = query_landmarks(noisy, SAMPLE_RATE_HZ, [])
        cases.append(QueryCase(index, start * 1000 // SAMPLE_RATE_HZ, landmarks.hashes, landmarks.times_ms))
    return cases


def copies_for(recordings: list[SourceRecording], hours: float) -> Iterator[tuple[int, int]]:
    """(source, copy) in the order they go in, until the catalog holds `hours` (originals first)."""
    held_ms, target_ms, copy = 0, hours * 3_600_000, 0
    while held_ms < target_ms:
        for index, recording in enumerate(recordings):
            if held_ms >= target_ms and copy > 0:
                return
            yield index, copy
            held_ms += recording.duration_ms
        copy += 1


def resident_mb() -> float:
    status = Path("/proc/self/status").read_text(encoding="ascii")
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")) / 1024


def measure_queries(index: LandmarkWindows, exact: ExactIndex, cases: list[QueryCase], candidates: int
                    ) -> dict[str, Any]:
    for case in cases[:WARM_UP_QUERIES]:
        index.search(case, candidates)
    search_ms, vote_ms, layout_right, exact_right = [], [], 0, 0
    for case in cases:
        started = time.perf_counter()
        windows = index.search(case, candidates)
        searched = time.perf_counter()
        top = voted(case, windows)
        search_ms.append((searched - started) * 1000)
        vote_ms.append((time.perf_counter() - searched) * 1000)
        layout_right += top == case.source
        exact_right += exact.top(case) == case.source
    return {"queries": len(cases), "search_ms": percentiles(search_ms), "vote_ms": percentiles(vote_ms),
            "top1": layout_right / len(cases), "exact_top1": exact_right / len(cases)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    sounds = [("sound", p) for p in sound_files(args.sounds)]
    music = [("music", p) for p in sound_files(args.music)]
    paths = {p.name: p for _, p in sounds + music}
    recordings = fingerprinted(sounds + music, args.work_dir / f"landmarks-{len(sounds)}-{len(music)}.npz")
    code_book = HashCodeBook.of(np.concatenate([r.hashes for r in recordings]), args.hash_bucket,
                                np.random.default_rng(args.seed))
    cases = {5.0: query_cases(recordings, paths, 5.0, args.queries, args.seed),
             60.0: query_cases(recordings, paths, 60.0, max(1, args.queries // 2), args.seed)}
    store = args.work_dir / "milvus"
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir(parents=True)
    uri = args.uri or str(store / "landmarks.db")
    rss_before = resident_mb()
    index, exact = LandmarkWindows(uri, int(args.window_seconds * 1000)), ExactIndex()
    placed = copies_for(recordings, max(args.hours))
    held_ms, landmarks, adding_s, scales = 0, 0, 0.0, []
    for hours in sorted(args.hours):
        started = time.perf_counter()
        for source, copy in placed:
            hashes, times = copy_of(recordings[source], source, copy, code_book, args.seed)
            audio_id = copy * len(recordings) + source
            index.add(audio_id, hashes, times)
            exact.add(audio_id, hashes, times)
            held_ms += recordings[source].duration_ms
            landmarks += len(hashes)
            if held_ms >= hours * 3_600_000 and copy > 0:  # the originals all go in first
                break
        index.flush()
        adding_s += time.perf_counter() - started
        held_hours = held_ms / 3_600_000
        scale: dict[str, Any] = {"hours": held_hours, "landmarks": landmarks,
                                 "add_landmarks_per_s": landmarks / adding_s,
                                 "catalog_hours_per_s": held_hours / adding_s}
        if not args.uri:
            scale["disk_mb_per_hour"] = du_bytes(store) / 1e6 / held_hours
            scale["rss_mb_per_hour"] = (resident_mb() - exact.resident_mb() - rss_before) / held_hours
        scale["queries"] = {f"{int(s)}s": measure_queries(index, exact, c, args.candidates) for s, c in cases.items()}
        scales.append(scale)
        print(scale_line(scale), file=sys.stderr, flush=True)
    index.close()
    return {"layout": "sparse-window", "window_seconds": args.window_seconds, "candidates": args.candidates,
            "uri": args.uri or "embedded Milvus Lite file", "sources": len(recordings), "scales": scales}


def scale_line(scale: dict[str, Any]) -> str:
    parts = [f"{scale['hours']:.1f} h: {scale['landmarks']:,} landmarks"]
    if "disk_mb_per_hour" in scale:
        parts.append(f"disk {scale['disk_mb_per_hour']:.1f} MB/h, RSS +{scale['rss_mb_per_hour']:.1f} MB/h")
    parts.append(f"add {scale['add_landmarks_per_s']:,.0f} landmarks/s")
    for name, q in scale["queries"].items():
        parts.append(f"{name}: search {q['search_ms']['p50']:.0f}/{q['search_ms']['p99']:.0f} ms, "
                     f"vote {q['vote_ms']['p50']:.0f}/{q['vote_ms']['p99']:.0f} ms, "
                     f"top-1 {q['top1']:.3f} (exact {q['exact_top1']:.3f})")
    return "; ".join(parts)


def table(result: dict[str, Any]) -> str:
    lines = [f"layout {result['layout']}, windows of {result['window_seconds']} s, {result['candidates']} candidate "
             f"windows per query window, {result['uri']}, {result['sources']} source recordings",
             "| hours | landmarks | disk MB/h | RSS MB/h | add landmarks/s | 5 s search p50/p99 ms "
             "| 5 s vote p50/p99 ms | 5 s top-1 (exact) | 60 s search p50/p99 ms | 60 s vote p50/p99 ms "
             "| 60 s top-1 (exact) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in result["scales"]:
        q5, q60 = s["queries"]["5s"], s["queries"]["60s"]
        lines.append(
            f"| {s['hours']:.1f} | {s['landmarks']:,} | {s.get('disk_mb_per_hour', float('nan')):.1f} "
            f"| {s.get('rss_mb_per_hour', float('nan')):.1f} | {s['add_landmarks_per_s']:,.0f} "
            f"| {q5['search_ms']['p50']:.1f} / {q5['search_ms']['p99']:.1f} "
            f"| {q5['vote_ms']['p50']:.1f} / {q5['vote_ms']['p99']:.1f} | {q5['top1']:.3f} ({q5['exact_top1']:.3f}) "
            f"| {q60['search_ms']['p50']:.0f} / {q60['search_ms']['p99']:.0f} "
            f"| {q60['vote_ms']['p50']:.0f} / {q60['vote_ms']['p99']:.0f} "
            f"| {q60['top1']:.3f} ({q60['exact_top1']:.3f}) |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.landmark_index", description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--uri", default="", help="a Milvus to use instead of an embedded Milvus Lite file")
    parser.add_argument("--window-seconds", type=float, default=4.0)
    parser.add_argument("--candidates", type=int, default=16, help="stored windows per query window")
    parser.add_argument("--queries", type=int, default=40, help="5 s queries (half as many 60 s ones)")
    parser.add_argument("--hash-bucket", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sounds", type=Path, default=Path("/tmp/dev-sounds"))
    parser.add_argument("--music", type=Path, default=Path("/tmp/dev-music"))
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/landmark-index"))
    parser.add_argument("--json", nargs="?", const="-", default=None)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    result = run(args)
    emit(table(result), result, args.json)


if __name__ == "__main__":
    main()
