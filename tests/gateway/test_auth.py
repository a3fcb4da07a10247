"""API keys at the gateway: the keys file, the CLI that makes keys, and the interceptor on a real in-process server
(a stand-in servicer behind the real interceptors, so the rights are checked without the rest of the suite)."""

from __future__ import annotations

import json
import logging
import os
import time

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from audiosearch.common.errors import reason_of
from audiosearch.common.grpc_server import start_server
from audiosearch.common.settings import ServiceSettings
from audiosearch.gateway.api import apikeys, auth
from audiosearch.gateway.api.auth import RULES, ApiKeyInterceptor, KeysFileError, KeyStore, hash_key, load_keys
from audiosearch.v1 import audiosearch_pb2 as pb
from audiosearch.v1 import audiosearch_pb2_grpc

ADMIN, READER, WRITER, NEWCOMER = "as_admin-key", "as_reader-key", "as_writer-key", "as_new-key"
SERVICE = pb.DESCRIPTOR.services_by_name["AudioSearchService"]


def keys_entries() -> list[dict[str, object]]:
    return [
        {"name": "admin", "sha256": hash_key(ADMIN), "collections": ["*"], "access": "write"},
        {"name": "reader", "sha256": hash_key(READER), "collections": ["library"], "access": "read"},
        {"name": "writer", "sha256": hash_key(WRITER), "collections": ["library", "jingles"], "access": "write"},
    ]


