"""CatalogService over real sockets: statuses and ErrorInfo reasons as a Go or Java caller would see them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from audiosearch.catalog.servicer import CatalogServicer
from audiosearch.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from audiosearch.common.errors import error_info, reason_of
from audiosearch.v1 import audiosearch_pb2 as pb
from tests.catalog.builders import sha256_of, unique_name

Stub = catalog_pb2_grpc.CatalogServiceStub


def collection_message(name: str | None = None) -> pb.Collection:
    return pb.Collection(
        name=name or unique_name(),
        description="over grpc",
        model=pb.ModelIdentity(
            name="panns_cnn14", version="untrained-seed0", embedding_dim=2048, sample_rate_hz=32000, untrained=True
        ),
        segment_config=pb.SegmentConfig(window_seconds=2.0, hop_seconds=1.0),
        score_threshold=0.8,
        threshold_source="default",
    )


def audio_request(
    collection: str, content: str | None = None, segments: int = 3, **fields: Any
) -> catalog_pb2.CreateAudioRequest:
    audio = pb.AudioRecord(
        collection=collection,
        name="dog.wav",
        sha256=sha256_of(content or unique_name()),
        duration_seconds=float(segments + 1),
        sample_rate_hz=48000,
        channels=1,
        codec="pcm_s16le",
        size_bytes=1234,
        **fields,
    )
    return catalog_pb2.CreateAudioRequest(
        audio=audio,
        segments=[
            catalog_pb2.Segment(
                index=i,
                range=pb.TimeRange(start_seconds=i, end_seconds=i + 2.0),
                tags=[pb.Tag(label="Dog", score=0.9)],
            )
            for i in range(segments)
        ],
    )


def info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    details = error_info(error)
    assert details is not None, "the status carries no ErrorInfo"
    return details


def failed_call(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


@pytest.fixture
def collection(catalog: Stub) -> str:
    created = catalog.CreateCollection(catalog_pb2.CreateCollectionRequest(collection=collection_message()))
    return created.collection.name


def ready(catalog: Stub, request: catalog_pb2.CreateAudioRequest) -> pb.AudioRecord:
    created = catalog.CreateAudio(request)
    return catalog.SetAudioStatus(
        catalog_pb2.SetAudioStatusRequest(
            collection=request.audio.collection, audio_id=created.audio.id, status=pb.AUDIO_STATUS_READY
        )
    ).audio


def test_every_rpc_of_the_contract_is_implemented() -> None:
    methods = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].methods_by_name
    generated = catalog_pb2_grpc.CatalogServiceServicer

    assert [name for name in methods if getattr(CatalogServicer, name) is getattr(generated, name)] == []


def test_health_reports_the_catalog_service_serving(catalog_channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(catalog_channel)

    response = health.Check(health_pb2.HealthCheckRequest(service="audiosearch.catalog.v1.CatalogService"))

    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_created_collection_reads_back_with_a_create_time(catalog: Stub) -> None:
    message = collection_message()

    created = catalog.CreateCollection(catalog_pb2.CreateCollectionRequest(collection=message)).collection
    read = catalog.GetCollection(catalog_pb2.GetCollectionRequest(name=message.name)).collection

    assert read == created
    assert read.model == message.model
    assert read.segment_config == message.segment_config
    assert read.create_time.seconds > 0


def test_taken_collection_name_is_already_exists_collection_exists(catalog: Stub, collection: str) -> None:
    error = failed_call(
        lambda: catalog.CreateCollection(catalog_pb2.CreateCollectionRequest(collection=collection_message(collection)))
    )

    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert reason_of(error) == "COLLECTION_EXISTS"


def test_missing_collection_is_not_found_collection_not_found(catalog: Stub) -> None:
    error = failed_call(lambda: catalog.GetCollection(catalog_pb2.GetCollectionRequest(name="no_such_collection")))

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert reason_of(error) == "COLLECTION_NOT_FOUND"
    assert info(error).domain == "audiosearch.dev"


def test_collections_list_page_by_page(catalog: Stub) -> None:
    prefix = unique_name("grpc_page")
    for i in range(5):
        catalog.CreateCollection(catalog_pb2.CreateCollectionRequest(collection=collection_message(f"{prefix}_{i}")))
    seen: list[str] = []
    token = ""
    while True:
        page = catalog.ListCollections(catalog_pb2.ListCollectionsRequest(page_size=2, page_token=token))
        seen.extend(collection.name for collection in page.collections)
        token = page.next_page_token
        if not token:
            break

    assert len(seen) == len(set(seen))
    assert {f"{prefix}_{i}" for i in range(5)} <= set(seen)


def test_threshold_update_is_returned_and_kept(catalog: Stub, collection: str) -> None:
    updated = catalog.UpdateCollectionThreshold(
        catalog_pb2.UpdateCollectionThresholdRequest(name=collection, score_threshold=0.5, threshold_source="calib")
    ).collection

    assert updated.score_threshold == pytest.approx(0.5)
    assert catalog.GetCollection(catalog_pb2.GetCollectionRequest(name=collection)).collection == updated


def test_new_recording_comes_back_pending_with_segment_ids_and_a_retry_finds_it(catalog: Stub, collection: str) -> None:
    request = audio_request(collection, content="grpc bytes", metadata={"k": "v"}, tags=[pb.Tag(label="Dog")])

    first = catalog.CreateAudio(request)
    retry = catalog.CreateAudio(request)

    assert first.created
    assert first.audio.status == pb.AUDIO_STATUS_PENDING
    assert first.audio.create_time == first.audio.update_time
    assert [segment.index for segment in first.segments] == [0, 1, 2]
    assert all(segment.segment_id > 0 for segment in first.segments)
    assert first.segments[1].range == request.segments[1].range
    assert not retry.created
    assert retry.audio == first.audio
    assert list(retry.segments) == []


def test_recording_is_found_by_content_hash_and_unknown_hash_is_audio_not_found(catalog: Stub, collection: str) -> None:
    request = audio_request(collection)
    created = catalog.CreateAudio(request).audio

    found = catalog.FindAudioBySha256(
        catalog_pb2.FindAudioBySha256Request(collection=collection, sha256=request.audio.sha256)
    ).audio
    error = failed_call(
        lambda: catalog.FindAudioBySha256(catalog_pb2.FindAudioBySha256Request(collection=collection, sha256="0" * 64))
    )

    assert found == created
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert reason_of(error) == "AUDIO_NOT_FOUND"


def test_concurrent_creates_of_the_same_content_make_one_record(catalog: Stub, collection: str) -> None:
    barrier = threading.Barrier(8)
    request = audio_request(collection, content="concurrent grpc bytes", segments=30)

    def create(_: int) -> catalog_pb2.CreateAudioResponse:
        barrier.wait()
        return catalog.CreateAudio(request)

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(create, range(8)))

    assert sum(response.created for response in responses) == 1
    assert len({response.audio.id for response in responses}) == 1


def test_recording_in_a_missing_collection_is_collection_not_found(catalog: Stub) -> None:
    error = failed_call(lambda: catalog.CreateAudio(audio_request("no_such_collection")))

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert reason_of(error) == "COLLECTION_NOT_FOUND"


def test_too_long_name_is_invalid_argument_naming_the_field(catalog: Stub, collection: str) -> None:
    request = audio_request(collection)
    request.audio.name = "n" * 513

    error = failed_call(lambda: catalog.CreateAudio(request))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(error) == "INVALID_FIELD"
    assert info(error).metadata["field"] == "audio.name"


def test_status_change_from_an_unexpected_status_is_failed_precondition(catalog: Stub, collection: str) -> None:
    created = catalog.CreateAudio(audio_request(collection)).audio
    request = catalog_pb2.SetAudioStatusRequest(
        collection=collection,
        audio_id=created.id,
        status=pb.AUDIO_STATUS_READY,
        expected_status=pb.AUDIO_STATUS_DELETING,
    )

    error = failed_call(lambda: catalog.SetAudioStatus(request))

    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(error) == "STATUS_CONFLICT"
    assert info(error).metadata["status"] == "PENDING"


def test_status_change_from_the_expected_status_happens(catalog: Stub, collection: str) -> None:
    created = catalog.CreateAudio(audio_request(collection)).audio

    changed = catalog.SetAudioStatus(
        catalog_pb2.SetAudioStatusRequest(
            collection=collection,
            audio_id=created.id,
            status=pb.AUDIO_STATUS_READY,
            expected_status=pb.AUDIO_STATUS_PENDING,
        )
    ).audio

    assert changed.status == pb.AUDIO_STATUS_READY
    assert changed.update_time.ToMicroseconds() > created.update_time.ToMicroseconds()


def test_unspecified_status_is_invalid_argument(catalog: Stub, collection: str) -> None:
    created = catalog.CreateAudio(audio_request(collection)).audio

    error = failed_call(
        lambda: catalog.SetAudioStatus(catalog_pb2.SetAudioStatusRequest(collection=collection, audio_id=created.id))
    )

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info(error).metadata["field"] == "status"


def test_recording_of_another_collection_is_not_found_audio_not_found(catalog: Stub, collection: str) -> None:
    created = catalog.CreateAudio(audio_request(collection)).audio
    other = catalog.CreateCollection(catalog_pb2.CreateCollectionRequest(collection=collection_message()))

    error = failed_call(
        lambda: catalog.GetAudio(catalog_pb2.GetAudioRequest(collection=other.collection.name, audio_id=created.id))
    )

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert reason_of(error) == "AUDIO_NOT_FOUND"


def test_ready_recordings_list_oldest_first_with_filters(catalog: Stub, collection: str) -> None:
    dog = [pb.Tag(label="Dog", score=0.9)]
    jazz = [ready(catalog, audio_request(collection, metadata={"genre": "jazz"}, tags=dog)) for _ in range(3)]
    ready(catalog, audio_request(collection, metadata={"genre": "jazz"}))
    ready(catalog, audio_request(collection, metadata={"genre": "rock"}, tags=dog))
    catalog.CreateAudio(audio_request(collection, metadata={"genre": "jazz"}, tags=dog))
    listed: list[str] = []
    token = ""
    while True:
        page = catalog.ListAudio(
            catalog_pb2.ListAudioRequest(
                collection=collection,
                page_size=2,
                page_token=token,
                status=pb.AUDIO_STATUS_READY,
                filter=pb.AudioFilter(tags=["Dog"], metadata={"genre": "jazz"}),
            )
        )
        listed.extend(audio.id for audio in page.audios)
        token = page.next_page_token
        if not token:
            break

    assert listed == [audio.id for audio in jazz]


def test_foreign_page_token_is_invalid_argument(catalog: Stub, collection: str) -> None:
    error = failed_call(
        lambda: catalog.ListAudio(catalog_pb2.ListAudioRequest(collection=collection, page_token="garbage"))
    )

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info(error).metadata["field"] == "page_token"


def test_batch_get_returns_the_ready_ones_among_the_ids(catalog: Stub, collection: str) -> None:
    done = ready(catalog, audio_request(collection))
    pending = catalog.CreateAudio(audio_request(collection)).audio

    found = catalog.BatchGetAudio(
        catalog_pb2.BatchGetAudioRequest(
            collection=collection, audio_ids=[done.id, pending.id, "0" * 32], status=pb.AUDIO_STATUS_READY
        )
    ).audios

    assert [audio.id for audio in found] == [done.id]
    assert found[0] == done


def test_stats_count_ready_recordings(catalog: Stub, collection: str) -> None:
    ready(catalog, audio_request(collection, segments=2, tags=[pb.Tag(label="Dog", score=0.9)]))
    ready(catalog, audio_request(collection, segments=4, tags=[pb.Tag(label="Dog", score=0.8)]))
    catalog.CreateAudio(audio_request(collection, segments=8))

    stats = catalog.GetCollectionStats(catalog_pb2.GetCollectionStatsRequest(collection=collection))

    assert (stats.audio_count, stats.total_duration_seconds, stats.segment_count) == (2, 8.0, 6)
    assert [(tag.label, tag.audio_count) for tag in stats.tags] == [("Dog", 2)]
    assert catalog.GetCollection(catalog_pb2.GetCollectionRequest(name=collection)).collection.audio_count == 2


def test_deletes_are_idempotent(catalog: Stub, collection: str) -> None:
    created = catalog.CreateAudio(audio_request(collection)).audio
    delete_audio = catalog_pb2.DeleteAudioRequest(collection=collection, audio_id=created.id)

    catalog.DeleteAudio(delete_audio)
    catalog.DeleteAudio(delete_audio)
    catalog.DeleteCollection(catalog_pb2.DeleteCollectionRequest(name=collection))
    catalog.DeleteCollection(catalog_pb2.DeleteCollectionRequest(name=collection))

    error = failed_call(lambda: catalog.GetCollection(catalog_pb2.GetCollectionRequest(name=collection)))
    assert reason_of(error) == "COLLECTION_NOT_FOUND"
