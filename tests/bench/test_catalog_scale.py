"""bench.catalog_scale's copies: new ids throughout, hashes through the code book and times rotated as documented,
vectors turned to the drawn cosine, and every record, vector and landmark written through the services' stores (the
catalog's SQLite, and a Milvus Lite file holding the vectors and the landmark index) and read back as written."""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from audiosearch.catalog.database import Database
from audiosearch.catalog.migrations import apply_migrations
from audiosearch.catalog.records import Collection, ModelIdentity, NewAudio, NewSegment, Tag
from audiosearch.catalog.store import CatalogStore
from audiosearch.gateway.audio.fingerprints import extract_landmarks
from audiosearch.search.landmark_index import LandmarkConfig, LandmarkIndex
from audiosearch.search.store import MilvusStore, StoreConfig
from bench import catalog_scale
from bench.catalog_scale import (
    CatalogWriter,
    HashCodeBook,
    Replication,
    Source,
    SourceRecording,
    lite_collection_folder,
    lookup_load,
    positions,
    read_recording,
    release_lite,
    replica,
    rotated,
)

RATE = 32_000
DIM = 16
MODEL = ModelIdentity("panns_cnn14", "untrained-seed0", DIM, RATE, True)


def bursts(seconds: float, seed: int) -> np.ndarray:
    """Noise in bursts of varying level: peaks in every band, at changing times."""
    rng = np.random.default_rng(seed)
    samples = rng.standard_normal(round(seconds * RATE)).astype(np.float32)
    envelope = np.repeat(rng.uniform(0.05, 1.0, size=-(-len(samples) // 1600)), 1600)[: len(samples)]
    return (0.3 * samples * envelope).astype(np.float32)


def unit_rows(count: int, rng: np.random.Generator) -> np.ndarray:
    rows = rng.standard_normal((count, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def recording(number: int, seconds: float = 4.0) -> SourceRecording:
    landmarks = extract_landmarks(bursts(seconds, number), RATE)
    segments = tuple(NewSegment(index, 2.0 * index, 2.0 * index + 2.0, (Tag("Noise", 0.5),))
                     for index in range(int(seconds // 2)))
    audio = NewAudio("scale_source", f"sound{number}.wav", hashlib.sha256(str(number).encode()).hexdigest(),
                     seconds, RATE, 1, "pcm_s16le", 1000, {"bench": "test"}, (Tag("Noise", 0.5),))
    return SourceRecording("sound", f"/nowhere/sound{number}.wav", audio, segments, landmarks.hashes,
                           landmarks.times_ms, unit_rows(len(segments), np.random.default_rng(number)))


@pytest.fixture(scope="module")
def source() -> Source:
    collection = Collection("scale_source", "", MODEL, 2.0, 2.0, 0.5, "default", landmark_threshold=12)
    return Source(collection, [recording(number) for number in range(3)], [], 0.0)


def replication(source: Source, bucket: int = 8) -> Replication:
    code_book = HashCodeBook.of(np.concatenate([r.hashes for r in source.recordings]), bucket,
                                np.random.default_rng(5))
    return Replication(7, code_book, np.array([0.8, 0.9], np.float32), unit_rows(3, np.random.default_rng(99)))


def test_the_code_book_maps_each_hash_to_another_as_frequent_and_back(source: Source) -> None:
    hashes = np.concatenate([r.hashes for r in source.recordings])
    distinct, counts = np.unique(hashes, return_counts=True)
    code_book = replication(source).code_book
    count_of = dict(zip(distinct.tolist(), counts.tolist(), strict=True))
    ranked = [count_of[h] for h in code_book.by_rank.tolist()]
    assert ranked == sorted(ranked, reverse=True)
    images = {copy: code_book.mapped(distinct, copy) for copy in range(1, 8)}
    rank = {h: place for place, h in enumerate(code_book.by_rank.tolist())}
    last_bucket = len(distinct) // 8 - 1
    for copy, image in images.items():
        assert sorted(image.tolist()) == distinct.tolist()  # a bijection of the source's hashes
        assert not np.any(image == distinct)  # no hash stands for itself
        assert np.array_equal(code_book.mapped(image, -copy), distinct)
        assert all(min(rank[a] // 8, last_bucket) == min(rank[b] // 8, last_bucket)
                   for a, b in zip(distinct.tolist(), image.tolist(), strict=True))
    for first, second in ((1, 2), (3, 7)):
        assert not np.any(images[first] == images[second])  # no two copies share a hash for the same one


def test_the_original_is_written_as_ingested(source: Source) -> None:
    original = replica(source.recordings[1], 1, 0, replication(source))
    assert original.audio == source.recordings[1].audio
    assert np.array_equal(original.hashes, source.recordings[1].hashes)
    assert np.array_equal(original.times_ms, source.recordings[1].times_ms)
    assert np.array_equal(original.vectors, source.recordings[1].vectors)


def test_a_copy_keeps_the_hash_multiset_through_its_code_book_and_rotates_the_times(source: Source) -> None:
    made = replication(source)
    for index, recorded in enumerate(source.recordings):
        for copy in (1, 2, 3):
            duplicate = replica(recorded, index, copy, made)
            assert duplicate.rotation_ms % catalog_scale.LANDMARK_GRID_MS == 0
            assert 0 <= duplicate.rotation_ms < recorded.duration_ms
            assert not np.any(made.code_book.mapped(recorded.hashes, copy) == recorded.hashes)
            undone = made.code_book.mapped(duplicate.hashes, -copy)
            expected = zip(recorded.hashes.tolist(),
                           rotated(recorded.times_ms, duplicate.rotation_ms, recorded.duration_ms).tolist(),
                           strict=True)
            assert Counter(zip(undone.tolist(), duplicate.times_ms.tolist(), strict=True)) == Counter(expected)
            assert list(duplicate.times_ms) == sorted(duplicate.times_ms)


def test_a_copy_is_a_new_recording_with_its_vectors_turned_to_the_drawn_cosine(source: Source) -> None:
    recorded = source.recordings[0]
    duplicate = replica(recorded, 0, 2, replication(source))
    assert duplicate.audio.sha256 != recorded.audio.sha256
    assert duplicate.audio.name == f"{recorded.audio.name} (copy 2)"
    assert duplicate.cosine in (np.float32(0.8), np.float32(0.9))
    cosines = np.sum(duplicate.vectors * recorded.vectors, axis=1)
    assert np.allclose(cosines, duplicate.cosine, atol=1e-5)
    assert np.allclose(np.linalg.norm(duplicate.vectors, axis=1), 1.0, atol=1e-5)
    shift = duplicate.rotation_ms / 1000
    assert [s.start_seconds for s in duplicate.segments] == pytest.approx(
        [(s.start_seconds + shift) % (recorded.duration_ms / 1000) for s in recorded.segments])


def test_copies_come_after_every_original_in_turn() -> None:
    order = positions(3, (0, 1))
    assert [next(order) for _ in range(5)] == [(0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]


def test_copies_written_through_the_stores_have_unique_ids_and_every_row(source: Source, tmp_path: Path) -> None:
    database = Database.open(f"sqlite:///{tmp_path / 'catalog.db'}", pool_size=1)
    apply_migrations(database)
    store = CatalogStore(database)
    store.create_collection(dataclasses.replace(source.collection, name="scale"))
    uri = str(tmp_path / "milvus.db")
    vectors = MilvusStore(StoreConfig(uri=uri))
    vectors.ensure_collection("scale", DIM)
    landmarks = LandmarkIndex(vectors, LandmarkConfig())
    writer = CatalogWriter(store, vectors, landmarks, "scale")
    made = replication(source)
    written = [replica(source.recordings[index], index, copy, made) for copy, index in
               (next(order) for order in [positions(3)] for _ in range(9))]
    try:
        for number, duplicate in enumerate(written):
            writer.add(duplicate, original=number < 3)
        writer.flush()

        ready = store.list_audio("scale", page_size=100, status=catalog_scale.AudioStatus.READY).items
        assert len({record.id for record in ready}) == 9
        assert len({record.sha256 for record in ready}) == 9
        assert vectors.count("scale") == sum(len(d.segments) for d in written)
        assert set(writer.original_ids) == {r.audio.name for r in source.recordings}
        stored = Counter(h for record in ready for h in landmarks.landmarks_of("scale", record.id)[0].tolist())
        assert stored == Counter(h for duplicate in written for h in duplicate.hashes.tolist())
        assert writer.growth.landmarks == sum(stored.values())
        window_ms = LandmarkConfig().window_ms
        assert writer.growth.landmark_windows == sum(len(np.unique(d.times_ms // window_ms)) for d in written)

        stored_segments = {segment.segment_id: segment for segment in
                           vectors.segments_of("scale", [record.id for record in ready])}
        for recorded in source.recordings:
            read = read_recording(store, stored_segments, landmarks, writer.original_ids[recorded.audio.name],
                                  recorded.kind, recorded.path, collection="scale")
            assert read.audio == dataclasses.replace(recorded.audio, collection="scale")
            assert Counter(zip(read.hashes.tolist(), read.times_ms.tolist(), strict=True)) == Counter(
                zip(recorded.hashes.tolist(), recorded.times_ms.tolist(), strict=True))
            assert list(read.times_ms) == sorted(read.times_ms)
            assert np.allclose(read.vectors, recorded.vectors, atol=1e-6)
        assert catalog_scale.du_bytes(lite_collection_folder(uri, "scale__landmarks")) > 0
    finally:
        vectors.close()
        release_lite(uri)
        database.close()


def test_copies_load_the_lookups_about_as_exact_copies_do(source: Source) -> None:
    load = lookup_load(source, replication(source), copies=3)
    assert load["copies_as_made"] == pytest.approx(load["exact_copies"], rel=0.5)
    assert load["other_real_recordings"] > 0
