"""Small helpers to call the public API in tests."""

from __future__ import annotations

import grpc

from audiosearch.common.errors import reason_of
from audiosearch.v1 import audiosearch_pb2 as pb
from audiosearch.v1 import audiosearch_pb2_grpc

CHUNK = 64 * 1024


def stub(address: str) -> audiosearch_pb2_grpc.AudioSearchServiceStub:
    return audiosearch_pb2_grpc.AudioSearchServiceStub(grpc.insecure_channel(address))


def ensure_collection(
    client: audiosearch_pb2_grpc.AudioSearchServiceStub, name: str, **fields: object
) -> pb.Collection:
    try:
        return client.CreateCollection(pb.CreateCollectionRequest(name=name, **fields)).collection
    except grpc.RpcError as error:
        if reason_of(error) != "COLLECTION_EXISTS":
            raise
        return client.GetCollection(pb.GetCollectionRequest(name=name)).collection


def ingest_messages(
    collection: str, name: str, data: bytes, metadata: dict[str, str] | None = None
) -> list[pb.IngestAudioRequest]:
    header = pb.IngestAudioHeader(collection=collection, name=name, metadata=metadata or {})
    return [pb.IngestAudioRequest(header=header)] + [
        pb.IngestAudioRequest(chunk=data[i : i + CHUNK]) for i in range(0, len(data), CHUNK)
    ]


def ingest(
    client: audiosearch_pb2_grpc.AudioSearchServiceStub,
    collection: str,
    name: str,
    data: bytes,
    metadata: dict[str, str] | None = None,
) -> pb.IngestAudioResponse:
    return client.IngestAudio(iter(ingest_messages(collection, name, data, metadata)), timeout=300)


def search(
    client: audiosearch_pb2_grpc.AudioSearchServiceStub, collection: str, data: bytes, **fields: object
) -> pb.SearchAudioResponse:
    return client.SearchAudio(pb.SearchAudioRequest(collection=collection, audio_content=data, **fields), timeout=120)


def list_all(client: audiosearch_pb2_grpc.AudioSearchServiceStub, collection: str) -> list[pb.AudioRecord]:
    records: list[pb.AudioRecord] = []
    token = ""
    while True:
        page = client.ListAudio(pb.ListAudioRequest(collection=collection, page_size=100, page_token=token))
        records.extend(page.audios)
        token = page.next_page_token
        if not token:
            return records
