"""A corpus of hostile and broken input through the public API of the running suite.

Every case gets the right status with an ErrorInfo reason, and afterwards the catalog and the vector store hold
exactly what they held before and all four services are still up. A few inputs are not errors by design and are
checked for what they must do instead: names are labels, never paths, so `../../etc/passwd` is stored verbatim;
SQL in metadata is data (every statement is parameterised), stored and matched verbatim; top_k 0 means the
default. Those go to a scratch collection and are deleted again, so the stores end as they began.
"""

from __future__ import annotations

import io
import itertools
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import numpy as np
import pytest
import soundfile

from audiosearch.common.errors import reason_of
from audiosearch.search.v1 import search_pb2 as spb
from audiosearch.search.v1 import search_pb2_grpc
from audiosearch.v1 import audiosearch_pb2 as pb
from audiosearch.v1 import audiosearch_pb2_grpc
from devtools.suite import is_healthy
from devtools.support import sounds
from devtools.support.gateway import CHUNK, ensure_collection, ingest, ingest_messages, list_all

TARGET = "hostile_target"
SCRATCH = "hostile_scratch"
INGEST = "/audiosearch.v1.AudioSearchService/IngestAudio"
SEARCH = "/audiosearch.v1.AudioSearchService/SearchAudio"
OK = grpc.StatusCode.OK
INVALID = grpc.StatusCode.INVALID_ARGUMENT
SQL = "x'); DROP TABLE audio; --"


# ---------------------------------------------------------------------------------------------------------- payloads

