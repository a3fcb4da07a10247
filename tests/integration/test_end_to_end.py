"""The suite end to end through the public API: real Triton, Milvus server, MariaDB, real sockets."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from audiosearch.catalog.v1 import catalog_pb2 as cpb
from audiosearch.catalog.v1 import catalog_pb2_grpc
from audiosearch.common.errors import reason_of
from audiosearch.search.v1 import search_pb2 as spb
from audiosearch.search.v1 import search_pb2_grpc
from audiosearch.v1 import audiosearch_pb2 as pb
from devtools.support import sounds
from devtools.support.gateway import ensure_collection, ingest, list_all, search

COLLECTION = "e2e_library"


@pytest.fixture(scope="module")
def library(client):
    """Eight distinct sounds ingested as wav; maps kind -> (record, samples)."""
    ensure_collection(client, COLLECTION)
    library = {}
    for seed, kind in enumerate(sounds.KINDS):
        samples = sounds.synth(kind, seconds=6.0, seed=seed)
        reply = ingest(client, COLLECTION, f"{kind}.wav", sounds.to_bytes(samples), {"kind": kind})
        library[kind] = (reply.audio, samples)
    return library


@pytest.fixture(scope="module")
def internal(suite):
    search_address = next(p.health_address for p in suite.plans if p.name == "search")
    catalog_address = next(p.health_address for p in suite.plans if p.name == "catalog")
    return (search_pb2_grpc.VectorSearchServiceStub(grpc.insecure_channel(search_address)),
            catalog_pb2_grpc.CatalogServiceStub(grpc.insecure_channel(catalog_address)))


def store_snapshot(client, internal, collection):
    vectors, _ = internal
    records = sorted(r.id for r in list_all(client, collection))
    count = vectors.CountSegments(spb.CountSegmentsRequest(collection=collection)).count
    return records, count


def expect_error(call, code, reason):
    with pytest.raises(grpc.RpcError) as failure:
        call()
    assert failure.value.code() == code, failure.value.details()
    assert reason_of(failure.value) == reason, failure.value.details()
    return failure.value


def test_ingest_returns_the_stored_record(library):
    record, _ = library["siren"]
    assert len(record.id) == 32
    assert record.status == pb.AUDIO_STATUS_READY
    assert record.duration_seconds == pytest.approx(6.0, abs=0.01)
    assert (record.sample_rate_hz, record.channels) == (sounds.RATE, 1)
    assert record.codec == "wav/pcm_16"
    assert record.metadata["kind"] == "siren"
    assert len(record.tags) == 5
    assert record.segment_count == 3  # 2 s windows every 2 s over 6 s


@pytest.mark.parametrize("kind", sounds.KINDS)
def test_search_with_the_same_clip_returns_it_first_with_score_one(client, library, kind):
    record, samples = library[kind]
    result = search(client, COLLECTION, sounds.to_bytes(samples))
    assert result.matches[0].audio.id == record.id
    assert result.matches[0].score == pytest.approx(1.0, abs=1e-3)
    assert result.matches[0].audio.metadata["kind"] == kind


@pytest.mark.parametrize("audio_format", sounds.FORMATS)
def test_every_format_ingests_and_is_found_first(client, audio_format):
    collection = f"e2e_format_{audio_format}"  # lossless formats decode to identical audio: one collection each
    ensure_collection(client, collection)
    stereo = np.stack([sounds.synth("chirp", 3.0, seed=5), sounds.synth("siren", 3.0, seed=5)], axis=1)
    data = sounds.encode_as(audio_format, stereo)
    record = ingest(client, collection, f"clip.{audio_format}", data).audio
    assert record.channels == 2
    top = search(client, collection, data).matches[0]
    assert top.audio.id == record.id
    assert top.score == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("rate", [8_000, 16_000, 22_050, 48_000, 96_000])
def test_any_sample_rate_is_accepted(client, rate):
    collection = "e2e_rates"
    ensure_collection(client, collection)
    data = sounds.to_bytes(sounds.synth("morse", 2.0, rate=rate, seed=rate), rate)
    record = ingest(client, collection, f"morse_{rate}.wav", data).audio
    assert record.sample_rate_hz == rate
    assert search(client, collection, data).matches[0].audio.id == record.id


def test_mp3_reencode_and_gain_change_still_find_the_clip_first(client, library):
    record, samples = library["drums"]
    mp3 = sounds.ffmpeg_convert(sounds.to_bytes(samples), "mp3", "-b:a", "96k")
    assert search(client, COLLECTION, mp3).matches[0].audio.id == record.id
    quieter = sounds.to_bytes(samples * 0.3)
    top = search(client, COLLECTION, quieter).matches[0]
    assert top.audio.id == record.id
    assert top.score > 0.99


def test_excerpt_finds_its_recording_with_the_time_range(client, library):
    record, samples = library["birds"]
    excerpt = samples[int(2.0 * sounds.RATE) : int(5.0 * sounds.RATE)]
    top = search(client, COLLECTION, sounds.to_bytes(excerpt)).matches[0]
    assert top.audio.id == record.id
    assert top.reference_range.start_seconds == pytest.approx(2.0, abs=1.0)
    assert top.reference_range.end_seconds == pytest.approx(5.0, abs=1.0)


def test_same_bytes_twice_yield_one_record(client, library):
    record, samples = library["chord"]
    again = ingest(client, COLLECTION, "chord-again.wav", sounds.to_bytes(samples))
    assert again.already_existed
    assert again.audio.id == record.id
    assert [r.name for r in list_all(client, COLLECTION)].count("chord.wav") == 1


def test_delete_removes_from_search_list_and_vectors(client, internal):
    collection = "e2e_delete"
    ensure_collection(client, collection)
    samples = sounds.synth("hum", 3.0, seed=11)
    record = ingest(client, collection, "hum.wav", sounds.to_bytes(samples)).audio
    client.DeleteAudio(pb.DeleteAudioRequest(collection=collection, audio_id=record.id))
    assert all(m.audio.id != record.id for m in search(client, collection, sounds.to_bytes(samples)).matches)
    assert list_all(client, collection) == []
    assert store_snapshot(client, internal, collection) == ([], 0)
    client.DeleteAudio(pb.DeleteAudioRequest(collection=collection, audio_id=record.id))  # idempotent
    expect_error(lambda: client.GetAudio(pb.GetAudioRequest(collection=collection, audio_id=record.id)),
                 grpc.StatusCode.NOT_FOUND, "AUDIO_NOT_FOUND")


BAD_INPUTS = {
    "empty": b"",
    "random_bytes": np.random.default_rng(1).bytes(30_000),
    "truncated_wav": sounds.to_bytes(sounds.synth("siren", 3.0))[:40_000],
    "text_named_mp3": b"ID3? no, just a text file pretending to be an mp3\n" * 50,
}


@pytest.mark.parametrize("label", list(BAD_INPUTS))
def test_bad_audio_is_refused_and_leaves_the_stores_unchanged(client, internal, library, label):
    before = store_snapshot(client, internal, COLLECTION)
    error = expect_error(lambda: ingest(client, COLLECTION, f"{label}.mp3", BAD_INPUTS[label]),
                         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_AUDIO")
    assert error.details()
    assert store_snapshot(client, internal, COLLECTION) == before
    expect_error(lambda: search(client, COLLECTION, BAD_INPUTS[label]), grpc.StatusCode.INVALID_ARGUMENT,
                 "INVALID_AUDIO")


def test_unknown_collection_is_not_found(client):
    data = sounds.to_bytes(sounds.synth("siren", 1.0))
    expect_error(lambda: search(client, "no_such_collection", data), grpc.StatusCode.NOT_FOUND,
                 "COLLECTION_NOT_FOUND")
    expect_error(lambda: ingest(client, "no_such_collection", "x.wav", data), grpc.StatusCode.NOT_FOUND,
                 "COLLECTION_NOT_FOUND")


def test_empty_collection_answers_no_match(client):
    ensure_collection(client, "e2e_empty")
    result = search(client, "e2e_empty", sounds.to_bytes(sounds.synth("siren", 2.0)))
    assert list(result.matches) == []


def test_min_score_filters_weak_matches(client, library):
    _, samples = library["rain"]
    everything = search(client, COLLECTION, sounds.to_bytes(samples), min_score=-1.0, top_k=100)
    assert len(everything.matches) == len(library)
    strict = search(client, COLLECTION, sounds.to_bytes(samples), min_score=0.999)
    assert [m.audio.name for m in strict.matches] == ["rain.wav"]


def test_list_is_paged_and_complete(client, library):
    first = client.ListAudio(pb.ListAudioRequest(collection=COLLECTION, page_size=3))
    assert len(first.audios) == 3
    assert first.next_page_token
    names = {r.name for r in list_all(client, COLLECTION)}
    assert {f"{kind}.wav" for kind in sounds.KINDS} <= names


def test_collection_of_another_model_is_refused(client, internal):
    _, catalog = internal
    foreign = pb.Collection(
        name="e2e_foreign", model=pb.ModelIdentity(name="panns_cnn14", version="sha256=0123456789abcdef",
                                                   embedding_dim=2048, sample_rate_hz=32_000),
        segment_config=pb.SegmentConfig(window_seconds=2.0, hop_seconds=1.0), score_threshold=0.5)
    catalog.CreateCollection(cpb.CreateCollectionRequest(collection=foreign))
    data = sounds.to_bytes(sounds.synth("siren", 2.0))
    expect_error(lambda: ingest(client, "e2e_foreign", "x.wav", data), grpc.StatusCode.FAILED_PRECONDITION,
                 "MODEL_MISMATCH")
    expect_error(lambda: search(client, "e2e_foreign", data), grpc.StatusCode.FAILED_PRECONDITION,
                 "MODEL_MISMATCH")


def test_collection_lifecycle(client):
    created = client.CreateCollection(pb.CreateCollectionRequest(name="e2e_lifecycle")).collection
    assert created.model.name == "panns_cnn14"
    assert created.model.untrained
    assert created.segment_config.window_seconds == 2.0
    expect_error(lambda: client.CreateCollection(pb.CreateCollectionRequest(name="e2e_lifecycle")),
                 grpc.StatusCode.ALREADY_EXISTS, "COLLECTION_EXISTS")
    names = [c.name for c in client.ListCollections(pb.ListCollectionsRequest(page_size=1000)).collections]
    assert "e2e_lifecycle" in names
    client.DeleteCollection(pb.DeleteCollectionRequest(name="e2e_lifecycle"))
    expect_error(lambda: client.GetCollection(pb.GetCollectionRequest(name="e2e_lifecycle")),
                 grpc.StatusCode.NOT_FOUND, "COLLECTION_NOT_FOUND")


def test_tag_audio_classifies_without_storing(client, library):
    before = len(list_all(client, COLLECTION))
    _, samples = library["siren"]
    tags = client.TagAudio(pb.TagAudioRequest(audio_content=sounds.to_bytes(samples), top_k=7))
    assert len(tags.tags) == 7
    assert all(0.0 <= t.score <= 1.0 for t in tags.tags)
    assert len(tags.segments) == 3
    assert len(list_all(client, COLLECTION)) == before
    # The suite's embedder is a seeded random init: the reply says so, since its tags are meaningless.
    assert tags.model.untrained
    assert tags.model.version.startswith("untrained-seed0")


def test_search_names_the_collection_model_behind_its_tags(client, library):
    _, samples = library["chord"]
    result = search(client, COLLECTION, sounds.to_bytes(samples))
    collection = client.GetCollection(pb.GetCollectionRequest(name=COLLECTION)).collection
    assert result.query_tags
    assert result.model == collection.model
    assert result.model.untrained


def test_tag_and_metadata_filters(client, library):
    record, samples = library["morse"]
    by_meta = search(client, COLLECTION, sounds.to_bytes(samples), min_score=-1.0,
                     filter=pb.AudioFilter(metadata={"kind": "morse"}))
    assert [m.audio.id for m in by_meta.matches] == [record.id]
    tag = record.tags[0].label
    by_tag = client.ListAudio(pb.ListAudioRequest(collection=COLLECTION, filter=pb.AudioFilter(tags=[tag])))
    assert record.id in [r.id for r in by_tag.audios]
    assert all(tag in [t.label for t in r.tags] for r in by_tag.audios)


def test_stats_count_recordings_and_durations(client, library):
    stats = client.GetCollectionStats(pb.GetCollectionStatsRequest(collection=COLLECTION))
    assert stats.audio_count >= len(library)
    assert stats.total_duration_seconds >= 6.0 * len(library) - 0.1
    assert stats.tags
    assert stats.tags[0].audio_count >= 1
