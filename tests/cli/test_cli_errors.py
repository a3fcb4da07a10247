"""Error extraction and exit codes, without a gateway."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from audiosearch.cli import main as cli
from audiosearch.cli.client import GatewayError, GatewayUnreachableError, convert_error, format_error
from audiosearch.common.errors import build_status, error_info

REPO = Path(__file__).resolve().parents[2]


class FakeRpcError(grpc.RpcError):
    """What a failed call raises: code, details and trailing metadata (with a rich status when given)."""

    def __init__(self, code: grpc.StatusCode, message: str, reason: str | None = None) -> None:
        self._code, self._message = code, message
        self._metadata: tuple[tuple[str, bytes], ...] = ()
        if reason is not None:
            self._metadata = build_status(code, message, reason, {"k": "v"}).trailing_metadata

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._message

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return self._metadata


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_format_error() -> None:
    assert format_error("NOT_FOUND", "COLLECTION_NOT_FOUND", "no such collection") == (
        "NOT_FOUND COLLECTION_NOT_FOUND: no such collection"
    )
    assert format_error("INTERNAL", None, "boom") == "INTERNAL: boom"
    assert str(GatewayError("NOT_FOUND", "AUDIO_NOT_FOUND", "gone")) == "NOT_FOUND AUDIO_NOT_FOUND: gone"


def test_error_info_is_read_from_the_rich_status() -> None:
    error = FakeRpcError(grpc.StatusCode.NOT_FOUND, "collection 'x' does not exist", "COLLECTION_NOT_FOUND")
    info = error_info(error)
    assert info is not None
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "COLLECTION_NOT_FOUND",
        "audiosearch.dev",
        {"k": "v"},
    )
    converted = convert_error(error, "h:1")
    assert isinstance(converted, GatewayError)
    assert (converted.code, converted.reason, converted.metadata) == (
        "NOT_FOUND",
        "COLLECTION_NOT_FOUND",
        {"k": "v"},
    )


def test_a_rich_status_that_disagrees_with_the_call_carries_no_reason() -> None:
    error = FakeRpcError(grpc.StatusCode.INTERNAL, "boom")
    error._metadata = build_status(grpc.StatusCode.NOT_FOUND, "other", "AUDIO_NOT_FOUND").trailing_metadata
    assert error_info(error) is None
    converted = convert_error(error, "h:1")
    assert isinstance(converted, GatewayError)
    assert (converted.code, converted.reason) == ("INTERNAL", None)


def test_plain_statuses_and_transport_failures() -> None:
    plain = convert_error(FakeRpcError(grpc.StatusCode.INTERNAL, "boom"), "h:1")
    assert isinstance(plain, GatewayError)
    assert (plain.code, plain.reason) == ("INTERNAL", None)
    down = convert_error(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "failed to connect"), "h:1")
    assert isinstance(down, GatewayUnreachableError)
    refused = convert_error(
        FakeRpcError(grpc.StatusCode.UNAVAILABLE, "embedder down", "DEPENDENCY_UNAVAILABLE"), "h:1"
    )
    assert isinstance(refused, GatewayError)
    assert refused.reason == "DEPENDENCY_UNAVAILABLE"


@pytest.mark.parametrize(
    ("exception", "code", "text"),
    [
        (
            GatewayError("NOT_FOUND", "COLLECTION_NOT_FOUND", "no such collection"),
            2,
            "error: NOT_FOUND COLLECTION_NOT_FOUND: no such collection",
        ),
        (GatewayError("DEADLINE_EXCEEDED", None, "Deadline Exceeded"), 2, "raise --timeout"),
        (GatewayUnreachableError("h:1", "connection failed"), 3, "is the gateway running?"),
    ],
)
def test_failures_map_to_exit_codes(
    exception: Exception, code: int, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def handler(_args: object) -> int:
        raise exception

    args = cli.parse_args(["stats"])
    args.handler = handler
    assert cli.run(args) == code
    captured = capsys.readouterr()
    assert text in captured.err
    assert captured.err.startswith("error: ")
    assert captured.out == ""


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "clip.wav"
    path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    return path


@pytest.mark.parametrize(
    "command",
    [
        ["stats"],
        ["search", "{clip}"],
        ["ingest", "{clip}"],
        ["collections", "list"],
        ["list", "--all"],
        ["tag", "{clip}"],
        ["calibrate"],
    ],
    ids=lambda c: c[0] if len(c) == 1 or c[0] != "collections" else " ".join(c),
)
def test_unreachable_gateway_exits_3_fast(
    command: list[str], clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"127.0.0.1:{closed_port()}"
    argv = [part.format(clip=clip) for part in command]
    started = time.monotonic()
    assert cli.main([*argv, "--gateway", address]) == 3
    assert time.monotonic() - started < 3.0
    err = capsys.readouterr().err
    assert f"cannot reach the gateway at {address}" in err
    assert "is the gateway running? set --gateway or AUDIOSEARCH_GATEWAY" in err


def test_unreachable_gateway_from_the_environment_as_a_subprocess() -> None:
    env = {**os.environ, "AUDIOSEARCH_GATEWAY": f"127.0.0.1:{closed_port()}"}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), env.get("PYTHONPATH", "")]
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "audiosearch.cli.main", "--json", "stats"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    assert time.monotonic() - started < 10.0
    assert "is the gateway running?" in result.stderr
    assert result.stdout == ""


def test_ingest_of_nothing_never_contacts_the_gateway(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("text")
    gateway = ["--gateway", f"127.0.0.1:{closed_port()}"]
    assert cli.main(["ingest", str(tmp_path), *gateway]) == 1
    assert "no audio files found" in capsys.readouterr().err
    assert cli.main(["ingest", str(tmp_path / "missing.wav"), "--json", *gateway]) == 1
    captured = capsys.readouterr()
    assert '"reason": "FILE_NOT_FOUND"' in captured.out


def test_unreadable_query_clip_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["search", str(tmp_path / "missing.wav"), "--gateway", f"127.0.0.1:{closed_port()}"]) == 2
    assert "error: cannot read" in capsys.readouterr().err
