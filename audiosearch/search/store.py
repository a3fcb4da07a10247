"""The vector store: one Milvus collection per audiosearch collection, through pymilvus' MilvusClient.

Schema: `segment_id` INT64 primary key (assigned by the catalog), `audio_id` VARCHAR(64), `start_s` and
`end_s` FLOAT, `vector` FLOAT_VECTOR(dim), `labels` ARRAY of VARCHAR (the recording's tag and metadata tokens,
labels.py; collections created before it lack it and refuse filters); inner-product metric on L2-normalised
vectors. The same code drives Milvus Lite (a local `.db` path), a standalone server and a cluster
(`http://host:19530`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from prometheus_client import Histogram
from pymilvus import CollectionSchema, DataType, MilvusClient, MilvusException
from pymilvus.client.types import LoadState
from pymilvus.exceptions import ConnectError, ErrorCode, MilvusUnavailableException

from audiosearch.common.errors import FailedPrecondition, NotFound, Unavailable
from audiosearch.common.metrics import LATENCY_BUCKETS
from audiosearch.search.group_commit import GroupCommit
from audiosearch.search.labels import LABELS_FIELD, MAX_LABELS, TOKEN_CHARS, both

log = logging.getLogger(__name__)

SERVER_SCHEMES = ("http://", "https://", "tcp://", "unix:")
INDEX_TYPES = ("FLAT", "HNSW", "IVF_FLAT", "IVF_SQ8")
CONSISTENCY_LEVELS = ("Strong", "Bounded", "Session", "Eventually")
METRIC = "IP"
HIT_FIELDS = ["audio_id", "start_s", "end_s"]
AUDIO_ID_MAX_CHARS = 64
UPSERT_BATCH = 1000
SEARCH_BATCH = 1024
VECTOR_FIELD = "vector"
ITERATOR_BATCH = 1000
VECTOR_ITERATOR_BATCH = 256
PING_TIMEOUT_S = 3.0
# pymilvus reports a refused connection as code 2 ("Fail connecting to server").
_CONNECT_FAILED_CODE = 2
# Milvus' "collection not loaded": after a Milvus restart, until it has loaded the collection again.
_NOT_LOADED_CODE = 101
_DOWN_STATUS_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}

MILVUS_DURATION = Histogram(
    "audiosearch_milvus_request_duration_seconds",
    "Duration of one Milvus search, upsert, delete, (Lite) flush or (server) write-visibility read",
    ["operation"], buckets=LATENCY_BUCKETS,
)


@dataclass(frozen=True)
class StoreConfig:
    uri: str
    token: str = ""
    timeout_s: float = 10.0
    index_type: str = "auto"
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    search_ef: int = 64
    ivf_nlist: int = 1024
    ivf_nprobe: int = 16
    collection_prefix: str = "audiosearch_"
    # Strong makes every read wait for Milvus's next time tick, far longer than the search itself takes
    # (docs/benchmarks.md, bench.vector_scale). Instead, on a server, each write returns only once a read can see it
    # (`visible_writes`), and reads ask for Bounded staleness, which waits only on a query node more than 5 s behind
    # (one restarting, say).
    consistency: str = "Bounded"
    visible_writes: bool = True

    @property
    def is_lite(self) -> bool:
        return not self.uri.startswith(SERVER_SCHEMES)

    @property
    def effective_index_type(self) -> str:
        if self.index_type != "auto":
            return self.index_type
        return "FLAT" if self.is_lite else "HNSW"


@dataclass(frozen=True)
class Segment:
    segment_id: int
    audio_id: str
    start_s: float
    end_s: float
    vector: np.ndarray
    labels: tuple[str, ...] = ()  # its recording's label tokens (labels.py)


@dataclass(frozen=True)
class Hit:
    segment_id: int
    audio_id: str
    start_s: float
    end_s: float
    score: float


@dataclass(frozen=True)
class _Layout:
    """What this process needs to know about an existing collection."""

    dimension: int
    index_type: str
    labelled: bool  # its rows hold their recordings' labels (collections created before labels do not)


class MilvusStore:
    """Thread-safe; connects lazily, so the service starts (NOT_SERVING) while Milvus is still down."""

    def __init__(self, config: StoreConfig) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._milvus: MilvusClient | None = None
        self._layouts: dict[str, _Layout] = {}
        # Milvus Lite's writes go one at a time, grouped (group_commit.py); a server takes them concurrently.
        self._lite_writes = GroupCommit(self._upsert_rows, self._flush, _worth_isolating, "segment_id")

    @property
    def config(self) -> StoreConfig:
        return self._config

    def close(self) -> None:
        with self._lock:
            milvus, self._milvus = self._milvus, None
        if milvus is not None:
            milvus.close()

    def ping(self) -> bool:
        """True when Milvus answers within a few seconds."""
        try:
            self.client().list_collections(timeout=min(self._config.timeout_s, PING_TIMEOUT_S))
        except (MilvusException, grpc.RpcError, Unavailable) as error:
            log.debug("milvus ping failed", extra={"error": str(error)})
            return False
        return True

    # Collections

    def ensure_collection(self, name: str, dimension: int) -> bool:
        """Creates the collection when missing (True); otherwise checks its dimension (False)."""
        with self.translated(name):
            milvus = self.client()
            if not milvus.has_collection(self.milvus_name(name), timeout=self._config.timeout_s):
                self._create(milvus, name, dimension)
                return True
            self._forget(name)
            existing = self._layout(name).dimension
        if existing != dimension:
            raise FailedPrecondition(
                f"collection {name!r} holds {existing}-dimensional vectors, not {dimension}",
                reason="DIMENSION_MISMATCH", collection=name, existing=existing, requested=dimension,
            )
        return False

    def drop_collection(self, name: str) -> None:
        self._forget(name)
        with self.translated(name):
            self.client().drop_collection(self.milvus_name(name), timeout=self._config.timeout_s)

    def dimension(self, name: str) -> int:
        with self.translated(name):
            return self._layout(name).dimension

    # Segments

    def upsert(self, name: str, segments: Sequence[Segment]) -> int:
        """Writes segments by id (the last wins when an id repeats); returns how many were written."""
        # Milvus 2.3 keeps both rows when one batch repeats a primary key, so repeats never reach it.
        unique = list({segment.segment_id: segment for segment in segments}.values())
        with self.translated(name):
            labelled = self._layout(name).labelled
            self.write_rows(self.milvus_name(name), [_row(segment, labelled) for segment in unique], "segment_id")
        return len(unique)

    def search(
        self, name: str, queries: np.ndarray, top_k: int, audio_ids: Sequence[str] = (), labels: str = ""
    ) -> list[list[Hit]]:
        """The `top_k` nearest segments of each query row, best first, optionally among `audio_ids` only and
        among recordings whose labels pass `labels` (labels.label_filter) only."""
        with self.translated(name):
            milvus = self.client()
            layout = self._layout(name)
            if labels and not layout.labelled:
                raise FailedPrecondition(
                    f"collection {name!r} was written before its rows held labels; filter it by recording ids",
                    reason="FILTER_UNSUPPORTED", collection=name)
            params = self._search_params(layout.index_type, top_k)
            results: list[list[Hit]] = []
            for start in range(0, len(queries), SEARCH_BATCH):
                with MILVUS_DURATION.labels("search").time():
                    found = milvus.search(
                        self.milvus_name(name), data=query_bytes(queries[start:start + SEARCH_BATCH]),
                        anns_field=VECTOR_FIELD, limit=top_k, filter=both(audio_filter(audio_ids), labels),
                        output_fields=HIT_FIELDS, search_params=params, consistency_level=self._config.consistency,
                        timeout=self._config.timeout_s,
                    )
                results.extend([_hit(hit) for hit in hits] for hits in found)
        return results

    def delete_audio(self, name: str, audio_ids: Sequence[str]) -> None:
        """Deletes every segment of the recordings: their ids are read with the configured consistency, then
        deleted by primary key. A delete by filter has Milvus 2.3 resolve the filter with an internal query of its
        own, which under load (after a Milvus restart) can miss segments upserted a few seconds before and leave
        vectors without a record."""
        if not audio_ids:
            return
        with self.translated(name):
            milvus = self.client()
            expression = audio_filter(audio_ids)
            milvus_name = self.milvus_name(name)

            def write() -> list[int]:
                batches = self.iterate(name, milvus_name, expression, ["segment_id"], ITERATOR_BATCH)
                segment_ids = [int(row["segment_id"]) for batch in batches for row in batch]
                for start in range(0, len(segment_ids), UPSERT_BATCH):
                    with MILVUS_DURATION.labels("delete").time():
                        milvus.delete(milvus_name, ids=segment_ids[start:start + UPSERT_BATCH],
                                      timeout=self._config.timeout_s)
                return segment_ids

            self.run_write(milvus_name, write, "segment_id")

    def count(self, name: str, audio_id: str = "") -> int:
        with self.translated(name):
            rows = self.client().query(
                self.milvus_name(name), filter=audio_filter([audio_id] if audio_id else []),
                output_fields=["count(*)"], consistency_level=self._config.consistency,
                timeout=self._config.timeout_s,
            )
        return int(rows[0]["count(*)"])

    def list_audio_ids(self, name: str) -> list[str]:
        """Distinct recording ids, read in batches so memory grows with recordings, not segments."""
        audio_ids: set[str] = set()
        for batch in self.iterate(name, self.milvus_name(name), "", ["audio_id"], ITERATOR_BATCH):
            audio_ids.update(row["audio_id"] for row in batch)
        return sorted(audio_ids)

    def segments_of(self, name: str, audio_ids: Sequence[str]) -> list[Segment]:
        """Every stored segment of the given recordings, vectors included, in no particular order."""
        if not audio_ids:
            return []
        fields = [*HIT_FIELDS, VECTOR_FIELD]
        return [
            _segment(row)
            for batch in self.iterate(name, self.milvus_name(name), audio_filter(audio_ids), fields,
                                      VECTOR_ITERATOR_BATCH)
            for row in batch
        ]

    # Writes to any collection of this Milvus (the landmark index's too)

    def write_rows(self, milvus_name: str, rows: list[dict[str, Any]], primary_key: str) -> None:
        """Upserts rows: on Milvus Lite grouped with other writes and flushed; on a server, returns once reads see
        the last row."""
        if self._config.is_lite:
            self._lite_writes.upsert(milvus_name, rows, primary_key)
            return
        self._upsert_rows(milvus_name, rows)
        if rows:
            self._await_row(milvus_name, primary_key, int(rows[-1][primary_key]), present=True)

    def run_write(self, milvus_name: str, delete: Callable[[], list[int]], primary_key: str) -> None:
        """Runs a delete that returns the primary keys it deleted: on Milvus Lite in turn with the other writes,
        then flushed; on a server, returns once reads no longer see the last one."""
        if self._config.is_lite:
            self._lite_writes.run(milvus_name, delete)
        elif deleted := delete():
            self._await_row(milvus_name, primary_key, deleted[-1], present=False)

    # Internals

    def milvus_name(self, name: str) -> str:
        return self._config.collection_prefix + name

    def client(self) -> MilvusClient:
        with self._lock:
            if self._milvus is None:
                self._milvus = self._connect()
            return self._milvus

    def _connect(self) -> MilvusClient:
        uri = self._config.uri
        if self._config.is_lite:
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        try:
            milvus = MilvusClient(uri=uri, token=self._config.token, timeout=self._config.timeout_s)
        except MilvusException as error:
            raise Unavailable(f"cannot connect to Milvus: {error.message}", reason="DEPENDENCY_UNAVAILABLE",
                              dependency="milvus") from error
        log.info("connected to milvus", extra={"lite": self._config.is_lite})
        return milvus

    def _create(self, milvus: MilvusClient, name: str, dimension: int) -> None:
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("segment_id", DataType.INT64, is_primary=True)
        schema.add_field("audio_id", DataType.VARCHAR, max_length=AUDIO_ID_MAX_CHARS)
        schema.add_field("start_s", DataType.FLOAT)
        schema.add_field("end_s", DataType.FLOAT)
        schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dimension)
        add_labels_field(schema)
        index_type = self._config.effective_index_type
        index_params = milvus.prepare_index_params()
        params = self._index_params(index_type)
        index_params.add_index(field_name=VECTOR_FIELD, index_type=index_type, metric_type=METRIC, params=params)
        # With index parameters MilvusClient creates, indexes and loads the collection in one go.
        milvus.create_collection(
            self.milvus_name(name), schema=schema, index_params=index_params,
            consistency_level=self._config.consistency, timeout=self._config.timeout_s,
        )
        with self._lock:
            self._layouts[name] = _Layout(dimension, index_type, labelled=True)
        log.info("collection created", extra={"collection": name, "dim": dimension, "index": index_type})

    def _layout(self, name: str) -> _Layout:
        with self._lock:
            layout = self._layouts.get(name)
        if layout is None:
            layout = self._attach(name)
            with self._lock:
                self._layouts[name] = layout
        return layout

    def _attach(self, name: str) -> _Layout:
        """Reads the dimension and index of an existing collection and makes sure it is loaded."""
        milvus, milvus_name, timeout = self.client(), self.milvus_name(name), self._config.timeout_s
        description = milvus.describe_collection(milvus_name, timeout=timeout)
        vector_field = next(f for f in description["fields"] if f["name"] == VECTOR_FIELD)
        indexes = milvus.list_indexes(milvus_name, field_name=VECTOR_FIELD, timeout=timeout)
        index = milvus.describe_index(milvus_name, indexes[0], timeout=timeout) if indexes else {}
        if milvus.get_load_state(milvus_name, timeout=timeout)["state"] != LoadState.Loaded:
            milvus.load_collection(milvus_name, timeout=timeout)
        labelled = any(field["name"] == LABELS_FIELD for field in description["fields"])
        return _Layout(int(vector_field["params"]["dim"]), str(index.get("index_type", "FLAT")), labelled)

    def _await_row(self, milvus_name: str, primary_key: str, key: int, present: bool) -> None:
        """Returns once reads see the write just made: a Strong read (it waits for Milvus's time tick, as every
        read would under Strong) of the last row the write touched finds it there, or gone. Not Session: the
        timestamp that Session waits for is missing from Milvus 2.3's delete replies."""
        if not self._config.visible_writes:
            return
        with MILVUS_DURATION.labels("visible").time():
            rows = self.client().query(
                milvus_name, filter=f"{primary_key} in [{int(key)}]", output_fields=[primary_key],
                consistency_level="Strong", timeout=self._config.timeout_s)
        if bool(rows) != present:
            raise _unavailable(f"Milvus took a write to {milvus_name!r}, but a Strong read does not see it")

    def _upsert_rows(self, milvus_name: str, rows: list[dict[str, Any]]) -> None:
        milvus = self.client()
        for start in range(0, len(rows), UPSERT_BATCH):
            with MILVUS_DURATION.labels("upsert").time():
                milvus.upsert(milvus_name, rows[start:start + UPSERT_BATCH], timeout=self._config.timeout_s)

    def _flush(self, milvus_name: str) -> None:
        with MILVUS_DURATION.labels("flush").time():
            self.client().flush(milvus_name, timeout=self._config.timeout_s)

    def _forget(self, name: str) -> None:
        with self._lock:
            self._layouts.pop(name, None)

    def _index_params(self, index_type: str) -> dict[str, int]:
        config = self._config
        if index_type == "HNSW":
            return {"M": config.hnsw_m, "efConstruction": config.hnsw_ef_construction}
        if index_type.startswith("IVF"):
            return {"nlist": config.ivf_nlist}
        return {}

    def _search_params(self, index_type: str, top_k: int) -> dict[str, Any]:
        params: dict[str, int] = {}
        if index_type == "HNSW":
            params = {"ef": max(self._config.search_ef, top_k)}
        elif index_type.startswith("IVF"):
            params = {"nprobe": self._config.ivf_nprobe}
        return {"metric_type": METRIC, "params": params}

    def iterate(
        self, name: str, milvus_name: str, expression: str, fields: list[str], batch_size: int
    ) -> Iterator[list[dict[str, Any]]]:
        """Rows of a Milvus collection that match `expression`, in batches (errors as `translated(name)`)."""
        with self.translated(name):
            iterator = self.client().query_iterator(
                milvus_name, batch_size=batch_size, filter=expression, output_fields=fields,
                consistency_level=self._config.consistency, timeout=self._config.timeout_s,
            )
            try:
                while batch := iterator.next():
                    yield batch
            finally:
                iterator.close()

    @contextmanager
    def translated(self, name: str) -> Iterator[None]:
        """Milvus failures → the service's errors (missing collection, Milvus down); others propagate."""
        try:
            yield
        except MilvusException as error:
            if error.code == ErrorCode.COLLECTION_NOT_FOUND:
                self._forget(name)
                raise NotFound(f"collection {name!r} does not exist", reason="COLLECTION_NOT_FOUND",
                               collection=name) from error
            if _is_unreachable(error) or _timed_out(error):
                raise _unavailable(error.message) from error
            if error.code == _NOT_LOADED_CODE:
                self._forget(name)  # the next call attaches again, which loads it if Milvus has not yet
                raise _unavailable(f"collection {name!r} is loading: {error.message}") from error
            raise
        except grpc.RpcError as error:
            if isinstance(error, grpc.Call) and error.code() in _DOWN_STATUS_CODES:
                raise _unavailable(error.details() or "") from error
            raise


