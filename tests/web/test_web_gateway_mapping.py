"""The web process against a stand-in gateway (a real gRPC server in-process): error mapping and credentials."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from audiosearch.common.errors import build_status
from audiosearch.common.ports import free_port
from audiosearch.v1 import audiosearch_pb2 as pb
from audiosearch.v1 import audiosearch_pb2_grpc
from tests.web.conftest import served

# Collection name -> the status the stand-in gateway answers GetCollection with.
REFUSALS = {
    "bad": (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD", 400),
    "nobody": (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED", 401),
    "forbidden": (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED", 403),
    "missing": (grpc.StatusCode.NOT_FOUND, "COLLECTION_NOT_FOUND", 404),
    "exists": (grpc.StatusCode.ALREADY_EXISTS, "COLLECTION_EXISTS", 409),
    "mismatch": (grpc.StatusCode.FAILED_PRECONDITION, "MODEL_MISMATCH", 409),
    "busy": (grpc.StatusCode.ABORTED, "INGEST_IN_PROGRESS", 409),
    "overloaded": (grpc.StatusCode.RESOURCE_EXHAUSTED, "OVERLOADED", 429),
    "broken": (grpc.StatusCode.INTERNAL, "INTERNAL", 500),
    "down": (grpc.StatusCode.UNAVAILABLE, "DEPENDENCY_UNAVAILABLE", 503),
    "slow": (grpc.StatusCode.DEADLINE_EXCEEDED, "DEPENDENCY_UNAVAILABLE", 504),
}
UNTRAINED = pb.ModelIdentity(name="panns_cnn14", version="untrained-seed0", embedding_dim=2048, sample_rate_hz=32000,
                             untrained=True)
TRAINED = pb.ModelIdentity(name="panns_cnn14", version="sha256=abcd", embedding_dim=2048, sample_rate_hz=32000)
SIREN = pb.Tag(label="Fire engine, fire truck (siren)", score=0.51)


class StandIn(audiosearch_pb2_grpc.AudioSearchServiceServicer):
    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []
        self.ingested: list[pb.IngestAudioRequest] = []

    def GetCollection(self, request, context):
        self.metadata.append(dict(context.invocation_metadata()))
        code, reason, _ = REFUSALS.get(request.name, (None, None, None))
        if code is not None:
            context.abort_with_status(
                build_status(code, f"refused {request.name}", reason, {"collection": request.name}))
        return pb.GetCollectionResponse(collection=pb.Collection(name=request.name, score_threshold=0.5))

    def IngestAudio(self, request_iterator, context):
        self.ingested = list(request_iterator)
        header = self.ingested[0].header
        size = sum(len(message.chunk) for message in self.ingested[1:])
        return pb.IngestAudioResponse(audio=pb.AudioRecord(
            id="0" * 32, collection=header.collection, name=header.name, size_bytes=size, metadata=header.metadata,
            status=pb.AUDIO_STATUS_READY))

    def SearchAudio(self, request, context):
        model = TRAINED if request.collection == "trained" else UNTRAINED
        return pb.SearchAudioResponse(score_threshold=0.5, query_duration_seconds=1.0, query_tags=[SIREN],
                                      model=model)

    def TagAudio(self, request, context):
        return pb.TagAudioResponse(tags=[SIREN], duration_seconds=1.0, model=UNTRAINED)

    def GetAudioContent(self, request, context):
        if request.audio_id != "a" * 32:
            context.abort_with_status(build_status(grpc.StatusCode.NOT_FOUND, "not kept", "CONTENT_NOT_FOUND"))
        yield pb.GetAudioContentResponse(chunk=b"RIFF", content_type="audio/wav", size_bytes=8)
        yield pb.GetAudioContentResponse(chunk=b"WAVE")


@pytest.fixture(scope="module")
def stand_in() -> Iterator[tuple[StandIn, str]]:
    servicer = StandIn()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    audiosearch_pb2_grpc.add_AudioSearchServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        server.stop(None)


@pytest.mark.parametrize("name", list(REFUSALS))
def test_grpc_refusals_map_to_http_statuses_with_the_reason(stand_in, name):
    _, address = stand_in
    code, reason, status = REFUSALS[name]
    with served(address) as client:
        response = client.get(f"/v1/collections/{name}")
    assert response.status_code == status
    assert response.json() == {"error": {"code": code.name, "reason": reason, "message": f"refused {name}",
                                         "metadata": {"collection": name}}}


def test_the_callers_credentials_reach_the_gateway(stand_in):
    servicer, address = stand_in
    with served(address) as client:
        client.get("/v1/collections/ok", headers={"Authorization": "Bearer token-1"})
        client.get("/v1/collections/ok", headers={"X-API-Key": "key-2"})
        client.get("/v1/collections/ok")
    seen = [metadata.get("authorization") for metadata in servicer.metadata[-3:]]
    assert seen == ["Bearer token-1", "Bearer key-2", None]


def test_an_upload_is_streamed_to_the_gateway_in_chunks(stand_in):
    servicer, address = stand_in
    data = bytes(range(256)) * 1000
    with served(address, upload_chunk_bytes=4096) as client:
        response = client.post("/v1/collections/ok/audio", files={"file": ("a.wav", data)},
                               data={"meta": ["k=v", "x=1=2"]})
    assert response.status_code == 201
    assert response.json()["audio"]["size_bytes"] == len(data)
    header, *chunks = servicer.ingested
    assert (header.header.name, dict(header.header.metadata)) == ("a.wav", {"k": "v", "x": "1=2"})
    assert len(chunks) == len(data) // 4096 + 1
    assert max(len(chunk.chunk) for chunk in chunks) == 4096


def test_content_streams_with_its_media_type_or_maps_the_refusal(stand_in):
    _, address = stand_in
    with served(address) as client:
        found = client.get(f"/v1/collections/ok/audio/{'a' * 32}/content")
        missing = client.get(f"/v1/collections/ok/audio/{'b' * 32}/content")
    assert (found.status_code, found.content, found.headers["content-type"]) == (200, b"RIFFWAVE", "audio/wav")
    assert (missing.status_code, missing.json()["error"]["reason"]) == (404, "CONTENT_NOT_FOUND")


def test_an_unreachable_gateway_is_503():
    with served(f"127.0.0.1:{free_port()}", timeout_seconds=2) as client:
        response = client.get("/v1/collections/anything")
        health = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["error"]["reason"] == "DEPENDENCY_UNAVAILABLE"
    assert health.status_code == 503
    assert health.json()["status"] == "NOT_SERVING"


def test_a_clip_too_large_for_one_message_is_413(stand_in):
    _, address = stand_in
    with served(address, max_clip_bytes=1000) as client:
        response = client.post("/v1/collections/ok/search", files={"clip": ("c.wav", b"x" * 1001)})
    assert response.status_code == 413
    assert response.json()["error"]["reason"] == "AUDIO_TOO_LARGE"


def test_replies_with_tags_say_when_the_model_is_untrained(stand_in):
    _, address = stand_in
    with served(address) as client:
        tagged = client.post("/v1/tag", files={"clip": ("c.wav", b"RIFF")}).json()
        untrained = client.post("/v1/collections/ok/search", files={"clip": ("c.wav", b"RIFF")}).json()
        trained = client.post("/v1/collections/trained/search", files={"clip": ("c.wav", b"RIFF")}).json()
        document = client.get("/openapi.json").json()
    assert tagged["tags"] == [{"label": SIREN.label, "score": pytest.approx(0.51)}]
    assert tagged["model"] == {"name": "panns_cnn14", "version": "untrained-seed0", "embedding_dim": 2048,
                               "sample_rate_hz": 32000, "untrained": True}
    assert untrained["model"]["untrained"] is True
    assert trained["model"]["untrained"] is False
    schemas = document["components"]["schemas"]
    assert "meaningless" in schemas["ModelIdentity"]["properties"]["untrained"]["description"]
    for reply in ("TagResult", "SearchResult"):
        assert "model.untrained" in schemas[reply]["properties"]["model"]["description"]
