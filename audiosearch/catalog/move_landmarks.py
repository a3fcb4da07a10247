"""Moves the landmarks that earlier versions kept in the catalog's SQL (`landmarks` rows) into the search service's
landmark index, without ingesting anything again.

    CATALOG_DSN=mysql://... python -m audiosearch.catalog.move_landmarks --search 127.0.0.1:50052 [--collection C]

Recording by recording: its rows are read, written to the search service (UpsertLandmarks, whose rows are keyed by
recording and window, so writing them twice changes nothing), then deleted from the catalog. So the command is
idempotent and resumable: run again after a failure, it moves what is left. Run it with the suite up (the
catalog's schema migrated, the search service serving); searches find the moved recordings by their landmarks as
soon as each is written.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from audiosearch.catalog.database import Database
from audiosearch.catalog.server import CatalogSettings, open_database
from audiosearch.catalog.store import text
from audiosearch.common.channels import open_channel
from audiosearch.common.logs import configure_logging
from audiosearch.common.settings import load_settings
from audiosearch.search.v1 import search_pb2 as spb
from audiosearch.search.v1 import search_pb2_grpc

log = logging.getLogger(__name__)

RECORDINGS_PER_READ = 100
UPSERT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class LegacyRecording:
    collection: str
    audio_id: str
    duration_ms: int


@dataclass
class Moved:
    recordings: int = 0
    landmarks: int = 0


def move_landmarks(database: Database, search: search_pb2_grpc.VectorSearchServiceStub, collection: str = ""
                   ) -> Moved:
    moved = Moved()
    for recording in legacy_recordings(database, collection):
        hashes, times_ms = _landmarks_of(database, recording.audio_id)
        search.UpsertLandmarks(spb.UpsertLandmarksRequest(
            collection=recording.collection, audio_id=recording.audio_id, duration_ms=recording.duration_ms,
            landmarks=spb.Landmarks(hashes=hashes, times_ms=times_ms), labels=_labels_of(database, recording.audio_id)),
            timeout=UPSERT_TIMEOUT_S)
        moved.recordings += 1
        moved.landmarks += len(hashes)
        with database.transaction(write=True) as tx:
            tx.execute("DELETE FROM landmarks WHERE audio_id = ?", (recording.audio_id,))
        log.info("landmarks moved", extra={"collection": recording.collection, "audio_id": recording.audio_id,
                                           "landmarks": len(hashes)})
    return moved


def legacy_recordings(database: Database, collection: str = "") -> Iterator[LegacyRecording]:
    """Recordings that still have landmark rows (a foreign key keeps them to recordings the catalog holds), a few
    at a time: each is deleted before the next read."""
    of_collection = "AND a.collection = ?" if collection else ""
    while True:
        with database.transaction() as tx:
            rows = tx.fetchall(
                "SELECT a.collection, a.id, a.duration_seconds FROM audio a"
                f" WHERE a.id IN (SELECT DISTINCT l.audio_id FROM landmarks l) {of_collection}"
                f" ORDER BY a.id LIMIT {RECORDINGS_PER_READ}", (collection,) if collection else ())
        if not rows:
            return
        for name, audio_id, seconds in rows:
            yield LegacyRecording(str(name), str(audio_id), max(1, round(float(seconds) * 1000)))


def _landmarks_of(database: Database, audio_id: str) -> tuple[list[int], list[int]]:
    with database.transaction() as tx:
        rows = tx.fetchall("SELECT hash, time_ms FROM landmarks WHERE audio_id = ? ORDER BY time_ms, hash",
                           (audio_id,))
    return [int(row[0]) for row in rows], [int(row[1]) for row in rows]


def _labels_of(database: Database, audio_id: str) -> spb.AudioLabels:
    with database.transaction() as tx:
        tags = tx.fetchall("SELECT label FROM audio_tags WHERE audio_id = ?", (audio_id,))
        metadata = tx.fetchall("SELECT meta_key, meta_value FROM audio_metadata WHERE audio_id = ?", (audio_id,))
    return spb.AudioLabels(tags=[text(row[0]) for row in tags], metadata={text(k): text(v) for k, v in metadata})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--search", default="127.0.0.1:50052", help="the search service's address")
    parser.add_argument("--collection", default="", help="only this collection")
    arguments = parser.parse_args(argv)
    settings = load_settings(CatalogSettings)
    configure_logging("move-landmarks", settings.log_level)
    database = open_database(settings)
    channel = open_channel(arguments.search)
    try:
        moved = move_landmarks(database, search_pb2_grpc.VectorSearchServiceStub(channel), arguments.collection)
    finally:
        channel.close()
        database.close()
    print(f"moved the landmarks of {moved.recordings} recordings ({moved.landmarks} landmarks) to the search service")
    return 0


if __name__ == "__main__":
    sys.exit(main())