def query_bytes(queries: np.ndarray) -> list[bytes]:
    """Query rows as little-endian float32 bytes, which pymilvus sends as they are for a FLOAT_VECTOR field (it
    learns the field's type from the collection's schema, cached after the first search). A numpy row it packs
    float by float with struct.pack into the same placeholder, many times slower (docs/benchmarks.md,
    bench.vector_scale)."""
    return [row.tobytes() for row in np.ascontiguousarray(queries, dtype="<f4")]


def audio_filter(audio_ids: Sequence[str]) -> str:
    """`audio_id in [...]`; the ids are validated to a charset that a JSON string literal quotes safely."""
    if not audio_ids:
        return ""
    return f"audio_id in {json.dumps(list(audio_ids))}"


def add_labels_field(schema: CollectionSchema) -> None:
    schema.add_field(LABELS_FIELD, DataType.ARRAY, element_type=DataType.VARCHAR, max_length=TOKEN_CHARS,
                     max_capacity=MAX_LABELS)


def _row(segment: Segment, labelled: bool) -> dict[str, Any]:
    row = {
        "segment_id": segment.segment_id, "audio_id": segment.audio_id,
        "start_s": segment.start_s, "end_s": segment.end_s, VECTOR_FIELD: segment.vector,
    }
    if labelled:
        row[LABELS_FIELD] = list(segment.labels)
    return row


