"""Moving the landmarks of earlier versions (rows of the catalog's `landmarks` table) into the search service's
landmark index: on SQLite and MySQL, into a real search service on Milvus Lite."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from audiosearch.catalog.database import Database
from audiosearch.catalog.move_landmarks import move_landmarks
from audiosearch.catalog.records import AudioStatus, Collection
from audiosearch.catalog.store import CatalogStore
from audiosearch.common.grpc_server import RunningServer
from audiosearch.search.server import SearchSettings, build_server
from audiosearch.search.v1 import search_pb2 as spb
from audiosearch.search.v1.search_pb2_grpc import VectorSearchServiceStub
from tests.catalog.builders import new_audio, new_collection, new_segments
from tests.search.conftest import wait_serving

HASHES = list(range(2000, 2040))
TIMES_MS = list(range(0, 4000, 100))


@pytest.fixture(scope="module")
def search_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    milvus = tmp_path_factory.mktemp("move-landmarks") / "milvus.db"
    running = build_server(SearchSettings(host="127.0.0.1", port=0, milvus_uri=str(milvus)))
    wait_serving(running.address)
    yield running
    running.stop(grace=1.0)


@pytest.fixture(scope="module")
def search(search_server: RunningServer) -> Iterator[VectorSearchServiceStub]:
    with grpc.insecure_channel(search_server.address) as channel:
        yield VectorSearchServiceStub(channel)


def ready_recording(store: CatalogStore, collection: Collection, seconds: float = 4.0) -> str:
    created = store.create_audio(new_audio(collection.name, duration_seconds=seconds), new_segments(1))
    return store.set_audio_status(collection.name, created.audio.id, AudioStatus.READY).id


def legacy_rows(database: Database, collection: str, audio_id: str, shift: int = 0) -> None:
    """Landmark rows as versions before the landmark index wrote them at ingest."""
    with database.transaction(write=True) as tx:
        tx.executemany("INSERT INTO landmarks (collection, hash, audio_id, time_ms) VALUES (?, ?, ?, ?)",
                       [(collection, h + shift, audio_id, t) for h, t in zip(HASHES, TIMES_MS, strict=True)])


def rows_left(database: Database, collection: str) -> int:
    with database.transaction() as tx:
        row = tx.fetchone("SELECT COUNT(*) FROM landmarks WHERE collection = ?", (collection,))
    return int(row[0]) if row else 0


def best_match(search: VectorSearchServiceStub, collection: str, shift: int = 0) -> spb.LandmarkMatch:
    query = spb.Landmarks(hashes=[h + shift for h in HASHES[10:30]], times_ms=[t - 1000 for t in TIMES_MS[10:30]])
    return search.MatchLandmarks(spb.MatchLandmarksRequest(collection=collection, landmarks=query)).matches[0]


def test_landmarks_move_into_the_search_service_and_leave_the_catalog(
    store: CatalogStore, database: Database, search: VectorSearchServiceStub
) -> None:
    collection = store.create_collection(new_collection())
    search.EnsureCollection(spb.EnsureCollectionRequest(collection=collection.name, dimension=8))
    first, second = ready_recording(store, collection), ready_recording(store, collection, seconds=9.5)
    legacy_rows(database, collection.name, first)
    legacy_rows(database, collection.name, second, shift=100_000)

    moved = move_landmarks(database, search, collection.name)

    assert (moved.recordings, moved.landmarks) == (2, 2 * len(HASHES))
    assert rows_left(database, collection.name) == 0
    match = best_match(search, collection.name)
    assert (match.audio_id, match.landmarks, match.offset_ms) == (first, 20, 1000)
    assert best_match(search, collection.name, shift=100_000).audio_id == second
    got = search.GetLandmarks(spb.GetLandmarksRequest(collection=collection.name, audio_id=first)).landmarks
    assert (list(got.hashes), list(got.times_ms)) == (HASHES, TIMES_MS)

    again = move_landmarks(database, search, collection.name)
    assert again.recordings == 0


def test_a_move_that_fails_midway_resumes_where_it_stopped(
    store: CatalogStore, database: Database, search: VectorSearchServiceStub
) -> None:
    collection = store.create_collection(new_collection())
    recording = ready_recording(store, collection)
    legacy_rows(database, collection.name, recording)

    with pytest.raises(grpc.RpcError) as refused:  # the search service has no such collection yet
        move_landmarks(database, search, collection.name)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert rows_left(database, collection.name) == len(HASHES)  # nothing deleted that was not moved

    search.EnsureCollection(spb.EnsureCollectionRequest(collection=collection.name, dimension=8))
    resumed = move_landmarks(database, search, collection.name)

    assert (resumed.recordings, rows_left(database, collection.name)) == (1, 0)
    assert best_match(search, collection.name).audio_id == recording
