"""Download the PANNs Cnn14 checkpoint (`make weights`).

    python -m audiosearch.embedder.fetch_weights --output var/models/Cnn14_mAP=0.431.pth [--sha256 HEX]

`--sha256` defaults to $EMBEDDER_CHECKPOINT_SHA256, the setting with which the embedder pins its checkpoint.

Fails within seconds, with a clear message, when the network is unreachable. The file is written under a
temporary name and only moved into place once its length, optional sha256 and Cnn14 layout are verified.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import socket
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from audiosearch.common.logs import configure_logging
from audiosearch.embedder.checkpoint import CheckpointError, verify_checkpoint

CHECKPOINT_URL = "https://zenodo.org/record/3987831/files/Cnn14_mAP%3D0.431.pth?download=1"
CONNECT_TIMEOUT_SECONDS = 10.0
SHA256_ENV = "EMBEDDER_CHECKPOINT_SHA256"  # the embedder's pin, so the init container and the server agree
_CHUNK = 1 << 20
_PROGRESS_EVERY = 32 << 20

LOG = logging.getLogger("audiosearch.embedder.fetch_weights")


class DownloadError(Exception):
    pass


def resolve_host(url: str, timeout_seconds: float) -> None:
    """Resolve the URL's host within the timeout: a socket timeout does not bound name resolution."""
    host = urlsplit(url).hostname or ""
    outcome: list[BaseException | None] = []

    def lookup() -> None:
        try:
            socket.getaddrinfo(host, 443)
            outcome.append(None)
        except OSError as error:
            outcome.append(error)

    worker = threading.Thread(target=lookup, daemon=True)
    worker.start()
    worker.join(timeout_seconds)
    if not outcome:
        raise DownloadError(f"cannot resolve {host} within {timeout_seconds:g} s (no network?)")
    if outcome[0] is not None:
        raise DownloadError(f"cannot resolve {host}: {outcome[0]} (no network?)")


def download(url: str, destination: Path, timeout_seconds: float) -> str:
    """Stream `url` into `destination`; returns the sha256 of what was written."""
    resolve_host(url, timeout_seconds)
    request = urllib.request.Request(url, headers={"User-Agent": "audiosearch-fetch-weights"})  # noqa: S310
    digest = hashlib.sha256()
    written = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout_seconds) as response:  # noqa: S310
            expected_length = int(response.headers.get("Content-Length") or 0)
            with destination.open("wb") as out:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    written += len(chunk)
                    if written % _PROGRESS_EVERY < _CHUNK:
                        LOG.info("downloading", extra={"bytes": written, "of": expected_length})
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise DownloadError(f"download of {url} failed: {error}") from error
    if expected_length and written != expected_length:
        raise DownloadError(f"download truncated: {written} of {expected_length} bytes")
    return digest.hexdigest()


def fetch(url: str, output: Path, expected_sha256: str | None, timeout_seconds: float) -> Path:
    if output.exists():
        verified = verify_checkpoint(output, expected_sha256)
        LOG.info("checkpoint already present", extra={"path": str(output), "sha256": verified.sha256})
        return output
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".part")
    try:
        sha256 = download(url, partial, timeout_seconds)
        if expected_sha256 and sha256 != expected_sha256.lower():
            raise DownloadError(f"downloaded file has sha256 {sha256}, expected {expected_sha256.lower()}")
        verify_checkpoint(partial, expected_sha256)
        partial.rename(output)
    finally:
        partial.unlink(missing_ok=True)
    LOG.info("checkpoint saved", extra={"path": str(output), "sha256": sha256})
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--url", default=CHECKPOINT_URL)
    parser.add_argument(
        "--sha256",
        default=os.environ.get(SHA256_ENV) or None,
        help=f"expected sha256 of the file, checked when given (default: ${SHA256_ENV}, the embedder's own pin)",
    )
    parser.add_argument("--timeout", type=float, default=CONNECT_TIMEOUT_SECONDS, help="seconds; at most 15")
    args = parser.parse_args(argv)
    configure_logging("embedder")
    try:
        fetch(args.url, args.output, args.sha256, min(args.timeout, 15.0))
    except (DownloadError, CheckpointError) as error:
        LOG.error(
            "could not fetch the Cnn14 checkpoint: %s. Without network access, download %s elsewhere and "
            "place it at %s (or point EMBEDDER_CHECKPOINT_PATH at it).",
            error,
            args.url,
            args.output,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
