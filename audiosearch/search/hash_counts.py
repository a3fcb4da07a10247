"""How often each landmark hash is stored in a collection, so that hot hashes can be left out of a match.

A hash that many recordings hold (a steady tone's, silence's edges) lines up with any query at some offset by chance
and says nothing about one recording; the landmark index leaves out of a query the hashes stored more than
`max_count` times, as the catalog's SQL vote did. The counts live in Milvus beside the landmark windows: one row per
hash of the collection, `hash` INT64 primary key and `count` INT64 (the landmarks that carry it), and a
two-dimensional vector field that Milvus requires of every collection and that nothing searches.

Counts are kept by read-modify-write under a lock of this process: replicas of the search service that write the
same collection at once may lose an update, which leaves a count short by one recording's share. A hot hash holds
far more than one recording's share, so the rule it feeds keeps its meaning.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import numpy as np
from pymilvus import DataType, MilvusClient

from audiosearch.search.store import MILVUS_DURATION, MilvusStore

COLLECTION_SUFFIX = "__hash_counts"
HASH_FIELD = "hash"
COUNT_FIELD = "count"
UNUSED_VECTOR = "unused"
READ_BATCH = 4096  # primary keys per read
_ZERO_VECTOR = [0.0, 0.0]


class HashCounts:
    """Thread-safe, over the landmark index's Milvus connection."""

    def __init__(self, store: MilvusStore, milvus_name: Callable[[str], str]) -> None:
        self._store = store
        self._landmark_collection = milvus_name
        self._lock = threading.Lock()  # one read-modify-write at a time
        self._pending_lock = threading.Lock()
        self._pending: dict[str, Counter[int]] = {}  # changes not yet written, by collection
        self._ready: set[str] = set()

    def add(self, name: str, added: np.ndarray, removed: np.ndarray | None = None) -> None:
        """Counts the hashes of landmarks written (`added`) and uncounts those of landmarks replaced or deleted;
        returns once the counts are written.

        Concurrent calls are written together: each queues its changes, and whoever holds the lock next writes all
        those queued for the collection in one read and one upsert, so a caller whose changes another wrote
        meanwhile finds nothing left to write."""
        hashes, changes = _changes(added, np.empty(0, np.int64) if removed is None else removed)
        if not len(hashes):
            return
        with self._pending_lock:
            self._pending.setdefault(name, Counter()).update(dict(zip(hashes.tolist(), changes.tolist(), strict=True)))
        with self._store.translated(name), self._lock:
            with self._pending_lock:
                queued = self._pending.pop(name, Counter())
            try:
                self._write(name, queued)
            except Exception:
                with self._pending_lock:
                    self._pending.setdefault(name, Counter()).update(queued)  # for the next writer to try again
                raise

    def _write(self, name: str, queued: Counter[int]) -> None:
        changed = {hash_value: change for hash_value, change in queued.items() if change}
        if not changed:
            return
        self._ensure(name)
        milvus_name = self._milvus_name(name)
        counts = self._read(milvus_name, np.fromiter(changed, np.int64, len(changed)))
        rows = [{HASH_FIELD: hash_value, COUNT_FIELD: max(counts.get(hash_value, 0) + change, 0),
                 UNUSED_VECTOR: _ZERO_VECTOR} for hash_value, change in changed.items()]
        self._store.write_rows(milvus_name, rows, HASH_FIELD)

    def hot(self, name: str, hashes: np.ndarray, max_count: int) -> np.ndarray:
        """The distinct hashes among these that the collection stores more than `max_count` times."""
        unique = np.unique(np.asarray(hashes, np.int64))
        if not len(unique) or not self._exists(name):
            return np.empty(0, np.int64)
        with self._store.translated(name):
            counts = self._read(self._milvus_name(name), unique)
        return np.asarray(sorted(h for h, count in counts.items() if count > max_count), np.int64)

    def drop(self, name: str) -> None:
        with self._lock:
            self._ready.discard(name)
        with self._store.translated(name):
            self._store.client().drop_collection(self._milvus_name(name), timeout=self._store.config.timeout_s)

    # Internals

    def _read(self, milvus_name: str, hashes: np.ndarray) -> dict[int, int]:
        counts: dict[int, int] = {}
        config = self._store.config
        for start in range(0, len(hashes), READ_BATCH):
            with MILVUS_DURATION.labels("hash_counts").time():
                rows = self._store.client().get(milvus_name, ids=hashes[start:start + READ_BATCH].tolist(),
                                                output_fields=[COUNT_FIELD], timeout=config.timeout_s)
            counts.update((int(row[HASH_FIELD]), int(row[COUNT_FIELD])) for row in rows)
        return counts

    def _milvus_name(self, name: str) -> str:
        return self._landmark_collection(name) + COLLECTION_SUFFIX

    def _exists(self, name: str) -> bool:
        if name in self._ready:
            return True
        milvus, milvus_name, timeout = self._store.client(), self._milvus_name(name), self._store.config.timeout_s
        with self._store.translated(name):
            if not milvus.has_collection(milvus_name, timeout=timeout):
                return False
            milvus.load_collection(milvus_name, timeout=timeout)
        self._ready.add(name)
        return True

    def _ensure(self, name: str) -> None:
        """Creates the collection's counts where they do not exist yet (called under the lock)."""
        if self._exists(name):
            return
        milvus = self._store.client()
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(HASH_FIELD, DataType.INT64, is_primary=True)
        schema.add_field(COUNT_FIELD, DataType.INT64)
        schema.add_field(UNUSED_VECTOR, DataType.FLOAT_VECTOR, dim=len(_ZERO_VECTOR))
        index_params = milvus.prepare_index_params()
        index_params.add_index(field_name=UNUSED_VECTOR, index_type="FLAT", metric_type="L2")
        try:
            milvus.create_collection(self._milvus_name(name), schema=schema, index_params=index_params,
                                     consistency_level=self._store.config.consistency,
                                     timeout=self._store.config.timeout_s)
        except Exception:
            if not self._exists(name):  # another replica may have created it meanwhile
                raise
        self._ready.add(name)


def _changes(added: np.ndarray, removed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct hashes touched and, for each, landmarks added minus landmarks removed (zero changes left out)."""
    values = np.concatenate([np.asarray(added, np.int64), np.asarray(removed, np.int64)])
    signs = np.concatenate([np.ones(len(added), np.int64), -np.ones(len(removed), np.int64)])
    hashes, inverse = np.unique(values, return_inverse=True)
    changes = np.bincount(inverse, weights=signs, minlength=len(hashes)).astype(np.int64)
    changed = changes != 0
    return hashes[changed], changes[changed]