def _patched(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    patched = bytearray(data)
    struct.pack_into(fmt, patched, offset, value)
    return bytes(patched)


def _corrupt_middle(data: bytes) -> bytes:
    damaged = bytearray(data)
    quarter = len(data) // 4
    damaged[quarter : 3 * quarter] = np.random.default_rng(7).bytes(2 * quarter)
    return bytes(damaged)


def _flac_claiming(flac: bytes, frames: int) -> bytes:
    claimed = bytearray(flac)
    claimed[21] = (claimed[21] & 0xF0) | ((frames >> 32) & 0x0F)
    struct.pack_into(">I", claimed, 22, frames & 0xFFFFFFFF)
    return bytes(claimed)


def _wav(samples: np.ndarray, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, sounds.RATE, format="WAV", subtype=subtype)
    return buffer.getvalue()


def build_payloads() -> dict[str, bytes]:
    clip = sounds.synth("chirp", 3.0, seed=5)
    whole = {label: sounds.encode_as(label, clip) for label in sounds.FORMATS}
    whole["wv"] = sounds.ffmpeg_convert(whole["wav"], "wv")
    wav = whole["wav"]  # 44-byte header: channels @22, rate @24, byte rate @28, data size @40
    comm = whole["aiff"].index(b"COMM")
    payloads = {
        "empty": b"",
        "random_bytes": np.random.default_rng(1).bytes(30_000),
        "text_named_mp3": b"ID3? no, just a text file pretending to be an mp3\n" * 50,
        "header_only_wav": wav[:44],
        "corrupted_wav": _patched(wav, 20, "<H", 0x7777),  # unknown codec tag
        "corrupted_aiff": _patched(whole["aiff"], comm + 8, ">h", 0),  # zero channels
        "wav_claiming_10_hours": _patched(_patched(wav, 40, "<I", 10 * 3600 * sounds.RATE * 2), 4, "<I",
                                          10 * 3600 * sounds.RATE * 2 + 36),
        "wav_claiming_2_gb": _patched(_patched(wav, 40, "<I", 2**31), 4, "<I", 2**31 + 36),
        "flac_claiming_10_hours": _flac_claiming(whole["flac"], 10 * 3600 * sounds.RATE),
        "flac_claiming_2_gb": _flac_claiming(whole["flac"], 2**31),
        "wav_at_0_hz": _patched(_patched(wav, 24, "<I", 0), 28, "<I", 0),
        "wav_at_1_hz": _patched(_patched(wav, 24, "<I", 1), 28, "<I", 2),
        "wav_at_4_ghz": _patched(wav, 24, "<I", 0xFFFFFFFF),
        "wav_with_0_channels": _patched(wav, 22, "<H", 0),
        "wav_with_64_channels": _wav(np.tile(clip[:4410, None], (1, 64))),
        "nan_samples": _wav(np.where(np.arange(len(clip)) == 1000, np.nan, clip).astype(np.float32), "FLOAT"),
        "infinite_samples": _wav(np.where(np.arange(len(clip)) == 5, np.inf, clip).astype(np.float32), "FLOAT"),
        "one_sample": _wav(clip[:1]),
        "all_silence": _wav(np.zeros(sounds.RATE * 2, np.float32)),
    }
    for label, data in whole.items():
        payloads[f"truncated_{label}"] = data[: len(data) // 2]
        payloads.setdefault(f"corrupted_{label}", _corrupt_middle(data))
    payloads["valid"] = wav
    return payloads


# --------------------------------------------------------------------------------------------------------------- api

class Api:
    """What the cases call: the public stub, raw-bytes calls for what protobuf would not serialise, and checks
    for the inputs that are accepted by design (in the scratch collection, removed again)."""

    def __init__(self, channel: grpc.Channel, payloads: dict[str, bytes]) -> None:
        self.channel = channel
        self.client = audiosearch_pb2_grpc.AudioSearchServiceStub(channel)
        self.payloads = payloads
        self.before: dict[str, object] = {}
        self._seeds = itertools.count(1000)

    def ingest(self, payload: str, collection: str = TARGET, name: str = "clip.wav",
               metadata: dict[str, str] | None = None) -> pb.IngestAudioResponse:
        return ingest(self.client, collection, name, self.payloads[payload], metadata)

    def ingest_named(self, name: str, metadata: dict[str, str] | None = None, collection: str = TARGET) -> object:
        return self.ingest("valid", collection, name, metadata)

    def ingest_messages(self, messages: list[pb.IngestAudioRequest], timeout: float = 60) -> object:
        return self.client.IngestAudio(iter(messages), timeout=timeout)

    def ingest_raw(self, messages: list[bytes]) -> object:
        call = self.channel.stream_unary(INGEST, request_serializer=lambda raw: raw,
                                         response_deserializer=pb.IngestAudioResponse.FromString)
        return call(iter(messages), timeout=60)

    def search_raw(self, message: bytes) -> object:
        call = self.channel.unary_unary(SEARCH, request_serializer=lambda raw: raw,
                                        response_deserializer=pb.SearchAudioResponse.FromString)
        return call(message, timeout=60)

    def search(self, payload: str = "valid", collection: str = TARGET, **fields: object) -> pb.SearchAudioResponse:
        return self.client.SearchAudio(pb.SearchAudioRequest(
            collection=collection, audio_content=self.payloads[payload], **fields), timeout=120)

    def stalled_upload(self, send_header: bool, send_half: bool, client_timeout: float = 1.5) -> object:
        """A stream that stops sending without closing: the client's deadline ends it, or with a longer deadline
        the gateway's idle limit (GATEWAY_UPLOAD_IDLE_SECONDS in the test suite)."""
        release = threading.Event()
        data = self.payloads["valid"]

        def messages():
            if send_header:
                yield pb.IngestAudioRequest(header=pb.IngestAudioHeader(collection=TARGET, name="stall.wav"))
            if send_half:
                yield pb.IngestAudioRequest(chunk=data[: len(data) // 2])
            release.wait(60)

        try:
            return self.client.IngestAudio(messages(), timeout=client_timeout)
        finally:
            release.set()

    def stored_verbatim(self, name: str, metadata: dict[str, str] | None = None) -> None:
        """Ingests fresh audio under `name`/`metadata` into the scratch collection, reads it back unchanged,
        then deletes it."""
        samples = sounds.synth("rain", 1.5, seed=next(self._seeds))
        reply = ingest(self.client, SCRATCH, name, sounds.to_bytes(samples), metadata)
        assert not reply.already_existed
        stored = self.client.GetAudio(pb.GetAudioRequest(collection=SCRATCH, audio_id=reply.audio.id)).audio
        assert stored.name == name
        assert dict(stored.metadata) == (metadata or {})
        self.client.DeleteAudio(pb.DeleteAudioRequest(collection=SCRATCH, audio_id=reply.audio.id))


def header_bytes(collection: str = TARGET, name: str = "clip.wav", metadata: dict[str, str] | None = None,
                 raw: tuple[str, bytes] | None = None) -> bytes:
    """An IngestAudioRequest header, serialised; `raw` swaps a same-length placeholder for arbitrary bytes."""
    data = pb.IngestAudioRequest(header=pb.IngestAudioHeader(collection=collection, name=name,
                                                             metadata=metadata or {})).SerializeToString()
    if raw:
        placeholder, replacement = raw[0].encode(), raw[1]
        assert len(placeholder) == len(replacement)
        assert data.count(placeholder) == 1
        data = data.replace(placeholder, replacement)
    return data


def chunk_bytes(data: bytes) -> list[bytes]:
    return [pb.IngestAudioRequest(chunk=data[i : i + CHUNK]).SerializeToString() for i in range(0, len(data), CHUNK)]


def no_matches(reply: pb.SearchAudioResponse) -> None:
    assert list(reply.matches) == []


# ------------------------------------------------------------------------------------------------------------ corpus

@dataclass(frozen=True)
class Case:
    call: Callable[[Api], object]
    code: grpc.StatusCode
    reason: str | None = None


def _bad_audio(payload: str, reason: str = "INVALID_AUDIO") -> Case:
    return Case(lambda api: api.ingest(payload), INVALID, reason)


FORMATS = [*sounds.FORMATS, "wv"]
NON_UTF8 = b"bad\xff\xfe\xc3name"

CORPUS: dict[str, Case] = {
    # the bytes themselves
    **{payload: _bad_audio(payload) for payload in [
        "empty", "random_bytes", "text_named_mp3", "header_only_wav", "wav_claiming_10_hours", "wav_claiming_2_gb",
        "wav_at_0_hz", "wav_at_1_hz", "wav_at_4_ghz", "wav_with_0_channels", "wav_with_64_channels", "nan_samples",
        "infinite_samples", "one_sample", "all_silence"]},
    "flac_claiming_10_hours": _bad_audio("flac_claiming_10_hours", "AUDIO_TOO_LONG"),
    "flac_claiming_2_gb": _bad_audio("flac_claiming_2_gb", "AUDIO_TOO_LONG"),
    **{f"truncated_{label}": _bad_audio(f"truncated_{label}") for label in FORMATS},
    **{f"corrupted_{label}": _bad_audio(f"corrupted_{label}") for label in FORMATS},
    "search_with_random_bytes": Case(lambda api: api.search("random_bytes"), INVALID, "INVALID_AUDIO"),
    "search_with_64_channels": Case(lambda api: api.search("wav_with_64_channels"), INVALID, "INVALID_AUDIO"),
    "tag_with_nothing": Case(lambda api: api.client.TagAudio(pb.TagAudioRequest()), INVALID, "INVALID_AUDIO"),
    "tag_with_nan_samples": Case(lambda api: api.client.TagAudio(pb.TagAudioRequest(
        audio_content=api.payloads["nan_samples"])), INVALID, "INVALID_AUDIO"),
    # names
    "name_with_nul": Case(lambda api: api.ingest_named("a\x00b.wav"), INVALID, "INVALID_FIELD"),
    "name_with_newline": Case(lambda api: api.ingest_named("a\nb.wav"), INVALID, "INVALID_FIELD"),
    "empty_name": Case(lambda api: api.ingest_named(""), INVALID, "INVALID_FIELD"),
    "name_of_100k_characters": Case(lambda api: api.ingest_named("n" * 100_000), INVALID, "INVALID_FIELD"),
    "non_utf8_name": Case(lambda api: api.ingest_raw(
        [header_bytes(name="X" * len(NON_UTF8), raw=("X" * len(NON_UTF8), NON_UTF8)),
         *chunk_bytes(api.payloads["valid"])]), INVALID, "INVALID_FIELD"),
    "non_utf8_metadata_value": Case(lambda api: api.ingest_raw(
        [header_bytes(metadata={"k": "Y" * len(NON_UTF8)}, raw=("Y" * len(NON_UTF8), NON_UTF8)),
         *chunk_bytes(api.payloads["valid"])]), INVALID, "INVALID_FIELD"),
    "non_utf8_collection_in_search": Case(lambda api: api.search_raw(
        pb.SearchAudioRequest(collection="Z" * len(NON_UTF8)).SerializeToString().replace(
            b"Z" * len(NON_UTF8), NON_UTF8)), INVALID, "INVALID_FIELD"),
    "name_with_path_traversal_is_a_label": Case(lambda api: api.stored_verbatim("../../etc/passwd"), OK),
    "name_dot_dot_is_a_label": Case(lambda api: api.stored_verbatim(".."), OK),
    "name_with_separators_is_a_label": Case(lambda api: api.stored_verbatim("a\\b/c:d.wav"), OK),
    # metadata
    "metadata_with_sql_is_data": Case(lambda api: api.stored_verbatim("sql.wav", {"k": SQL, SQL: "v"}), OK),
    "metadata_value_of_1_mb": Case(lambda api: api.ingest_named("m.wav", {"k": "v" * 1_000_000}),
                                   INVALID, "INVALID_FIELD"),
    "metadata_of_65_entries": Case(lambda api: api.ingest_named("m.wav", {f"k{i}": "v" for i in range(65)}),
                                   INVALID, "INVALID_FIELD"),
    "metadata_with_empty_key": Case(lambda api: api.ingest_named("m.wav", {"": "v"}), INVALID, "INVALID_FIELD"),
    "metadata_value_with_nul": Case(lambda api: api.ingest_named("m.wav", {"k": "a\x00b"}), INVALID, "INVALID_FIELD"),
    "filter_with_sql_matches_nothing": Case(lambda api: no_matches(api.search(
        min_score=-1.0, filter=pb.AudioFilter(metadata={"k": "' OR '1'='1"}))), OK),
    # collections
    "ingest_into_unknown_collection": Case(lambda api: api.ingest("valid", collection="no_such_collection"),
                                           grpc.StatusCode.NOT_FOUND, "COLLECTION_NOT_FOUND"),
    "search_in_unknown_collection": Case(lambda api: api.search(collection="no_such_collection"),
                                         grpc.StatusCode.NOT_FOUND, "COLLECTION_NOT_FOUND"),
    "list_unknown_collection": Case(lambda api: api.client.ListAudio(pb.ListAudioRequest(
        collection="no_such_collection")), grpc.StatusCode.NOT_FOUND, "COLLECTION_NOT_FOUND"),
    "collection_name_with_sql": Case(lambda api: api.search(collection=SQL), INVALID, "INVALID_FIELD"),
    "collection_name_with_traversal": Case(lambda api: api.ingest("valid", collection="../hostile_target"),
                                           INVALID, "INVALID_FIELD"),
    "create_collection_named_in_capitals": Case(lambda api: api.client.CreateCollection(
        pb.CreateCollectionRequest(name="DROP_TABLE")), INVALID, "INVALID_FIELD"),
    # numbers
    "top_k_of_0_takes_the_default": Case(lambda api: api.search(top_k=0), OK),
    "top_k_of_a_billion": Case(lambda api: api.search(top_k=10**9), INVALID, "INVALID_FIELD"),
    "negative_top_k": Case(lambda api: api.search(top_k=-1), INVALID, "INVALID_FIELD"),
    "min_score_nan": Case(lambda api: api.search(min_score=float("nan")), INVALID, "INVALID_FIELD"),
    "min_score_of_5": Case(lambda api: api.search(min_score=5.0), INVALID, "INVALID_FIELD"),
    "tag_top_k_of_a_billion": Case(lambda api: api.client.TagAudio(pb.TagAudioRequest(
        audio_content=api.payloads["valid"], top_k=10**9)), INVALID, "INVALID_FIELD"),
    "page_size_of_a_billion": Case(lambda api: api.client.ListAudio(pb.ListAudioRequest(
        collection=TARGET, page_size=10**9)), INVALID, "INVALID_FIELD"),
    "forged_page_token": Case(lambda api: api.client.ListAudio(pb.ListAudioRequest(
        collection=TARGET, page_token="' OR 1=1 --")), INVALID, "INVALID_FIELD"),
    "audio_id_with_traversal": Case(lambda api: api.client.GetAudio(pb.GetAudioRequest(
        collection=TARGET, audio_id="../../" + "0" * 26)), INVALID, "INVALID_FIELD"),
    "unknown_audio_id": Case(lambda api: api.client.GetAudio(pb.GetAudioRequest(
        collection=TARGET, audio_id="0" * 32)), grpc.StatusCode.NOT_FOUND, "AUDIO_NOT_FOUND"),
    # streams
    "stream_without_messages": Case(lambda api: api.ingest_messages([]), INVALID, "INVALID_FIELD"),
    "stream_without_a_header": Case(lambda api: api.ingest_messages(
        ingest_messages(TARGET, "x.wav", api.payloads["valid"])[1:]), INVALID, "INVALID_FIELD"),
    "stream_with_two_headers": Case(lambda api: api.ingest_messages(
        [*ingest_messages(TARGET, "x.wav", api.payloads["valid"]), pb.IngestAudioRequest(
            header=pb.IngestAudioHeader(collection=TARGET, name="y.wav"))]), INVALID, "INVALID_FIELD"),
    "stream_with_a_header_only": Case(lambda api: api.ingest_messages(
        ingest_messages(TARGET, "x.wav", b"")), INVALID, "INVALID_AUDIO"),
    "stream_that_ends_mid_file": Case(lambda api: api.ingest_messages(ingest_messages(
        TARGET, "x.wav", api.payloads["valid"][: len(api.payloads["valid"]) // 2])), INVALID, "INVALID_AUDIO"),
    "stream_that_stalls_mid_file": Case(lambda api: api.stalled_upload(send_header=True, send_half=True),
                                        grpc.StatusCode.DEADLINE_EXCEEDED),
    "stream_that_never_sends_a_header": Case(lambda api: api.stalled_upload(send_header=False, send_half=False),
                                             grpc.StatusCode.DEADLINE_EXCEEDED),
    "stream_that_stalls_past_the_gateway_idle_limit": Case(
        lambda api: api.stalled_upload(send_header=True, send_half=True, client_timeout=45),
        grpc.StatusCode.DEADLINE_EXCEEDED, "UPLOAD_STALLED"),
}


# ------------------------------------------------------------------------------------------------------------- tests

@pytest.fixture(scope="module")
def channel(gateway_address):
    with grpc.insecure_channel(gateway_address) as channel:
        yield channel


@pytest.fixture(scope="module")
def internal_search(suite):
    address = next(plan.health_address for plan in suite.plans if plan.name == "search")
    with grpc.insecure_channel(address) as channel:
        yield search_pb2_grpc.VectorSearchServiceStub(channel)


def snapshot(api: Api, internal_search) -> dict[str, object]:
    """Everything a bad input could have changed: the collections, and each one's records and vectors."""
    collections = sorted(c.name for c in api.client.ListCollections(
        pb.ListCollectionsRequest(page_size=1000)).collections)
    state: dict[str, object] = {"collections": collections}
    for name in (TARGET, SCRATCH):
        records = sorted((r.id, r.name, tuple(sorted(r.metadata.items()))) for r in list_all(api.client, name))
        vectors = internal_search.CountSegments(spb.CountSegmentsRequest(collection=name)).count
        state[name] = (records, vectors)
    return state


@pytest.fixture(scope="module")
def api(channel, internal_search):
    api = Api(channel, build_payloads())
    ensure_collection(api.client, TARGET)
    ensure_collection(api.client, SCRATCH)
    seed = sounds.to_bytes(sounds.synth("siren", 4.0, seed=3))
    ingest(api.client, TARGET, "seed.wav", seed)
    api.before = snapshot(api, internal_search)
    return api


def test_the_corpus_is_large_enough():
    assert len(CORPUS) >= 40


@pytest.mark.parametrize("label", list(CORPUS))
def test_hostile_input_gets_the_right_status(api, label):
    case = CORPUS[label]
    if case.code == OK:
        case.call(api)
        return
    with pytest.raises(grpc.RpcError) as failure:
        case.call(api)
    assert failure.value.code() == case.code, failure.value.details()
    assert reason_of(failure.value) == case.reason, failure.value.details()
    if case.reason:
        assert failure.value.details()


def test_an_upload_cancelled_mid_file_stores_nothing(api):
    sent_half = threading.Event()
    release = threading.Event()
    data = api.payloads["valid"]

    def messages():
        yield pb.IngestAudioRequest(header=pb.IngestAudioHeader(collection=TARGET, name="cancelled.wav"))
        yield pb.IngestAudioRequest(chunk=data[: len(data) // 2])
        sent_half.set()
        release.wait(30)

    future = api.client.IngestAudio.future(messages(), timeout=30)
    try:
        assert sent_half.wait(10)
        assert future.cancel()
    finally:
        release.set()
    assert future.cancelled()


def test_the_stores_are_unchanged(api, internal_search):
    assert snapshot(api, internal_search) == api.before


def test_every_service_is_still_up_and_serving(suite, api):
    for plan, process in zip(suite.plans, suite.processes, strict=True):
        assert process.poll() is None, f"{plan.name} exited"
        assert is_healthy(plan.health_address), f"{plan.name} is not serving"
    # and the gateway still does its job: the stalled and cancelled uploads gave their ingest slots back
    reply = ingest(api.client, SCRATCH, "after.wav", sounds.to_bytes(sounds.synth("birds", 2.0, seed=77)))
    assert api.search(collection=SCRATCH, payload="valid", min_score=-1.0) is not None
    api.client.DeleteAudio(pb.DeleteAudioRequest(collection=SCRATCH, audio_id=reply.audio.id))
