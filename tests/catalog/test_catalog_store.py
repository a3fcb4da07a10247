"""The catalog store's behaviour, on SQLite and on MySQL alike."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from audiosearch.catalog import store as store_module
from audiosearch.catalog.database import ConstraintViolation, Database
from audiosearch.catalog.paging import encode_token, page_size
from audiosearch.catalog.records import (
    AudioFilter,
    AudioRecord,
    AudioStatus,
    Collection,
    NewSegment,
    Tag,
)
from audiosearch.catalog.store import CatalogStore, segment_id
from audiosearch.common.errors import ServiceError
from tests.catalog.builders import new_audio, new_collection, new_segments, unique_name

NO_FILTER = AudioFilter()
NO_ROWS = {"audio": 0, "segments": 0, "audio_tags": 0, "audio_metadata": 0, "landmarks": 0}
UNTRUSTED_STRINGS = [
    "x'; DROP TABLE audio; --",
    'Robert"); DROP TABLE collections;--',
    "' OR '1'='1",
    "100% ?? %s %(name)s {0} \\ \\' \\\\",
    "nul\x00byte",
    "trailing space ",
    "MiXeD Case",
    "emoji 🎵 and ünïcödé and 中文",
    "line\nbreak\ttab",
]


def rows_of(database: Database, audio_id: str) -> dict[str, int]:
    counts = {}
    with database.transaction() as tx:
        for table, column in [
            ("audio", "id"),
            ("segments", "audio_id"),
            ("audio_tags", "audio_id"),
            ("audio_metadata", "audio_id"),
            ("landmarks", "audio_id"),
        ]:
            row = tx.fetchone(f"SELECT COUNT(*) FROM {table} WHERE {column} = ?", (audio_id,))
            assert row is not None
            counts[table] = row[0]
    return counts


def raises_service_error(code: grpc.StatusCode, reason: str, call: Callable[[], object]) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        call()
    assert (caught.value.code, caught.value.reason) == (code, reason)
    return caught.value


def ready_audio(store: CatalogStore, collection: str, **fields: Any) -> AudioRecord:
    created = store.create_audio(new_audio(collection, **fields), new_segments(2))
    return store.set_audio_status(collection, created.audio.id, AudioStatus.READY)


# Collections


def test_created_collection_reads_back_with_its_model_and_no_audio(store: CatalogStore) -> None:
    created = store.create_collection(new_collection())

    read = store.get_collection(created.name)

    assert read == created
    assert read.audio_count == 0
    assert read.create_time_us > 0
    assert read.model.untrained is True


def test_taken_collection_name_is_collection_exists(store: CatalogStore, collection: Collection) -> None:
    raises_service_error(
        grpc.StatusCode.ALREADY_EXISTS,
        "COLLECTION_EXISTS",
        lambda: store.create_collection(new_collection(collection.name)),
    )


def test_missing_collection_is_collection_not_found(store: CatalogStore) -> None:
    error = raises_service_error(
        grpc.StatusCode.NOT_FOUND, "COLLECTION_NOT_FOUND", lambda: store.get_collection("no_such_collection")
    )
    assert error.metadata == {"collection": "no_such_collection"}


@pytest.mark.parametrize("name", ["", "Upper", "1starts_with_digit", "has-dash", "x" * 64, "a'; DROP TABLE x"])
def test_malformed_collection_name_is_invalid(store: CatalogStore, name: str) -> None:
    error = raises_service_error(
        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD", lambda: store.create_collection(new_collection(name))
    )
    assert error.metadata["field"] == "collection.name"


def test_collection_audio_count_counts_ready_recordings_only(store: CatalogStore, collection: Collection) -> None:
    ready_audio(store, collection.name)
    ready_audio(store, collection.name)
    store.create_audio(new_audio(collection.name), new_segments(1))

    assert store.get_collection(collection.name).audio_count == 2


def test_collection_pages_cover_every_collection_exactly_once(store: CatalogStore) -> None:
    prefix = unique_name("page")
    created = {store.create_collection(new_collection(f"{prefix}_{i}")).name for i in range(7)}
    seen: list[str] = []
    token = ""
    while True:
        page = store.list_collections(3, token)
        seen.extend(collection.name for collection in page.items)
        token = page.next_page_token
        if not token:
            break

    assert len(seen) == len(set(seen))
    assert seen == sorted(seen)
    assert created <= set(seen)


def test_threshold_update_is_kept(store: CatalogStore, collection: Collection) -> None:
    store.update_collection_threshold(collection.name, 0.61, "calibrated: fpr=0.01 over 200 negatives")

    read = store.get_collection(collection.name)

    assert read.score_threshold == pytest.approx(0.61)
    assert read.threshold_source == "calibrated: fpr=0.01 over 200 negatives"


def test_landmark_threshold_is_set_at_creation_and_by_an_update(store: CatalogStore) -> None:
    created = store.create_collection(new_collection(landmark_threshold=12))
    assert store.get_collection(created.name).landmark_threshold == 12

    store.update_collection_threshold(created.name, 0.6, "calibrated", landmark_threshold=9)

    assert store.get_collection(created.name).landmark_threshold == 9
    assert listed(store, created.name).landmark_threshold == 9


def test_landmark_share_threshold_is_kept_and_must_be_a_share(store: CatalogStore) -> None:
    created = store.create_collection(new_collection(landmark_threshold=12))
    assert store.get_collection(created.name).landmark_share_threshold == 0.0

    store.update_collection_threshold(created.name, 0.6, "calibrated", landmark_threshold=8,
                                      landmark_share_threshold=0.0425)

    assert store.get_collection(created.name).landmark_share_threshold == pytest.approx(0.0425)
    assert listed(store, created.name).landmark_share_threshold == pytest.approx(0.0425)
    for wrong in (1.5, -0.1, float("nan")):
        error = raises_service_error(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD", lambda wrong=wrong:
                                     store.update_collection_threshold(created.name, 0.6, "x", 8, wrong))
        assert error.metadata["field"] == "landmark_share_threshold"


def listed(store: CatalogStore, name: str) -> Collection:
    """The collection as the paged listing reads it."""
    token = ""
    while True:
        page = store.list_collections(page_size=1000, page_token=token)
        found = [collection for collection in page.items if collection.name == name]
        if found or not page.next_page_token:
            return found[0]
        token = page.next_page_token


def test_threshold_update_of_missing_collection_is_not_found(store: CatalogStore) -> None:
    raises_service_error(
        grpc.StatusCode.NOT_FOUND,
        "COLLECTION_NOT_FOUND",
        lambda: store.update_collection_threshold("no_such_collection", 0.5, "x"),
    )


def test_deleting_a_collection_removes_all_its_rows(
    store: CatalogStore, database: Database, collection: Collection
) -> None:
    audio = store.create_audio(
        new_audio(collection.name, metadata={"k": "v"}, tags=[("Dog", 0.9)]), new_segments(3)
    ).audio

    store.delete_collection(collection.name)

    assert rows_of(database, audio.id) == NO_ROWS
    raises_service_error(
        grpc.StatusCode.NOT_FOUND, "COLLECTION_NOT_FOUND", lambda: store.get_collection(collection.name)
    )


def test_deleting_a_missing_collection_succeeds(store: CatalogStore) -> None:
    store.delete_collection("no_such_collection")


# Creating recordings


def test_new_recording_is_pending_with_its_segments_under_deterministic_ids(
    store: CatalogStore, database: Database, collection: Collection
) -> None:
    result = store.create_audio(
        new_audio(collection.name, metadata={"genre": "jazz"}, tags=[("Music", 0.9)]), new_segments(4)
    )

    assert result.created
    assert len(result.audio.id) == 32
    assert int(result.audio.id, 16) >= 0
    assert result.audio.status is AudioStatus.PENDING
    assert result.audio.segment_count == 4
    assert result.audio.create_time_us == result.audio.update_time_us
    assert [segment.segment_id for segment in result.segments] == [segment_id(result.audio.id, i) for i in range(4)]
    assert all(0 < segment.segment_id < 2**63 for segment in result.segments)
    assert store.segments(collection.name, result.audio.id) == list(result.segments)
    assert store.get_audio(collection.name, result.audio.id) == result.audio
    assert rows_of(database, result.audio.id) == {"audio": 1, "segments": 4, "audio_tags": 1, "audio_metadata": 1,
                                                  "landmarks": 0}


def test_segment_id_is_the_first_eight_bytes_of_sha256_masked_to_63_bits() -> None:
    digest = hashlib.sha256(b"0123456789abcdef0123456789abcdef:7").digest()
    expected = int.from_bytes(digest[:8], "big") & (2**63 - 1)

    assert segment_id("0123456789abcdef0123456789abcdef", 7) == expected


def test_same_sha256_twice_returns_the_existing_record(store: CatalogStore, collection: Collection) -> None:
    first = store.create_audio(new_audio(collection.name, content="same bytes"), new_segments(3))

    second = store.create_audio(new_audio(collection.name, content="same bytes", name="other.mp3"), new_segments(5))

    assert not second.created
    assert second.audio == first.audio
    assert second.segments == ()


def test_same_sha256_in_another_collection_is_a_new_record(store: CatalogStore, collection: Collection) -> None:
    other = store.create_collection(new_collection())
    first = store.create_audio(new_audio(collection.name, content="shared bytes"), new_segments(1))

    second = store.create_audio(new_audio(other.name, content="shared bytes"), new_segments(1))

    assert second.created
    assert second.audio.id != first.audio.id


def test_concurrent_creates_of_the_same_sha256_yield_exactly_one_record(
    store: CatalogStore, collection: Collection
) -> None:
    barrier = threading.Barrier(8)

    def create(_: int) -> tuple[bool, str]:
        barrier.wait()
        result = store.create_audio(new_audio(collection.name, content="raced bytes"), new_segments(20))
        return result.created, result.audio.id

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(create, range(8)))

    assert sum(created for created, _ in outcomes) == 1
    assert len({audio_id for _, audio_id in outcomes}) == 1
    assert len(store.list_audio(collection.name, 100).items) == 1


def test_failure_midway_through_the_segments_leaves_no_rows(
    store: CatalogStore, database: Database, collection: Collection, monkeypatch: pytest.MonkeyPatch
) -> None:
    created_ids: list[str] = []

    def colliding_segment_id(audio_id: str, index: int) -> int:
        created_ids.append(audio_id)
        return 12345 if index in {3, 6} else segment_id(audio_id, index)

    monkeypatch.setattr(store_module, "segment_id", colliding_segment_id)
    audio = new_audio(collection.name, metadata={"k": "v"}, tags=[("Dog", 0.5)])

    with pytest.raises(ConstraintViolation):
        store.create_audio(audio, new_segments(8))

    assert created_ids
    assert rows_of(database, created_ids[0]) == NO_ROWS
    monkeypatch.undo()
    assert store.create_audio(audio, new_segments(8)).created


def test_recording_in_a_missing_collection_is_collection_not_found(store: CatalogStore) -> None:
    raises_service_error(
        grpc.StatusCode.NOT_FOUND,
        "COLLECTION_NOT_FOUND",
        lambda: store.create_audio(new_audio("no_such_collection"), new_segments(1)),
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "n" * 513}, "audio.name"),
        ({"name": ""}, "audio.name"),
        ({"metadata": {f"k{i}": "v" for i in range(65)}}, "audio.metadata"),
        ({"metadata": {"k" * 129: "v"}}, "audio.metadata"),
        ({"metadata": {"k": "v" * 1025}}, "audio.metadata"),
        ({"metadata": {"": "v"}}, "audio.metadata"),
        ({"metadata": {"k": "lone \ud800 surrogate"}}, "audio.metadata"),
        ({"sha256": "ABC"}, "audio.sha256"),
        ({"duration_seconds": float("nan")}, "audio.duration_seconds"),
        ({"tags": (Tag("Dog", 0.5), Tag("Dog", 0.4))}, "audio.tags"),
    ],
)
def test_out_of_range_recording_fields_are_invalid(
    store: CatalogStore, collection: Collection, change: dict[str, Any], field: str
) -> None:
    audio = dataclasses.replace(new_audio(collection.name), **change)

    error = raises_service_error(
        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD", lambda: store.create_audio(audio, new_segments(1))
    )
    assert error.metadata["field"] == field


@pytest.mark.parametrize(
    ("segments", "field"),
    [
        ([NewSegment(0, 0, 1), NewSegment(0, 1, 2)], "segments"),
        ([NewSegment(-1, 0, 1)], "segments[0].index"),
        ([NewSegment(0, 2, 1)], "segments[0].range.end_seconds"),
    ],
)
def test_malformed_segments_are_invalid(
    store: CatalogStore, collection: Collection, segments: list[NewSegment], field: str
) -> None:
    error = raises_service_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FIELD",
        lambda: store.create_audio(new_audio(collection.name), segments),
    )
    assert error.metadata["field"] == field


def test_longest_allowed_values_fit_even_in_four_byte_characters(store: CatalogStore, collection: Collection) -> None:
    metadata = {f"{i:02d}" + "🔑" * 126: "🎶" * 1024 for i in range(64)}
    audio = new_audio(collection.name, name="🎵" * 512, metadata=metadata, tags=[("🐕" * 256, 0.5)])

    created = store.create_audio(audio, new_segments(1)).audio

    read = store.get_audio(collection.name, created.id)
    assert read.name == "🎵" * 512
    assert read.metadata == metadata
    assert read.tags == (Tag("🐕" * 256, 0.5),)


@pytest.mark.parametrize("text", UNTRUSTED_STRINGS)
def test_untrusted_names_and_metadata_round_trip_verbatim(
    store: CatalogStore, collection: Collection, text: str
) -> None:
    audio = new_audio(collection.name, name=text, metadata={text: text, "plain": text}, tags=[(text, 0.5)])
    created = store.create_audio(audio, new_segments(1)).audio
    store.set_audio_status(collection.name, created.id, AudioStatus.READY)

    read = store.get_audio(collection.name, created.id)
    by_metadata = store.list_audio(collection.name, audio_filter=AudioFilter(metadata={text: text}))
    by_tag = store.list_audio(collection.name, audio_filter=AudioFilter(tags=(text,)))

    assert read.name == text
    assert read.metadata == {text: text, "plain": text}
    assert read.tags == (Tag(text, 0.5),)
    assert [record.id for record in by_metadata.items] == [created.id]
    assert [record.id for record in by_tag.items] == [created.id]
    assert store.collection_stats(collection.name).tags[0].label == text


def test_filters_compare_exactly_without_case_folding_or_trailing_space_padding(
    store: CatalogStore, collection: Collection
) -> None:
    ready_audio(store, collection.name, metadata={"k": "v "}, tags=[("Dog ", 0.5)])

    def count(audio_filter: AudioFilter) -> int:
        return len(store.list_audio(collection.name, audio_filter=audio_filter).items)

    assert count(AudioFilter(metadata={"k": "v "})) == 1
    assert count(AudioFilter(metadata={"k": "v"})) == 0
    assert count(AudioFilter(metadata={"K": "v "})) == 0
    assert count(AudioFilter(tags=("Dog ",))) == 1
    assert count(AudioFilter(tags=("Dog",))) == 0
    assert count(AudioFilter(tags=("dog ",))) == 0


# Status


def test_status_changes_when_the_expected_status_matches(store: CatalogStore, collection: Collection) -> None:
    created = store.create_audio(new_audio(collection.name), new_segments(1)).audio

    ready = store.set_audio_status(collection.name, created.id, AudioStatus.READY, expected=AudioStatus.PENDING)

    assert ready.status is AudioStatus.READY
    assert ready.update_time_us > created.update_time_us
    assert ready.create_time_us == created.create_time_us
    assert store.get_audio(collection.name, created.id) == ready


def test_status_conflict_when_the_expected_status_differs(store: CatalogStore, collection: Collection) -> None:
    created = store.create_audio(new_audio(collection.name), new_segments(1)).audio
    store.set_audio_status(collection.name, created.id, AudioStatus.DELETING)

    error = raises_service_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        "STATUS_CONFLICT",
        lambda: store.set_audio_status(collection.name, created.id, AudioStatus.READY, AudioStatus.PENDING),
    )
    assert error.metadata["status"] == "DELETING"
    assert store.get_audio(collection.name, created.id).status is AudioStatus.DELETING


def test_status_without_an_expected_status_always_changes(store: CatalogStore, collection: Collection) -> None:
    created = store.create_audio(new_audio(collection.name), new_segments(1)).audio
    store.set_audio_status(collection.name, created.id, AudioStatus.FAILED)

    assert store.set_audio_status(collection.name, created.id, AudioStatus.PENDING).status is AudioStatus.PENDING


def test_status_of_a_missing_recording_is_audio_not_found(store: CatalogStore, collection: Collection) -> None:
    raises_service_error(
        grpc.StatusCode.NOT_FOUND,
        "AUDIO_NOT_FOUND",
        lambda: store.set_audio_status(collection.name, "0" * 32, AudioStatus.READY),
    )


# Reading recordings


def test_recording_of_another_collection_is_audio_not_found(store: CatalogStore, collection: Collection) -> None:
    other = store.create_collection(new_collection())
    created = store.create_audio(new_audio(other.name), new_segments(1)).audio

    error = raises_service_error(
        grpc.StatusCode.NOT_FOUND, "AUDIO_NOT_FOUND", lambda: store.get_audio(collection.name, created.id)
    )
    assert error.metadata == {"collection": collection.name, "audio_id": created.id}


def test_recording_of_a_missing_collection_is_collection_not_found(store: CatalogStore) -> None:
    raises_service_error(
        grpc.StatusCode.NOT_FOUND, "COLLECTION_NOT_FOUND", lambda: store.get_audio("no_such_collection", "0" * 32)
    )


def test_recording_is_found_by_its_content_hash_in_any_status(store: CatalogStore, collection: Collection) -> None:
    audio = new_audio(collection.name, content="hashed bytes")
    created = store.create_audio(audio, new_segments(1)).audio
    deleting = store.set_audio_status(collection.name, created.id, AudioStatus.DELETING)

    assert store.find_audio_by_sha256(collection.name, audio.sha256) == deleting


def test_unknown_content_hash_is_audio_not_found(store: CatalogStore, collection: Collection) -> None:
    error = raises_service_error(
        grpc.StatusCode.NOT_FOUND, "AUDIO_NOT_FOUND", lambda: store.find_audio_by_sha256(collection.name, "0" * 64)
    )
    assert error.metadata["sha256"] == "0" * 64
    raises_service_error(
        grpc.StatusCode.NOT_FOUND,
        "COLLECTION_NOT_FOUND",
        lambda: store.find_audio_by_sha256("no_such_collection", "0" * 64),
    )


def test_batch_get_returns_the_requested_ids_in_the_status_matching_the_filter(
    store: CatalogStore, collection: Collection
) -> None:
    dog = ready_audio(store, collection.name, tags=[("Dog", 0.9)])
    cat = ready_audio(store, collection.name, tags=[("Cat", 0.9)])
    pending_dog = store.create_audio(new_audio(collection.name, tags=[("Dog", 0.9)]), new_segments(1)).audio
    unrequested_dog = ready_audio(store, collection.name, tags=[("Dog", 0.9)])
    ids = [dog.id, cat.id, pending_dog.id, "f" * 32, dog.id]

    def batch(status: AudioStatus | None, audio_filter: AudioFilter) -> set[str]:
        return {record.id for record in store.batch_get_audio(collection.name, ids, status, audio_filter)}

    assert batch(AudioStatus.READY, AudioFilter(tags=("Dog",))) == {dog.id}
    assert batch(AudioStatus.READY, NO_FILTER) == {dog.id, cat.id}
    assert batch(None, AudioFilter(tags=("Dog",))) == {dog.id, pending_dog.id}
    assert unrequested_dog.id not in batch(None, NO_FILTER)
    assert store.batch_get_audio(collection.name, [], None, NO_FILTER) == []


def test_batch_get_of_too_many_ids_is_invalid(store: CatalogStore, collection: Collection) -> None:
    error = raises_service_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FIELD",
        lambda: store.batch_get_audio(collection.name, [f"{i:032x}" for i in range(1001)], None, NO_FILTER),
    )
    assert error.metadata["field"] == "audio_ids"


def test_recording_pages_run_oldest_first_and_cover_everything_exactly_once(
    store: CatalogStore, collection: Collection
) -> None:
    created = [store.create_audio(new_audio(collection.name), new_segments(1)).audio.id for _ in range(23)]
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = store.list_audio(collection.name, 5, token)
        seen.extend(record.id for record in page.items)
        pages += 1
        token = page.next_page_token
        if not token:
            break

    assert seen == created
    assert pages == 5


def test_recordings_filter_by_status(store: CatalogStore, collection: Collection) -> None:
    ready = ready_audio(store, collection.name)
    pending = store.create_audio(new_audio(collection.name), new_segments(1)).audio

    def listed(status: AudioStatus | None) -> list[str]:
        return [record.id for record in store.list_audio(collection.name, status=status).items]

    assert listed(AudioStatus.READY) == [ready.id]
    assert listed(AudioStatus.PENDING) == [pending.id]
    assert listed(None) == [ready.id, pending.id]
    assert listed(AudioStatus.DELETING) == []


def test_tag_filter_needs_every_tag_and_metadata_filter_every_pair(store: CatalogStore, collection: Collection) -> None:
    both = ready_audio(store, collection.name, tags=[("Dog", 0.9), ("Bark", 0.8)], metadata={"a": "1", "b": "2"})
    dog_only = ready_audio(store, collection.name, tags=[("Dog", 0.9)], metadata={"a": "1", "b": "3"})

    def listed(audio_filter: AudioFilter) -> list[str]:
        return [record.id for record in store.list_audio(collection.name, audio_filter=audio_filter).items]

    assert listed(AudioFilter(tags=("Dog",))) == [both.id, dog_only.id]
    assert listed(AudioFilter(tags=("Dog", "Bark"))) == [both.id]
    assert listed(AudioFilter(tags=("Dog", "Bark", "Dog"))) == [both.id]
    assert listed(AudioFilter(metadata={"a": "1"})) == [both.id, dog_only.id]
    assert listed(AudioFilter(metadata={"a": "1", "b": "3"})) == [dog_only.id]
    assert listed(AudioFilter(tags=("Bark",), metadata={"b": "3"})) == []


def test_listing_a_missing_collection_is_collection_not_found(store: CatalogStore) -> None:
    raises_service_error(
        grpc.StatusCode.NOT_FOUND,
        "COLLECTION_NOT_FOUND",
        lambda: store.list_audio("no_such_collection"),
    )


# Deleting and counting


def test_deleting_a_recording_removes_its_rows_and_is_idempotent(
    store: CatalogStore, database: Database, collection: Collection
) -> None:
    content = new_audio(collection.name, content="deleted bytes", metadata={"k": "v"}, tags=[("Dog", 1)])
    audio = store.create_audio(content, new_segments(2))

    store.delete_audio(collection.name, audio.audio.id)
    store.delete_audio(collection.name, audio.audio.id)

    assert rows_of(database, audio.audio.id) == NO_ROWS
    assert store.create_audio(content, new_segments(1)).created


def test_deleting_a_recording_through_another_collection_keeps_it(store: CatalogStore, collection: Collection) -> None:
    other = store.create_collection(new_collection())
    audio = store.create_audio(new_audio(other.name), new_segments(1)).audio

    store.delete_audio(collection.name, audio.id)

    assert store.get_audio(other.name, audio.id) == audio


def test_stats_count_ready_recordings_per_tag_most_frequent_first(store: CatalogStore, collection: Collection) -> None:
    ready_audio(store, collection.name, tags=[("Dog", 0.9), ("Bark", 0.5)], duration_seconds=2.0)
    ready_audio(store, collection.name, tags=[("Dog", 0.7)], duration_seconds=3.0)
    ready_audio(store, collection.name, tags=[("Cat", 0.7)], duration_seconds=4.0)
    store.create_audio(new_audio(collection.name, tags=[("Cat", 0.9)], duration_seconds=100.0), new_segments(9))

    stats = store.collection_stats(collection.name)

    assert (stats.audio_count, stats.total_duration_seconds, stats.segment_count) == (3, 9.0, 6)
    assert [(tag.label, tag.audio_count, tag.total_duration_seconds) for tag in stats.tags] == [
        ("Dog", 2, 5.0),
        ("Bark", 1, 2.0),
        ("Cat", 1, 4.0),
    ]


def test_stats_of_an_empty_collection_are_zero(store: CatalogStore, collection: Collection) -> None:
    stats = store.collection_stats(collection.name)

    assert (stats.audio_count, stats.total_duration_seconds, stats.segment_count, stats.tags) == (0, 0.0, 0, [])


@pytest.mark.parametrize("token", ["not base64!", "bm90IGpzb24=", encode_token("a-name"), encode_token(7) + "x"])
def test_page_token_that_the_catalog_did_not_issue_is_invalid(
    store: CatalogStore, collection: Collection, token: str
) -> None:
    error = raises_service_error(
        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD", lambda: store.list_audio(collection.name, 5, token)
    )
    assert error.metadata["field"] == "page_token"


@pytest.mark.parametrize(("requested", "served"), [(0, 50), (3, 3), (5000, 1000)])
def test_page_size_defaults_to_50_and_is_capped_at_1000(requested: int, served: int) -> None:
    assert page_size(requested) == served
