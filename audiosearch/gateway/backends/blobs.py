"""Originals kept for playback: one blob per recording under `<collection>/<audio id>`.

`GATEWAY_BLOB_URI` picks the store: `file:///path` (a local directory), `s3://bucket/prefix` (any S3-compatible
storage, with `GATEWAY_S3_*` for the endpoint and credentials), or empty for none. The ingest flow writes the blob
before a record becomes READY and the delete flow removes it, so a READY record always has its blob while blobs
are on (see records.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

CHUNK_BYTES = 256 * 1024
_KEY = re.compile(r"^[a-z][a-z0-9_]{0,62}(/[0-9a-f]{32})?/?$")

# The first part of a record's codec ("wav/pcm_16", "mp3/mp3", "mov/aac", ...) -> a media type browsers know.
_MEDIA_TYPES = {
    "wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg", "mp3": "audio/mpeg", "mov": "audio/mp4",
    "mp4": "audio/mp4", "m4a": "audio/mp4", "aac": "audio/aac", "aiff": "audio/aiff", "matroska": "audio/webm",
    "webm": "audio/webm", "wv": "audio/x-wavpack", "caf": "audio/x-caf",
}


def blob_key(collection: str, audio_id: str) -> str:
    return f"{collection}/{audio_id}"


def media_type(codec: str) -> str:
    return _MEDIA_TYPES.get(codec.split("/", 1)[0].lower(), "application/octet-stream")


class BlobNotFoundError(KeyError):
    """The blob is not in the store."""


class BlobStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def chunks(self, key: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]: ...

    def size(self, key: str) -> int: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def delete_prefix(self, prefix: str) -> None: ...


def _checked(key: str) -> str:
    """Keys are built from validated collection names and ids; anything else (`..`, `/`) is refused."""
    if not _KEY.match(key):
        raise ValueError(f"invalid blob key {key!r}")
    return key


class LocalBlobStore:
    """A directory; writes go to a temporary file renamed into place, so a blob is whole or absent."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / _checked(key)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as error:
            raise BlobNotFoundError(key) from error

    def chunks(self, key: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        try:
            file = self._path(key).open("rb")
        except FileNotFoundError as error:
            raise BlobNotFoundError(key) from error
        with file:
            while chunk := file.read(chunk_bytes):
                yield chunk

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError as error:
            raise BlobNotFoundError(key) from error

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def delete_prefix(self, prefix: str) -> None:
        folder = self._path(prefix.rstrip("/"))
        if folder.is_dir():
            for path in folder.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            with contextlib.suppress(OSError):
                folder.rmdir()


class S3BlobStore:
    """A bucket (and key prefix) of any S3-compatible storage; boto3 is an optional dependency (`[s3]`)."""

    def __init__(self, bucket: str, prefix: str = "", client: Any = None, **client_options: Any) -> None:
        if client is None:
            import boto3

            client = boto3.client("s3", **{k: v for k, v in client_options.items() if v})
        self._client = client
        self._bucket = bucket
        self._prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def _key(self, key: str) -> str:
        return self._prefix + _checked(key)

    def _is_missing(self, error: Exception) -> bool:
        code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
        return code in ("404", "NoSuchKey", "NotFound")

    def put(self, key: str, data: bytes) -> None:
        self._client.put_object(Bucket=self._bucket, Key=self._key(key), Body=data)

    def _body(self, key: str) -> Any:
        try:
            return self._client.get_object(Bucket=self._bucket, Key=self._key(key))["Body"]
        except self._client.exceptions.ClientError as error:
            if self._is_missing(error):
                raise BlobNotFoundError(key) from error
            raise

    def get(self, key: str) -> bytes:
        return self._body(key).read()

    def chunks(self, key: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        body = self._body(key)
        try:
            yield from body.iter_chunks(chunk_bytes)
        finally:
            body.close()

    def size(self, key: str) -> int:
        try:
            return int(self._client.head_object(Bucket=self._bucket, Key=self._key(key))["ContentLength"])
        except self._client.exceptions.ClientError as error:
            if self._is_missing(error):
                raise BlobNotFoundError(key) from error
            raise

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except BlobNotFoundError:
            return False
        return True

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self._bucket, Key=self._key(key))

    def delete_prefix(self, prefix: str) -> None:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=self._prefix + _checked(prefix.rstrip("/")) + "/")
        for page in pages:
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self._client.delete_objects(Bucket=self._bucket, Delete={"Objects": keys, "Quiet": True})


def open_blob_store(uri: str, *, s3_endpoint: str = "", s3_region: str = "", s3_access_key_id: str = "",
                    s3_secret_access_key: str = "") -> BlobStore | None:
    """The store a `GATEWAY_BLOB_URI` names; None when it is empty (blobs off)."""
    if not uri:
        return None
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return LocalBlobStore(Path(parsed.path))
    if parsed.scheme == "s3" and parsed.netloc:
        return S3BlobStore(parsed.netloc, parsed.path, endpoint_url=s3_endpoint, region_name=s3_region,
                           aws_access_key_id=s3_access_key_id, aws_secret_access_key=s3_secret_access_key)
    raise ValueError(f"blob URI {uri!r} is neither file:///path nor s3://bucket/prefix")
