"""`make weights`: fails fast and clearly offline; verifies what it downloads before keeping it."""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from audiosearch.embedder.engine import untrained_cnn14
from audiosearch.embedder.fetch_weights import SHA256_ENV, main
from audiosearch.embedder.settings import EmbedderSettings


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(served))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()


def test_an_unreachable_host_fails_within_seconds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()

    code = main(
        ["--output", str(tmp_path / "w.pth"), "--url", "https://weights.invalid/cnn14.pth", "--timeout", "5"]
    )

    assert code == 1
    assert time.monotonic() - started < 15
    assert "could not fetch the Cnn14 checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "w.pth").exists()


def test_a_downloaded_checkpoint_is_verified_then_kept(tmp_path: Path, file_server: tuple[str, Path]) -> None:
    url, served = file_server
    torch.save({"model": untrained_cnn14(0).state_dict()}, served / "cnn14.pth")
    sha256 = hashlib.sha256((served / "cnn14.pth").read_bytes()).hexdigest()
    output = tmp_path / "models" / "cnn14.pth"

    assert main(["--output", str(output), "--url", f"{url}/cnn14.pth", "--sha256", sha256]) == 0
    assert hashlib.sha256(output.read_bytes()).hexdigest() == sha256
    assert main(["--output", str(output), "--url", f"{url}/absent"]) == 0  # already present: no download


def test_a_download_with_the_wrong_sha256_is_not_kept(tmp_path: Path, file_server: tuple[str, Path]) -> None:
    url, served = file_server
    torch.save({"model": untrained_cnn14(0).state_dict()}, served / "cnn14.pth")
    output = tmp_path / "cnn14.pth"

    assert main(["--output", str(output), "--url", f"{url}/cnn14.pth", "--sha256", "0" * 64]) == 1
    assert not output.exists()
    assert not output.with_name("cnn14.pth.part").exists()


def test_the_embedders_pin_applies_to_a_file_already_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    output = tmp_path / "cnn14.pth"
    torch.save({"model": untrained_cnn14(0).state_dict()}, output)
    sha256 = hashlib.sha256(output.read_bytes()).hexdigest()
    assert "checkpoint_sha256" in EmbedderSettings.model_fields
    assert EmbedderSettings.model_config["env_prefix"] + "CHECKPOINT_SHA256" == SHA256_ENV

    monkeypatch.setenv(SHA256_ENV, "0" * 64)
    assert main(["--output", str(output), "--url", "http://127.0.0.1:9/absent"]) == 1
    monkeypatch.setenv(SHA256_ENV, sha256)
    assert main(["--output", str(output), "--url", "http://127.0.0.1:9/absent"]) == 0
