import threading
import time

import grpc
import pytest

from audiosearch.common.errors import DeadlineExceeded, InvalidArgument
from audiosearch.gateway.ingest.uploads import read_upload, within_idle_limit
from audiosearch.v1 import audiosearch_pb2 as pb


def header(name: str = "a.wav") -> pb.IngestAudioRequest:
    return pb.IngestAudioRequest(header=pb.IngestAudioHeader(collection="library", name=name))


def test_a_prompt_stream_passes_through_in_order():
    messages = [header(), pb.IngestAudioRequest(chunk=b"ab"), pb.IngestAudioRequest(chunk=b"cd")]
    got_header, data = read_upload(within_idle_limit(iter(messages), idle_seconds=2.0), max_bytes=10)
    assert got_header.name == "a.wav"
    assert data == b"abcd"


def test_a_stream_that_goes_quiet_ends_with_upload_stalled():
    release = threading.Event()

    def stalling():
        yield header()
        yield pb.IngestAudioRequest(chunk=b"ab")
        release.wait(10)

    started = time.monotonic()
    with pytest.raises(DeadlineExceeded) as raised:
        read_upload(within_idle_limit(stalling(), idle_seconds=0.3), max_bytes=10)
    release.set()
    assert raised.value.reason == "UPLOAD_STALLED"
    assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 5


def test_time_spent_by_the_consumer_does_not_count_as_idle():
    received = []
    for message in within_idle_limit(iter([header(), pb.IngestAudioRequest(chunk=b"x")]), idle_seconds=0.2):
        received.append(message)
        time.sleep(0.4)  # the server busy with the previous file
    assert len(received) == 2


def test_an_error_of_the_stream_reaches_the_consumer():
    def failing():
        yield header()
        raise RuntimeError("stream broke")

    with pytest.raises(RuntimeError, match="stream broke"):
        list(within_idle_limit(failing(), idle_seconds=1.0))


def test_the_reader_stops_when_the_consumer_gives_up_early():
    sent = []

    def endless():
        while True:
            sent.append(1)
            yield pb.IngestAudioRequest(chunk=b"0123456789")

    with pytest.raises(InvalidArgument):
        read_upload(within_idle_limit(endless(), idle_seconds=1.0), max_bytes=10)  # no header first
    time.sleep(1.2)
    count = len(sent)
    time.sleep(0.6)
    assert len(sent) == count  # the reader thread is no longer pulling