def _hit(hit: Any) -> Hit:
    entity = hit["entity"]
    return Hit(int(hit.id), entity["audio_id"], float(entity["start_s"]), float(entity["end_s"]),
               float(hit.distance))


def _segment(row: dict[str, Any]) -> Segment:
    return Segment(int(row["segment_id"]), row["audio_id"], float(row["start_s"]), float(row["end_s"]),
                   np.asarray(row[VECTOR_FIELD], dtype=np.float32))


def _is_unreachable(error: MilvusException) -> bool:
    if isinstance(error, ConnectError | MilvusUnavailableException):
        return True
    return error.code == _CONNECT_FAILED_CODE or error.code in _DOWN_STATUS_CODES


def _worth_isolating(error: Exception) -> bool:
    """A merged upsert refused for its data, not because Milvus is down: one of the writes may be to blame."""
    return isinstance(error, MilvusException) and not (_is_unreachable(error) or _timed_out(error))


def _timed_out(error: MilvusException) -> bool:
    # pymilvus retries a call until its timeout, then raises "[method] Retry timeout: 10.0s, ..." (code 1 or the
    # last error's): e.g. a load that Milvus, just restarted, has not finished yet.
    return "Retry timeout" in str(error.message)


def _unavailable(detail: str) -> Unavailable:
    return Unavailable(f"Milvus is unavailable: {detail}", reason="DEPENDENCY_UNAVAILABLE",
                       dependency="milvus")
