"""Originals in the blob store follow the rule of vectors: a READY record has its blob, and nothing else does."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import grpc
import pytest

from audiosearch.catalog.v1 import catalog_pb2 as cpb
from audiosearch.catalog.v1 import catalog_pb2_grpc
from audiosearch.common.errors import reason_of
from audiosearch.search.v1 import search_pb2 as spb
from audiosearch.search.v1 import search_pb2_grpc
from audiosearch.v1 import audiosearch_pb2 as pb
from devtools.support import sounds
from devtools.support.gateway import ensure_collection, ingest, list_all, stub


@pytest.fixture(scope="module")
def client(gateway_address):
    return stub(gateway_address)


@pytest.fixture(scope="module")
def blob_root(suite) -> Path:
    gateway = next(plan for plan in suite.plans if plan.name == "gateway")
    uri = gateway.env["GATEWAY_BLOB_URI"]
    assert uri.startswith("file:///"), "the suite keeps originals in a local directory by default"
    return Path(urlparse(uri).path)


@pytest.fixture(scope="module")
def internal(suite):
    address = {plan.name: plan.health_address for plan in suite.plans}
    return (search_pb2_grpc.VectorSearchServiceStub(grpc.insecure_channel(address["search"])),
            catalog_pb2_grpc.CatalogServiceStub(grpc.insecure_channel(address["catalog"])))


def blobs_of(root: Path, collection: str) -> set[str]:
    folder = root / collection
    return {path.name for path in folder.iterdir()} if folder.is_dir() else set()


def content(client, collection: str, audio_id: str) -> tuple[str, bytes]:
    replies = list(client.GetAudioContent(pb.GetAudioContentRequest(collection=collection, audio_id=audio_id)))
    return replies[0].content_type, b"".join(reply.chunk for reply in replies)


def test_every_ready_record_has_its_original_byte_for_byte(client, blob_root):
    ensure_collection(client, "blob_ready")
    data = sounds.encode_as("mp3", sounds.synth("chirp", 3.0, seed=21))
    record = ingest(client, "blob_ready", "chirp.mp3", data).audio
    assert blobs_of(blob_root, "blob_ready") == {record.id}
    assert content(client, "blob_ready", record.id) == ("audio/mpeg", data)
    assert {r.id for r in list_all(client, "blob_ready")} == blobs_of(blob_root, "blob_ready")


def test_content_is_streamed_in_chunks_with_its_size(client):
    ensure_collection(client, "blob_ready")
    data = sounds.to_bytes(sounds.synth("rain", 8.0, seed=22))  # ~700 KB: several chunks
    record = ingest(client, "blob_ready", "rain.wav", data).audio
    replies = list(client.GetAudioContent(pb.GetAudioContentRequest(collection="blob_ready", audio_id=record.id)))
    assert len(replies) > 1
    assert replies[0].size_bytes == len(data)
    assert all(not reply.content_type for reply in replies[1:])


def test_delete_removes_the_original(client, blob_root):
    ensure_collection(client, "blob_delete")
    record = ingest(client, "blob_delete", "hum.wav", sounds.to_bytes(sounds.synth("hum", 2.0, seed=23))).audio
    assert record.id in blobs_of(blob_root, "blob_delete")
    client.DeleteAudio(pb.DeleteAudioRequest(collection="blob_delete", audio_id=record.id))
    assert blobs_of(blob_root, "blob_delete") == set()
    with pytest.raises(grpc.RpcError) as failure:
        content(client, "blob_delete", record.id)
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND
    assert reason_of(failure.value) == "AUDIO_NOT_FOUND"


def test_deleting_a_collection_removes_its_originals(client, blob_root):
    ensure_collection(client, "blob_collection")
    ingest(client, "blob_collection", "morse.wav", sounds.to_bytes(sounds.synth("morse", 2.0, seed=24)))
    assert blobs_of(blob_root, "blob_collection")
    client.DeleteCollection(pb.DeleteCollectionRequest(name="blob_collection"))
    assert not (blob_root / "blob_collection").exists()


def test_undecodable_audio_leaves_no_original(client, blob_root):
    ensure_collection(client, "blob_failed")
    with pytest.raises(grpc.RpcError) as failure:
        ingest(client, "blob_failed", "junk.wav", b"RIFF" + b"\x00" * 5000)
    assert reason_of(failure.value) == "INVALID_AUDIO"
    assert blobs_of(blob_root, "blob_failed") == set()


def test_an_ingest_failing_after_the_blob_was_written_rolls_it_back(client, blob_root, internal):
    """The vector store refuses the upsert (its collection now has another dimension): no record, no blob."""
    vectors, catalog = internal
    ensure_collection(client, "blob_rollback")
    vectors.DropCollection(spb.DropCollectionRequest(collection="blob_rollback"))
    vectors.EnsureCollection(spb.EnsureCollectionRequest(collection="blob_rollback", dimension=16))
    data = sounds.to_bytes(sounds.synth("birds", 2.0, seed=25))
    with pytest.raises(grpc.RpcError):
        ingest(client, "blob_rollback", "birds.wav", data)
    assert blobs_of(blob_root, "blob_rollback") == set()
    assert list(catalog.ListAudio(cpb.ListAudioRequest(collection="blob_rollback", page_size=100)).audios) == []


def test_a_record_without_an_original_answers_content_not_found(client, blob_root):
    """Records from before blobs were on (or a lost blob) say so with a reason, instead of failing."""
    ensure_collection(client, "blob_missing")
    record = ingest(client, "blob_missing", "siren.wav", sounds.to_bytes(sounds.synth("siren", 2.0, seed=26))).audio
    (blob_root / "blob_missing" / record.id).unlink()
    with pytest.raises(grpc.RpcError) as failure:
        content(client, "blob_missing", record.id)
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND
    assert reason_of(failure.value) == "CONTENT_NOT_FOUND"