class StandIn(audiosearch_pb2_grpc.AudioSearchServiceServicer):
    """Answers every call it is allowed to receive; records what arrived."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def CreateCollection(self, request, context):
        self.calls.append(f"create:{request.name}")
        return pb.CreateCollectionResponse(collection=pb.Collection(name=request.name))

    def GetCollection(self, request, context):
        return pb.GetCollectionResponse(collection=pb.Collection(name=request.name))

    def ListCollections(self, request, context):
        return pb.ListCollectionsResponse(collections=[pb.Collection(name=name)
                                                       for name in ("jingles", "library", "secret")])

    def DeleteAudio(self, request, context):
        self.calls.append(f"delete:{request.collection}")
        return pb.DeleteAudioResponse()

    def IngestAudio(self, request_iterator, context):
        header = next(request_iterator).header
        size = sum(len(message.chunk) for message in request_iterator)
        self.calls.append(f"ingest:{header.collection}:{size}")
        return pb.IngestAudioResponse(audio=pb.AudioRecord(collection=header.collection, size_bytes=size))

    def TagAudio(self, request, context):
        return pb.TagAudioResponse()


@pytest.fixture
def keys_file(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": keys_entries()}))
    return path


@pytest.fixture
def gateway(keys_file):
    servicer = StandIn()

    def register(server):
        audiosearch_pb2_grpc.add_AudioSearchServiceServicer_to_server(servicer, server)
        return [SERVICE.full_name]

    running = start_server(ServiceSettings(port=0, max_workers=4), register,
                           interceptors=[ApiKeyInterceptor(KeyStore(keys_file))])
    channel = grpc.insecure_channel(running.address)
    try:
        yield audiosearch_pb2_grpc.AudioSearchServiceStub(channel), servicer, channel
    finally:
        channel.close()
        running.stop(0)


def bearer(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


def refused(call, code, reason="PERMISSION_DENIED"):
    with pytest.raises(grpc.RpcError) as failure:
        call()
    assert failure.value.code() == code, failure.value.details()
    assert reason_of(failure.value) == reason
    return failure.value


def ingest_messages(collection: str) -> list[pb.IngestAudioRequest]:
    return [pb.IngestAudioRequest(header=pb.IngestAudioHeader(collection=collection, name="a.wav")),
            pb.IngestAudioRequest(chunk=b"\x00" * 100)]


def test_every_rpc_of_the_public_api_has_a_rule():
    assert set(RULES) == {method.name for method in SERVICE.methods}


def test_a_call_without_a_key_is_unauthenticated_and_logged(gateway, caplog):
    client, _, _ = gateway
    with caplog.at_level(logging.WARNING, logger="audiosearch.auth"):
        error = refused(lambda: client.GetCollection(pb.GetCollectionRequest(name="library")),
                        grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
    assert "API key" in error.details()
    assert any(record.getMessage() == "call refused" and record.method == "GetCollection"
               for record in caplog.records)


def test_an_unknown_key_is_unauthenticated(gateway):
    client, _, _ = gateway
    refused(lambda: client.GetCollection(pb.GetCollectionRequest(name="library"), metadata=bearer("as_guess")),
            grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
    refused(lambda: client.GetCollection(pb.GetCollectionRequest(name="library"),
                                         metadata=[("authorization", f"Basic {READER}")]),
            grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")


def test_a_key_reads_its_collections_with_either_header(gateway):
    client, _, _ = gateway
    assert client.GetCollection(pb.GetCollectionRequest(name="library"), metadata=bearer(READER)).collection.name
    assert client.GetCollection(pb.GetCollectionRequest(name="library"), metadata=[("x-api-key", READER)])
    assert client.TagAudio(pb.TagAudioRequest(), metadata=bearer(READER)) is not None


def test_a_collection_outside_the_key_is_denied_and_logged_with_the_key_name_only(gateway, caplog):
    client, _, _ = gateway
    with caplog.at_level(logging.WARNING, logger="audiosearch.auth"):
        error = refused(lambda: client.GetCollection(pb.GetCollectionRequest(name="secret"), metadata=bearer(READER)),
                        grpc.StatusCode.PERMISSION_DENIED)
    assert "secret" in error.details()
    denial = next(record for record in caplog.records if record.getMessage() == "call refused")
    assert (denial.key, denial.collection) == ("reader", "secret")
    assert all(READER not in str(record.__dict__) for record in caplog.records)


def test_a_read_key_may_not_write(gateway):
    client, servicer, _ = gateway
    refused(lambda: client.CreateCollection(pb.CreateCollectionRequest(name="library"), metadata=bearer(READER)),
            grpc.StatusCode.PERMISSION_DENIED)
    refused(lambda: client.DeleteAudio(pb.DeleteAudioRequest(collection="library", audio_id="0" * 32),
                                       metadata=bearer(READER)), grpc.StatusCode.PERMISSION_DENIED)
    refused(lambda: client.IngestAudio(iter(ingest_messages("library")), metadata=bearer(READER)),
            grpc.StatusCode.PERMISSION_DENIED)
    assert servicer.calls == []


def test_a_write_key_ingests_into_its_collections_only(gateway):
    client, servicer, _ = gateway
    reply = client.IngestAudio(iter(ingest_messages("jingles")), metadata=bearer(WRITER))
    assert reply.audio.size_bytes == 100
    refused(lambda: client.IngestAudio(iter(ingest_messages("secret")), metadata=bearer(WRITER)),
            grpc.StatusCode.PERMISSION_DENIED)
    refused(lambda: client.CreateCollection(pb.CreateCollectionRequest(name="other"), metadata=bearer(WRITER)),
            grpc.StatusCode.PERMISSION_DENIED)
    assert servicer.calls == ["ingest:jingles:100"]


def test_the_collection_list_shows_only_the_keys_collections(gateway):
    client, _, _ = gateway

    def names(key):
        return [c.name for c in client.ListCollections(pb.ListCollectionsRequest(), metadata=bearer(key)).collections]

    assert names(READER) == ["library"]
    assert names(WRITER) == ["jingles", "library"]
    assert names(ADMIN) == ["jingles", "library", "secret"]


def test_health_and_reflection_stay_open(gateway):
    _, _, channel = gateway
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    replies = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    assert SERVICE.full_name in {s.name for r in replies for s in r.list_services_response.service}


def test_keys_are_reloaded_when_the_file_changes(gateway, keys_file, monkeypatch):
    client, _, _ = gateway
    monkeypatch.setattr(auth, "_RELOAD_CHECK_SECONDS", 0.0)
    entries = keys_entries()[1:]  # the admin key is revoked, a new one added
    entries.append({"name": "newcomer", "sha256": hash_key(NEWCOMER), "collections": ["*"], "access": "read"})
    keys_file.write_text(json.dumps(entries))
    stamp = time.time() + 5
    os.utime(keys_file, (stamp, stamp))
    assert client.GetCollection(pb.GetCollectionRequest(name="x"), metadata=bearer(NEWCOMER))
    refused(lambda: client.GetCollection(pb.GetCollectionRequest(name="x"), metadata=bearer(ADMIN)),
            grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")


def test_yaml_keys_files_and_plain_lists_load(tmp_path):
    path = tmp_path / "keys.yaml"
    path.write_text(yaml.safe_dump({"keys": keys_entries()}))
    assert {key.name for key in load_keys(path).values()} == {"admin", "reader", "writer"}
    plain = tmp_path / "keys.json"
    plain.write_text(json.dumps(keys_entries()[:1]))
    assert [key.name for key in load_keys(plain).values()] == ["admin"]


@pytest.mark.parametrize("entries", [
    [{"name": "x", "sha256": "not-a-hash", "collections": ["*"], "access": "read"}],
    [{"name": "x", "sha256": "a" * 64, "collections": [], "access": "read"}],
    [{"name": "x", "sha256": "a" * 64, "collections": ["Bad Name"], "access": "read"}],
    [{"name": "x", "sha256": "a" * 64, "collections": ["*"], "access": "admin"}],
    [{"name": "x", "key": "plaintext", "collections": ["*"], "access": "read"}],
    [{"name": "x", "sha256": "a" * 64, "collections": ["*"], "access": "read"},
     {"name": "x", "sha256": "b" * 64, "collections": ["*"], "access": "read"}],
])
def test_bad_keys_files_are_refused(tmp_path, entries):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": entries}))
    with pytest.raises(KeysFileError):
        load_keys(path)


def test_the_cli_makes_a_key_whose_entry_authenticates_it(capsys, tmp_path):
    assert apikeys.main(["new", "--name", "ingest-bot", "--collections", "library,jingles", "--access", "write"]) == 0
    lines = capsys.readouterr().out.splitlines()
    key = lines[1].strip()
    entry = json.loads(lines[-1])
    assert key.startswith("as_")
    assert len(key) > 40
    assert entry == {"name": "ingest-bot", "sha256": hash_key(key), "collections": ["library", "jingles"],
                     "access": "write"}
    path = tmp_path / "keys.json"
    path.write_text(json.dumps([entry]))
    assert load_keys(path)[hash_key(key)].sees("jingles")
    assert apikeys.main(["check", str(path)]) == 0
    assert apikeys.main(["new", "--name", "x", "--collections", "Bad Name"]) == 2
