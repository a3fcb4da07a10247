"""The catalog's repository: collections, recordings and segments in SQL, parameterised throughout."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from audiosearch.catalog import paging, validation
from audiosearch.catalog.database import ConstraintViolation, Database, Transaction, retry_on_conflict
from audiosearch.catalog.records import (
    AudioFilter,
    AudioRecord,
    AudioStatus,
    Collection,
    CollectionStats,
    CreatedAudio,
    ModelIdentity,
    NewAudio,
    NewSegment,
    Page,
    Segment,
    Tag,
    TagStatistics,
)
from audiosearch.common.errors import AlreadyExists, FailedPrecondition, NotFound, ServiceError

T = TypeVar("T")

_SEGMENT_ID_MASK = (1 << 63) - 1
_READY = AudioStatus.READY.value
_NO_FILTER = AudioFilter()
_ECHO_CHARS = 128
_LOOKUP_CHUNK = 500

_COLLECTION_COLUMNS = (
    "c.name, c.description, c.model_name, c.model_version, c.embedding_dim, c.sample_rate_hz, c.untrained,"
    " c.window_seconds, c.hop_seconds, c.score_threshold, c.threshold_source, c.create_time_us,"
    " (SELECT COUNT(*) FROM audio a WHERE a.collection = c.name AND a.status = ?),"
    " (SELECT l.landmark_threshold FROM collection_landmarks l WHERE l.collection = c.name),"
    " (SELECT l.landmark_share_threshold FROM collection_landmarks l WHERE l.collection = c.name)"
)
# The audio table's columns in the order of _audio_row and _audio_from_row, the one mapping of a record to a row.
_AUDIO_COLUMN_NAMES = (
    "id", "collection", "name", "sha256", "duration_seconds", "sample_rate_hz", "channels", "codec",
    "size_bytes", "metadata_json", "tags_json", "status", "segment_count", "create_time_us", "update_time_us",
)
_AUDIO_COLUMNS = ", ".join(f"a.{name}" for name in _AUDIO_COLUMN_NAMES)
_INSERT_AUDIO = (
    f"INSERT INTO audio ({', '.join(_AUDIO_COLUMN_NAMES)}) VALUES ({', '.join('?' * len(_AUDIO_COLUMN_NAMES))})"
)
_HAS_TAG = "EXISTS (SELECT 1 FROM audio_tags t WHERE t.audio_id = a.id AND t.label = ?)"
_HAS_METADATA = (
    "EXISTS (SELECT 1 FROM audio_metadata m WHERE m.audio_id = a.id AND m.meta_key = ? AND m.meta_value = ?)"
)
_DELETE_COLLECTION = (
    "DELETE FROM landmarks WHERE collection = ?",
    "DELETE FROM collection_landmarks WHERE collection = ?",
    "DELETE FROM segments WHERE audio_id IN (SELECT id FROM audio WHERE collection = ?)",
    "DELETE FROM audio_tags WHERE audio_id IN (SELECT id FROM audio WHERE collection = ?)",
    "DELETE FROM audio_metadata WHERE audio_id IN (SELECT id FROM audio WHERE collection = ?)",
    "DELETE FROM audio WHERE collection = ?",
    "DELETE FROM collections WHERE name = ?",
)
_DELETE_AUDIO = (
    "DELETE FROM landmarks WHERE audio_id = ?",
    "DELETE FROM segments WHERE audio_id = ?",
    "DELETE FROM audio_tags WHERE audio_id = ?",
    "DELETE FROM audio_metadata WHERE audio_id = ?",
    "DELETE FROM audio WHERE id = ?",
)


def segment_id(audio_id: str, index: int) -> int:
    """Deterministic, so that a retried vector upsert for the same segment hits the same primary key."""
    digest = hashlib.sha256(f"{audio_id}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & _SEGMENT_ID_MASK


class CatalogStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    # Collections

    @retry_on_conflict()
    def create_collection(self, collection: Collection) -> Collection:
        validation.check_collection(collection)
        created = _replace_times(collection, _now_us())
        try:
            with self._db.transaction(write=True) as tx:
                _insert_collection(tx, created)
        except ConstraintViolation as error:
            raise AlreadyExists(
                f"collection {collection.name!r} already exists",
                reason="COLLECTION_EXISTS",
                collection=collection.name,
            ) from error
        return created

    def get_collection(self, name: str) -> Collection:
        with self._db.transaction() as tx:
            return _require_collection(tx, name)

    def list_collections(self, page_size: int = 0, page_token: str = "") -> Page[Collection]:
        """By name; `page_size` 0 takes the default, `page_token` comes from the previous page."""
        size = paging.page_size(page_size)
        after = paging.decode_token(page_token, str)
        with self._db.transaction() as tx:
            rows = tx.fetchall(
                f"SELECT {_COLLECTION_COLUMNS} FROM collections c WHERE c.name > ? ORDER BY c.name LIMIT ?",
                (_READY, after or "", size + 1),
            )
        collections = [_collection_from_row(row) for row in rows]
        return _page(collections, size, lambda collection: collection.name)

    @retry_on_conflict()
    def update_collection_threshold(
        self, name: str, score_threshold: float, threshold_source: str, landmark_threshold: int = 0,
        landmark_share_threshold: float = 0.0,
    ) -> Collection:
        validation.check_threshold(score_threshold, threshold_source)
        validation.check_landmark_threshold(landmark_threshold, landmark_share_threshold)
        with self._db.transaction(write=True) as tx:
            matched = tx.execute(
                "UPDATE collections SET score_threshold = ?, threshold_source = ? WHERE name = ?",
                (score_threshold, threshold_source, name),
            )
            if not matched:
                raise _collection_not_found(name)
            _set_landmark_threshold(tx, name, landmark_threshold, landmark_share_threshold)
            return _require_collection(tx, name)

    @retry_on_conflict()
    def delete_collection(self, name: str) -> None:
        with self._db.transaction(write=True) as tx:
            for statement in _DELETE_COLLECTION:
                tx.execute(statement, (name,))

    # Recordings

    @retry_on_conflict()
    def create_audio(self, audio: NewAudio, segments: Sequence[NewSegment]) -> CreatedAudio:
        """A new PENDING record with its segments, or the record already holding the same content."""
        validation.check_new_audio(audio, segments)
        try:
            with self._db.transaction(write=True) as tx:
                _require_collection_exists(tx, audio.collection)
                existing = _audio_by_sha256(tx, audio.collection, audio.sha256)
                if existing is not None:
                    return CreatedAudio(existing, (), created=False)
                return _insert_audio(tx, audio, segments)
        except ConstraintViolation:
            with self._db.transaction() as tx:
                existing = _audio_by_sha256(tx, audio.collection, audio.sha256)
                _require_collection_exists(tx, audio.collection)
            if existing is None:
                raise
            return CreatedAudio(existing, (), created=False)

    @retry_on_conflict()
    def set_audio_status(
        self, collection: str, audio_id: str, status: AudioStatus, expected: AudioStatus | None = None
    ) -> AudioRecord:
        """Moves a record to `status`; with `expected`, only from that status."""
        statement = "UPDATE audio SET status = ?, update_time_us = ? WHERE id = ? AND collection = ?"
        params: list[Any] = [status.value, _now_us(), audio_id, collection]
        if expected is not None:
            statement += " AND status = ?"
            params.append(expected.value)
        with self._db.transaction(write=True) as tx:
            matched = tx.execute(statement, params)
            current = _audio_by_id(tx, collection, audio_id)
            if current is None:
                raise _audio_not_found(tx, collection, audio_id)
            if not matched:
                raise FailedPrecondition(
                    f"recording {audio_id} is {current.status}, not {expected}",
                    reason="STATUS_CONFLICT",
                    audio_id=audio_id,
                    status=current.status,
                    expected_status=expected,
                )
            return current

    def get_audio(self, collection: str, audio_id: str) -> AudioRecord:
        with self._db.transaction() as tx:
            audio = _audio_by_id(tx, collection, audio_id)
            if audio is None:
                raise _audio_not_found(tx, collection, audio_id)
            return audio

    def find_audio_by_sha256(self, collection: str, sha256: str) -> AudioRecord:
        """The record of any status holding this content."""
        with self._db.transaction() as tx:
            audio = _audio_by_sha256(tx, collection, sha256)
            if audio is None:
                _require_collection_exists(tx, collection)
                raise NotFound(
                    f"no recording with sha256 {_echo(sha256)!r} in collection {_echo(collection)!r}",
                    reason="AUDIO_NOT_FOUND",
                    collection=_echo(collection),
                    sha256=_echo(sha256),
                )
            return audio

    def batch_get_audio(
        self, collection: str, audio_ids: Sequence[str], status: AudioStatus | None, audio_filter: AudioFilter
    ) -> list[AudioRecord]:
        """The records among `audio_ids` in `status` (None: any) that match the filter, in one query."""
        ids = list(dict.fromkeys(audio_ids))
        if len(ids) > validation.MAX_BATCH_IDS:
            raise validation.invalid("audio_ids", f"at most {validation.MAX_BATCH_IDS} ids")
        conditions, params = _audio_conditions(collection, status, audio_filter)
        with self._db.transaction() as tx:
            _require_collection_exists(tx, collection)
            if not ids:
                return []
            placeholders = ", ".join("?" * len(ids))
            rows = tx.fetchall(
                f"SELECT {_AUDIO_COLUMNS} FROM audio a WHERE {conditions} AND a.id IN ({placeholders})",
                [*params, *ids],
            )
        return [_audio_from_row(row) for row in rows]

    def list_audio(
        self,
        collection: str,
        page_size: int = 0,
        page_token: str = "",
        status: AudioStatus | None = None,
        audio_filter: AudioFilter = _NO_FILTER,
    ) -> Page[AudioRecord]:
        """Oldest first, in creation order; `status` None lists every status."""
        size = paging.page_size(page_size)
        after = paging.decode_token(page_token, int)
        conditions, params = _audio_conditions(collection, status, audio_filter)
        with self._db.transaction() as tx:
            _require_collection_exists(tx, collection)
            rows = tx.fetchall(
                f"SELECT a.seq, {_AUDIO_COLUMNS} FROM audio a WHERE {conditions} AND a.seq > ? ORDER BY a.seq LIMIT ?",
                [*params, after or 0, size + 1],
            )
        positions = {row[1]: row[0] for row in rows}
        records = [_audio_from_row(row[1:]) for row in rows]
        return _page(records, size, lambda record: positions[record.id])

    @retry_on_conflict()
    def delete_audio(self, collection: str, audio_id: str) -> None:
        with self._db.transaction(write=True) as tx:
            if tx.fetchone("SELECT 1 FROM audio WHERE id = ? AND collection = ?", (audio_id, collection)):
                for statement in _DELETE_AUDIO:
                    tx.execute(statement, (audio_id,))

    def segments(self, collection: str, audio_id: str) -> list[Segment]:
        with self._db.transaction() as tx:
            if _audio_by_id(tx, collection, audio_id) is None:
                raise _audio_not_found(tx, collection, audio_id)
            rows = tx.fetchall(
                "SELECT segment_id, idx, start_s, end_s, tags_json FROM segments WHERE audio_id = ? ORDER BY idx",
                (audio_id,),
            )
        return [Segment(row[0], row[1], row[2], row[3], _tags_from_json(row[4])) for row in rows]

    def collection_stats(self, collection: str) -> CollectionStats:
        """Counts and durations of the READY records, overall and per tag, most frequent tag first."""
        with self._db.transaction() as tx:
            _require_collection_exists(tx, collection)
            count, duration, segment_count = tx.fetchone(
                "SELECT COUNT(*), COALESCE(SUM(duration_seconds), 0), COALESCE(SUM(segment_count), 0)"
                " FROM audio WHERE collection = ? AND status = ?",
                (collection, _READY),
            ) or (0, 0, 0)
            tag_rows = tx.fetchall(
                "SELECT t.label, COUNT(*), SUM(a.duration_seconds) FROM audio a"
                " JOIN audio_tags t ON t.audio_id = a.id WHERE a.collection = ? AND a.status = ?"
                " GROUP BY t.label ORDER BY COUNT(*) DESC, t.label",
                (collection, _READY),
            )
        tags = [TagStatistics(text(label), int(n), float(total)) for label, n, total in tag_rows]
        return CollectionStats(int(count), float(duration), int(segment_count), tags)


def _set_landmark_threshold(tx: Transaction, collection: str, landmark_threshold: int,
                            landmark_share_threshold: float = 0.0) -> None:
    tx.execute("DELETE FROM collection_landmarks WHERE collection = ?", (collection,))
    tx.execute("INSERT INTO collection_landmarks (collection, landmark_threshold, landmark_share_threshold)"
               " VALUES (?, ?, ?)", (collection, landmark_threshold, landmark_share_threshold))


def _now_us() -> int:
    return time.time_ns() // 1000


def text(value: str | bytes) -> str:
    return value.decode("utf-8") if isinstance(value, bytes | bytearray) else value


def _page(items: list[T], page_size: int, key: Callable[[T], str | int]) -> Page[T]:
    if len(items) <= page_size:
        return Page(items, "")
    items = items[:page_size]
    return Page(items, paging.encode_token(key(items[-1])))


def _replace_times(collection: Collection, create_time_us: int) -> Collection:
    return dataclasses.replace(collection, audio_count=0, create_time_us=create_time_us)


def _insert_collection(tx: Transaction, collection: Collection) -> None:
    model = collection.model
    tx.execute(
        "INSERT INTO collections (name, description, model_name, model_version, embedding_dim, sample_rate_hz,"
        " untrained, window_seconds, hop_seconds, score_threshold, threshold_source, create_time_us)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            collection.name,
            collection.description,
            model.name,
            model.version,
            model.embedding_dim,
            model.sample_rate_hz,
            model.untrained,
            collection.window_seconds,
            collection.hop_seconds,
            collection.score_threshold,
            collection.threshold_source,
            collection.create_time_us,
        ),
    )
    _set_landmark_threshold(tx, collection.name, collection.landmark_threshold,
                            collection.landmark_share_threshold)


def _collection_from_row(row: Sequence[Any]) -> Collection:
    model = ModelIdentity(row[2], row[3], int(row[4]), int(row[5]), bool(row[6]))
    return Collection(
        name=row[0],
        description=row[1],
        model=model,
        window_seconds=row[7],
        hop_seconds=row[8],
        score_threshold=row[9],
        threshold_source=row[10],
        create_time_us=int(row[11]),
        audio_count=int(row[12]),
        landmark_threshold=int(row[13] or 0),
        landmark_share_threshold=float(row[14] or 0.0),
    )


def _require_collection(tx: Transaction, name: str) -> Collection:
    row = tx.fetchone(f"SELECT {_COLLECTION_COLUMNS} FROM collections c WHERE c.name = ?", (_READY, name))
    if row is None:
        raise _collection_not_found(name)
    return _collection_from_row(row)


def _require_collection_exists(tx: Transaction, name: str) -> None:
    if tx.fetchone("SELECT 1 FROM collections WHERE name = ?", (name,)) is None:
        raise _collection_not_found(name)


def _collection_not_found(name: str) -> ServiceError:
    return NotFound(f"collection {_echo(name)!r} not found", reason="COLLECTION_NOT_FOUND", collection=_echo(name))


def _audio_not_found(tx: Transaction, collection: str, audio_id: str) -> ServiceError:
    _require_collection_exists(tx, collection)
    return NotFound(
        f"recording {_echo(audio_id)!r} not found in collection {_echo(collection)!r}",
        reason="AUDIO_NOT_FOUND",
        collection=_echo(collection),
        audio_id=_echo(audio_id),
    )


def _echo(value: str) -> str:
    """An untrusted identifier shortened for an error message, which travels in size-limited trailers."""
    return value[:_ECHO_CHARS]


def _insert_audio(tx: Transaction, audio: NewAudio, new_segments: Sequence[NewSegment]) -> CreatedAudio:
    record = AudioRecord.first_stored(audio, uuid.uuid4().hex, len(new_segments), _now_us())
    segments = tuple(
        Segment(segment_id(record.id, s.index), s.index, s.start_seconds, s.end_seconds, tuple(s.tags))
        for s in new_segments
    )
    tx.execute(_INSERT_AUDIO, _audio_row(record))
    tx.executemany(
        "INSERT INTO audio_tags (audio_id, label, score) VALUES (?, ?, ?)",
        [(record.id, tag.label, tag.score) for tag in record.tags],
    )
    tx.executemany(
        "INSERT INTO audio_metadata (audio_id, meta_key, meta_value) VALUES (?, ?, ?)",
        [(record.id, key, value) for key, value in record.metadata.items()],
    )
    tx.executemany(
        "INSERT INTO segments (segment_id, audio_id, idx, start_s, end_s, tags_json) VALUES (?, ?, ?, ?, ?, ?)",
        [(s.segment_id, record.id, s.index, s.start_seconds, s.end_seconds, _tags_json(s.tags)) for s in segments],
    )
    return CreatedAudio(record, segments, created=True)


def _audio_by_id(tx: Transaction, collection: str, audio_id: str) -> AudioRecord | None:
    row = tx.fetchone(
        f"SELECT {_AUDIO_COLUMNS} FROM audio a WHERE a.id = ? AND a.collection = ?", (audio_id, collection)
    )
    return _audio_from_row(row) if row else None


def _audio_by_sha256(tx: Transaction, collection: str, sha256: str) -> AudioRecord | None:
    row = tx.fetchone(
        f"SELECT {_AUDIO_COLUMNS} FROM audio a WHERE a.collection = ? AND a.sha256 = ?", (collection, sha256)
    )
    return _audio_from_row(row) if row else None


def _audio_row(record: AudioRecord) -> tuple[Any, ...]:
    return (
        record.id,
        record.collection,
        record.name,
        record.sha256,
        record.duration_seconds,
        record.sample_rate_hz,
        record.channels,
        record.codec,
        record.size_bytes,
        json.dumps(dict(record.metadata), ensure_ascii=False),
        _tags_json(record.tags),
        record.status.value,
        record.segment_count,
        record.create_time_us,
        record.update_time_us,
    )


def _audio_from_row(row: Sequence[Any]) -> AudioRecord:
    return AudioRecord(
        id=row[0],
        collection=row[1],
        name=row[2],
        sha256=row[3],
        duration_seconds=row[4],
        sample_rate_hz=int(row[5]),
        channels=int(row[6]),
        codec=row[7],
        size_bytes=int(row[8]),
        metadata=json.loads(row[9]),
        tags=_tags_from_json(row[10]),
        status=AudioStatus(row[11]),
        segment_count=int(row[12]),
        create_time_us=int(row[13]),
        update_time_us=int(row[14]),
    )


def _audio_conditions(collection: str, status: AudioStatus | None, audio_filter: AudioFilter) -> tuple[str, list[Any]]:
    """A WHERE clause over `audio a`: the collection, the status, every tag and every metadata pair."""
    validation.check_filter(audio_filter.tags, audio_filter.metadata)
    clauses = ["a.collection = ?"]
    params: list[Any] = [collection]
    if status is not None:
        clauses.append("a.status = ?")
        params.append(status.value)
    for label in dict.fromkeys(audio_filter.tags):
        clauses.append(_HAS_TAG)
        params.append(label)
    for key, value in audio_filter.metadata.items():
        clauses.append(_HAS_METADATA)
        params.extend((key, value))
    return " AND ".join(clauses), params


def _tags_json(tags: Sequence[Tag]) -> str:
    return json.dumps([{"label": tag.label, "score": tag.score} for tag in tags], ensure_ascii=False)


def _tags_from_json(text: str) -> tuple[Tag, ...]:
    return tuple(Tag(entry["label"], entry["score"]) for entry in json.loads(text))
