"""The blob stores behind one interface: a local directory, and S3-compatible storage (a moto S3 server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from audiosearch.common.ports import free_port
from audiosearch.gateway.backends.blobs import (
    BlobNotFoundError,
    LocalBlobStore,
    S3BlobStore,
    blob_key,
    media_type,
    open_blob_store,
)

ID_A, ID_B = "a" * 32, "b" * 32


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    moto_server = pytest.importorskip("moto.server")
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def s3_store(endpoint: str, bucket: str, prefix: str = "") -> S3BlobStore:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                          aws_secret_access_key="test")
    client.create_bucket(Bucket=bucket)
    return S3BlobStore(bucket, prefix, client=client)


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path: Path):
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    endpoint = request.getfixturevalue("s3_endpoint")
    return s3_store(endpoint, f"bucket-{request.node.name.split('[')[0].replace('_', '-')[:40]}", "originals")


def test_put_then_get_returns_the_same_bytes(store):
    data = bytes(range(256)) * 4000
    store.put(blob_key("library", ID_A), data)
    assert store.exists(blob_key("library", ID_A))
    assert store.get(blob_key("library", ID_A)) == data
    assert store.size(blob_key("library", ID_A)) == len(data)
    assert b"".join(store.chunks(blob_key("library", ID_A), 10_000)) == data
    assert max(len(chunk) for chunk in store.chunks(blob_key("library", ID_A), 10_000)) <= 10_000


def test_a_missing_blob_is_reported_as_such(store):
    assert not store.exists(blob_key("library", ID_B))
    with pytest.raises(BlobNotFoundError):
        store.get(blob_key("library", ID_B))
    with pytest.raises(BlobNotFoundError):
        list(store.chunks(blob_key("library", ID_B)))
    with pytest.raises(BlobNotFoundError):
        store.size(blob_key("library", ID_B))


def test_delete_is_idempotent_and_delete_prefix_empties_a_collection(store):
    store.put(blob_key("one", ID_A), b"a")
    store.put(blob_key("one", ID_B), b"b")
    store.put(blob_key("two", ID_A), b"c")
    store.delete(blob_key("one", ID_A))
    store.delete(blob_key("one", ID_A))
    assert not store.exists(blob_key("one", ID_A))
    store.delete_prefix("one")
    assert not store.exists(blob_key("one", ID_B))
    assert store.get(blob_key("two", ID_A)) == b"c"


@pytest.mark.parametrize("key", ["../etc/passwd", "library/../x", "Library/" + ID_A, "library/not-an-id", ""])
def test_keys_outside_the_layout_are_refused(store, key):
    with pytest.raises(ValueError, match="invalid blob key"):
        store.put(key, b"x")


def test_a_local_put_leaves_no_temporary_files(tmp_path):
    store = LocalBlobStore(tmp_path)
    store.put(blob_key("library", ID_A), b"first")
    store.put(blob_key("library", ID_A), b"second")
    assert [path.name for path in (tmp_path / "library").iterdir()] == [ID_A]
    assert store.get(blob_key("library", ID_A)) == b"second"


def test_the_uri_picks_the_store(tmp_path, s3_endpoint):
    assert open_blob_store("") is None
    local = open_blob_store(f"file://{tmp_path}/originals")
    assert isinstance(local, LocalBlobStore)
    assert local.root == tmp_path / "originals"
    s3_store(s3_endpoint, "configured")
    remote = open_blob_store("s3://configured/some/prefix", s3_endpoint=s3_endpoint, s3_region="us-east-1",
                             s3_access_key_id="test", s3_secret_access_key="test")
    assert isinstance(remote, S3BlobStore)
    remote.put(blob_key("library", ID_A), b"bytes")
    assert remote.get(blob_key("library", ID_A)) == b"bytes"
    with pytest.raises(ValueError, match="neither"):
        open_blob_store("ftp://somewhere")


@pytest.mark.parametrize(("codec", "expected"), [
    ("wav/pcm_16", "audio/wav"), ("mp3/mp3", "audio/mpeg"), ("mov/aac", "audio/mp4"), ("ogg/opus", "audio/ogg"),
    ("matroska/opus", "audio/webm"), ("flac/pcm_16", "audio/flac"), ("strange/thing", "application/octet-stream"),
])
def test_media_types_follow_the_container(codec, expected):
    assert media_type(codec) == expected
