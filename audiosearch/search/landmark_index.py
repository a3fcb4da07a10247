"""The landmark index: a collection's landmarks in Milvus, beside its vectors, as windows of hashes.

A recording's landmarks are cut into windows of `window_ms` (docs/benchmarks.md, bench.landmark_index). A window is
one row of the collection's landmark collection: the recording's id and duration, the window's start, a
SPARSE_FLOAT_VECTOR whose keys are the window's distinct hashes (each 1/sqrt(their number), under
SPARSE_INVERTED_INDEX, so that an inner product with a query's hashes, each 1.0, counts the hashes they share over
the square root of the window's), and its landmarks packed for the vote (hash << 16 | the landmark's time after the
window's start in ms) in an INT64 ARRAY; a window with more landmarks than an ARRAY holds takes several rows. A query
is cut the same way; one inner-product search per query window brings back the stored windows that share most of
their hashes with it, and the time-offset vote (landmark_vote.py) runs over their landmarks; one
more read brings the windows that the query covers at each vote's offset, for the recording's own landmarks over
the overlap.

Row ids derive from the recording id and the window, so writing a recording's landmarks again rewrites the same
rows. Sparse vectors need Milvus 2.4 or later (Milvus Lite 2.4 or later); the landmark collection is created with
a recording's first landmarks, so a Milvus without them still serves collections whose landmarks are off.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pymilvus import DataType, MilvusClient
from pymilvus.client.types import LoadState

from audiosearch.common.errors import FailedPrecondition
from audiosearch.search.hash_counts import HashCounts
from audiosearch.search.labels import LABELS_FIELD, both
from audiosearch.search.landmark_vote import COUNTED_FROM_LANDMARKS, LandmarkVote, vote, with_overlaps
from audiosearch.search.store import (
    AUDIO_ID_MAX_CHARS,
    ITERATOR_BATCH,
    MILVUS_DURATION,
    MilvusStore,
    add_labels_field,
    audio_filter,
)

COLLECTION_SUFFIX = "__landmarks"
WINDOW_ID = "window_id"
SPARSE_FIELD = "hashes"
PACKED_FIELD = "packed"
TIME_BITS = 16  # ms after a window's start
MAX_WINDOW_MS = (1 << TIME_BITS) - 1
MAX_PACKED = 4096  # the largest ARRAY capacity Milvus takes
SPARSE_KEYS = 2**32 - 1  # Milvus takes sparse keys below this
MAX_CANDIDATES = 256  # stored windows per query window
MAX_HASH_COUNT = 64
SEARCH_BATCH = 256  # query windows per search request
WINDOW_FIELDS = [WINDOW_ID, "audio_id", "start_ms", "duration_ms", PACKED_FIELD]
_ID_MASK = (1 << 63) - 1

Hit = tuple[str, int, int, int]  # audio id, hash, time in the recording, time in the query (ms)


@dataclass(frozen=True)
class LandmarkConfig:
    window_ms: int = 4000
    candidates: int = 16  # stored windows per query window (raised to top_k)
    max_hash_count: int = MAX_HASH_COUNT  # a hash stored more often than this is left out of a match (hash_counts.py)


@dataclass(frozen=True)
class StoredWindow:
    window_id: int
    audio_id: str
    start_ms: int
    duration_ms: int
    packed: np.ndarray  # int64: hash << TIME_BITS | ms after start_ms

    @property
    def hashes(self) -> np.ndarray:
        return self.packed >> TIME_BITS

    @property
    def times_ms(self) -> np.ndarray:
        return self.start_ms + (self.packed & MAX_WINDOW_MS)


class LandmarkIndex:
    """Thread-safe, over the store's Milvus connection (whose writes it shares: grouped on Milvus Lite)."""

    def __init__(self, store: MilvusStore, config: LandmarkConfig) -> None:
        if not 0 < config.window_ms <= MAX_WINDOW_MS:
            raise ValueError(f"landmark windows are 1 to {MAX_WINDOW_MS} ms long")
        self._store = store
        self._config = config
        self._lock = threading.Lock()
        self._create_lock = threading.Lock()
        self._ready: set[str] = set()  # collections whose landmark collection exists and is loaded
        self._counts = HashCounts(store, self._milvus_name)

    def upsert(self, name: str, audio_id: str, duration_ms: int, hashes: np.ndarray, times_ms: np.ndarray,
               labels: Sequence[str] = ()) -> int:
        """Writes a recording's landmarks, with its label tokens (labels.py); returns the rows written."""
        rows = window_rows(audio_id, duration_ms, hashes, times_ms, self._config.window_ms, labels)
        if not rows:
            return 0
        milvus_name = self._milvus_name(name)
        with self._store.translated(name):
            self._ensure(name)
            replaced, _ = _unpacked(self._rows(milvus_name, [row[WINDOW_ID] for row in rows]))
            self._store.write_rows(milvus_name, rows, WINDOW_ID)
        self._counts.add(name, hashes, replaced)
        return len(rows)

    def match(self, name: str, hashes: np.ndarray, times_ms: np.ndarray, top_k: int, excluded_audio_id: str = "",
              audio_ids: Sequence[str] = (), labels: str = "") -> list[LandmarkVote]:
        """Recordings whose landmarks line up with these at one offset, most landmarks first, each with the counts
        of the query's and its own landmarks over the overlap at that offset; optionally among `audio_ids` only and
        among recordings whose labels pass `labels` (labels.label_filter) only."""
        if not len(hashes) or not self._exists(name):
            return []
        telling = ~np.isin(hashes, self._counts.hot(name, hashes, self._config.max_hash_count))
        if not telling.any():
            return []
        windows = self._candidates(name, hashes[telling], times_ms[telling], top_k,
                                   both(audio_filter(audio_ids), _other_than(excluded_audio_id), labels))
        votes = vote(hits(windows, hashes[telling], times_ms[telling]))[:top_k]
        durations_ms = {window.audio_id: window.duration_ms for window in windows}
        on_recordings = self._under_query(name, votes, int(times_ms.min()), int(times_ms.max()))

        def distinct_hashes(audio_id: str, first_ms: int, last_ms: int) -> int:
            recording_hashes, recording_times = _unpacked(on_recordings.get(audio_id, []))
            return len(np.unique(recording_hashes[(recording_times >= first_ms) & (recording_times <= last_ms)]))

        return with_overlaps(votes, hashes.tolist(), times_ms.tolist(), durations_ms, distinct_hashes)

    def landmarks_of(self, name: str, audio_id: str, before_ms: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """A recording's hashes and times, by time; with `before_ms`, only those starting before it."""
        if not self._exists(name):
            return np.empty(0, np.uint32), np.empty(0, np.int32)
        expression = f"audio_id == {json.dumps(audio_id)}"
        if before_ms > 0:
            expression += f" and start_ms < {int(before_ms)}"
        hashes, times = _unpacked(self._windows(name, expression))
        keep = times < before_ms if before_ms > 0 else np.ones(len(times), bool)
        order = np.lexsort((hashes[keep], times[keep]))
        return hashes[keep][order].astype(np.uint32), times[keep][order].astype(np.int32)

    def delete_audio(self, name: str, audio_ids: Sequence[str]) -> None:
        if not audio_ids or not self._exists(name):
            return
        milvus_name = self._milvus_name(name)

        deleted: list[StoredWindow] = []

        def delete() -> list[int]:
            deleted.extend(self._windows(name, audio_filter(audio_ids)))
            window_ids = [window.window_id for window in deleted]
            for start in range(0, len(window_ids), ITERATOR_BATCH):
                with MILVUS_DURATION.labels("delete").time():
                    self._store.client().delete(milvus_name, ids=window_ids[start:start + ITERATOR_BATCH],
                                                timeout=self._store.config.timeout_s)
            return window_ids

        with self._store.translated(name):
            self._store.run_write(milvus_name, delete, WINDOW_ID)
        self._counts.add(name, np.empty(0, np.int64), _unpacked(deleted)[0])

    def drop(self, name: str) -> None:
        with self._lock:
            self._ready.discard(name)
        with self._store.translated(name):
            self._store.client().drop_collection(self._milvus_name(name), timeout=self._store.config.timeout_s)
        self._counts.drop(name)

    def list_audio_ids(self, name: str) -> list[str]:
        if not self._exists(name):
            return []
        audio_ids: set[str] = set()
        for batch in self._store.iterate(name, self._milvus_name(name), "", ["audio_id"], ITERATOR_BATCH):
            audio_ids.update(row["audio_id"] for row in batch)
        return sorted(audio_ids)

    # Internals

    def _candidates(self, name: str, hashes: np.ndarray, times_ms: np.ndarray, top_k: int, expression: str
                    ) -> list[StoredWindow]:
        queries = [_sparse(hashes[inside]) for inside in _window_masks(times_ms, self._config.window_ms)]
        limit = min(max(self._config.candidates, top_k), MAX_CANDIDATES)
        found: dict[int, StoredWindow] = {}
        config = self._store.config
        with self._store.translated(name):
            for start in range(0, len(queries), SEARCH_BATCH):
                with MILVUS_DURATION.labels("landmarks").time():
                    results = self._store.client().search(
                        self._milvus_name(name), data=queries[start:start + SEARCH_BATCH], anns_field=SPARSE_FIELD,
                        limit=limit, filter=expression, output_fields=WINDOW_FIELDS,
                        search_params={"metric_type": "IP"}, consistency_level=config.consistency,
                        timeout=config.timeout_s)
                for result in results:
                    for hit in result:
                        found[int(hit.id)] = _window({WINDOW_ID: hit.id, **hit["entity"]})
        return list(found.values())

    def _under_query(self, name: str, votes: Sequence[LandmarkVote], first_ms: int, last_ms: int
                     ) -> dict[str, list[StoredWindow]]:
        """The stored windows of each vote's recording that the query (first_ms to last_ms) covers at the vote's
        offset, in one read, for votes that count the recording's landmarks (landmark_vote.with_overlaps)."""
        spans = [(f"(audio_id == {json.dumps(vote.audio_id)}"
                  f" and start_ms > {first_ms + vote.offset_ms - self._config.window_ms}"
                  f" and start_ms <= {last_ms + vote.offset_ms})")
                 for vote in votes if vote.landmarks >= COUNTED_FROM_LANDMARKS]
        by_recording: dict[str, list[StoredWindow]] = {}
        if spans:
            for window in self._windows(name, " or ".join(spans)):
                by_recording.setdefault(window.audio_id, []).append(window)
        return by_recording

    def _rows(self, milvus_name: str, window_ids: list[int]) -> list[StoredWindow]:
        """The stored rows among these ids (those an upsert of them overwrites), read by primary key."""
        found: list[StoredWindow] = []
        for start in range(0, len(window_ids), ITERATOR_BATCH):
            with MILVUS_DURATION.labels("landmarks_get").time():
                rows = self._store.client().get(milvus_name, ids=window_ids[start:start + ITERATOR_BATCH],
                                                output_fields=WINDOW_FIELDS, timeout=self._store.config.timeout_s)
            found.extend(_window(row) for row in rows)
        return found

    def _windows(self, name: str, expression: str) -> list[StoredWindow]:
        return [_window(row) for batch in
                self._store.iterate(name, self._milvus_name(name), expression, WINDOW_FIELDS, ITERATOR_BATCH)
                for row in batch]

    def _milvus_name(self, name: str) -> str:
        return self._store.milvus_name(name) + COLLECTION_SUFFIX

    def _exists(self, name: str) -> bool:
        with self._lock:
            if name in self._ready:
                return True
        with self._store.translated(name):
            milvus = self._store.client()
            if not milvus.has_collection(self._milvus_name(name), timeout=self._store.config.timeout_s):
                return False
            self._load(milvus, name)
        return True

    def _ensure(self, name: str) -> None:
        if self._exists(name):
            return
        with self._create_lock:
            if not self._exists(name):
                self._create(name)

    def _create(self, name: str) -> None:
        milvus = self._store.client()
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(WINDOW_ID, DataType.INT64, is_primary=True)
        schema.add_field("audio_id", DataType.VARCHAR, max_length=AUDIO_ID_MAX_CHARS)
        schema.add_field("start_ms", DataType.INT64)
        schema.add_field("duration_ms", DataType.INT64)
        schema.add_field(SPARSE_FIELD, DataType.SPARSE_FLOAT_VECTOR)
        schema.add_field(PACKED_FIELD, DataType.ARRAY, element_type=DataType.INT64, max_capacity=MAX_PACKED)
        add_labels_field(schema)
        index_params = milvus.prepare_index_params()
        index_params.add_index(field_name=SPARSE_FIELD, index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        try:
            milvus.create_collection(self._milvus_name(name), schema=schema, index_params=index_params,
                                     consistency_level=self._store.config.consistency,
                                     timeout=self._store.config.timeout_s)
        except Exception as error:
            if self._exists(name):
                return  # another replica created it meanwhile
            if _lacks_sparse_vectors(error):
                raise FailedPrecondition(
                    "this Milvus has no sparse vectors (Milvus 2.4 or later holds the landmark index)",
                    reason="LANDMARKS_UNSUPPORTED", collection=name) from error
            raise
        with self._lock:
            self._ready.add(name)

    def _load(self, milvus: MilvusClient, name: str) -> None:
        milvus_name, timeout = self._milvus_name(name), self._store.config.timeout_s
        if milvus.get_load_state(milvus_name, timeout=timeout)["state"] != LoadState.Loaded:
            milvus.load_collection(milvus_name, timeout=timeout)
        with self._lock:
            self._ready.add(name)


def window_rows(audio_id: str, duration_ms: int, hashes: np.ndarray, times_ms: np.ndarray, window_ms: int,
                labels: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The rows of a recording's landmarks: one per window (more where a window holds over MAX_PACKED)."""
    hashes, times_ms = np.asarray(hashes, np.int64), np.asarray(times_ms, np.int64)
    rows = []
    for inside in _window_masks(times_ms, window_ms):
        window = int(times_ms[inside][0] // window_ms)
        start_ms = window * window_ms
        packed = hashes[inside] << TIME_BITS | (times_ms[inside] - start_ms)
        for part, first in enumerate(range(0, len(packed), MAX_PACKED)):
            chunk = packed[first:first + MAX_PACKED]
            rows.append({WINDOW_ID: window_id(audio_id, window, part), "audio_id": audio_id, "start_ms": start_ms,
                         "duration_ms": int(duration_ms), SPARSE_FIELD: _stored_sparse(chunk >> TIME_BITS),
                         PACKED_FIELD: chunk.tolist(), LABELS_FIELD: list(labels)})
    return rows


def window_id(audio_id: str, window: int, part: int) -> int:
    digest = hashlib.blake2b(f"{audio_id}/{window}/{part}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & _ID_MASK


def hits(windows: Sequence[StoredWindow], hashes: np.ndarray, times_ms: np.ndarray) -> list[Hit]:
    """Every pairing of a stored landmark with a query landmark of the same hash."""
    query_times: dict[int, list[int]] = {}
    for hash_value, time_ms in zip(hashes.tolist(), times_ms.tolist(), strict=True):
        query_times.setdefault(hash_value, []).append(time_ms)
    wanted = np.fromiter(query_times, np.int64, len(query_times))
    found: list[Hit] = []
    for window in windows:
        stored_hashes, stored_times = window.hashes, window.times_ms
        shared = np.isin(stored_hashes, wanted)
        for hash_value, reference_ms in zip(stored_hashes[shared].tolist(), stored_times[shared].tolist(),
                                            strict=True):
            found.extend((window.audio_id, hash_value, reference_ms, query_ms) for query_ms in query_times[hash_value])
    return found


def _window_masks(times_ms: np.ndarray, window_ms: int) -> Iterator[np.ndarray]:
    window_of = np.asarray(times_ms, np.int64) // window_ms
    for window in np.unique(window_of):
        yield window_of == window


def _sparse(hashes: np.ndarray, weight: float = 1.0) -> dict[int, float]:
    return dict.fromkeys(np.unique(np.asarray(hashes, np.int64) % SPARSE_KEYS).tolist(), weight)


def _stored_sparse(hashes: np.ndarray) -> dict[int, float]:
    """A stored window's hashes, each weighing 1/sqrt(their number): a search then ranks a window by the hashes it
    shares over the square root of those it holds, so that a short sound's window, which shares most of its few
    hashes with a query, is not crowded out by long windows that share more of their thousands by chance."""
    distinct = len(np.unique(hashes))
    return _sparse(hashes, 1.0 / float(np.sqrt(distinct))) if distinct else {}


def _window(row: dict[str, Any]) -> StoredWindow:
    return StoredWindow(int(row[WINDOW_ID]), row["audio_id"], int(row["start_ms"]), int(row["duration_ms"]),
                        np.asarray(row[PACKED_FIELD], np.int64))


def _unpacked(windows: Sequence[StoredWindow]) -> tuple[np.ndarray, np.ndarray]:
    if not windows:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return (np.concatenate([window.hashes for window in windows]),
            np.concatenate([window.times_ms for window in windows]))


def _other_than(excluded_audio_id: str) -> str:
    return f"audio_id != {json.dumps(excluded_audio_id)}" if excluded_audio_id else ""


def _lacks_sparse_vectors(error: Exception) -> bool:
    message = str(error).lower()
    return "sparse" in message or "data type" in message or "not supported" in message

