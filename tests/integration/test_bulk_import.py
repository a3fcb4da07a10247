"""Bulk import through the public API: a client stream of many files, and a server-side directory import."""

from __future__ import annotations

import json
import os
from pathlib import Path

import grpc
import pytest

from audiosearch.common.errors import reason_of
from audiosearch.v1 import audiosearch_pb2 as pb
from devtools.support import sounds
from devtools.support.gateway import CHUNK, ensure_collection, list_all

GARBAGE = b"this is not audio at all, just text pretending" * 40


def wav(index: int, seconds: float = 3.0) -> bytes:
    """A distinct sound per index (the gain differs too, so no two indexes give the same bytes)."""
    kind = sounds.KINDS[index % len(sounds.KINDS)]
    return sounds.to_bytes(sounds.synth(kind, seconds=seconds, seed=1000 + index) * (1.0 - index / 200))


def import_messages(collection: str, files: list[tuple[str, bytes]], metadata: dict[str, str] | None = None
                    ) -> list[pb.ImportAudioRequest]:
    messages = [pb.ImportAudioRequest(header=pb.ImportAudioHeader(collection=collection, metadata=metadata or {}))]
    for name, data in files:
        messages.append(pb.ImportAudioRequest(file=pb.ImportFileHeader(name=name, metadata={"n": name})))
        messages.extend(pb.ImportAudioRequest(chunk=data[i : i + CHUNK]) for i in range(0, len(data), CHUNK))
        messages.append(pb.ImportAudioRequest(file_end=pb.ImportFileEnd()))
    return messages


def events(responses) -> tuple[list[pb.ImportFileResult], list[pb.ImportProgress], list[pb.ImportProgress]]:
    files, progress, summaries = [], [], []
    for response in responses:
        kind = response.WhichOneof("event")
        {"file": files, "progress": progress, "summary": summaries}[kind].append(getattr(response, kind))
    return files, progress, summaries


def expect_error(call, code, reason):
    with pytest.raises(grpc.RpcError) as failure:
        call()
    assert failure.value.code() == code, failure.value.details()
    assert reason_of(failure.value) == reason, failure.value.details()
    return failure.value


def test_a_stream_of_ten_files_with_two_bad_ones_ingests_eight_and_reports_two(client):
    ensure_collection(client, "bulk_stream")
    files = [(f"sound{i}.wav", wav(i)) for i in range(10)]
    files[3] = ("garbage.wav", GARBAGE)
    files[7] = ("truncated.wav", wav(7)[:2000])

    results, _, summaries = events(client.ImportAudio(iter(import_messages("bulk_stream", files, {"batch": "b1"})),
                                                      timeout=600))

    assert sorted(result.index for result in results) == list(range(10))
    failed = {result.name: result.error for result in results if result.WhichOneof("outcome") == "error"}
    assert set(failed) == {"garbage.wav", "truncated.wav"}
    assert all(error.code == "INVALID_ARGUMENT" and error.reason == "INVALID_AUDIO" for error in failed.values())
    ingested = [result for result in results if result.WhichOneof("outcome") == "audio"]
    assert len(ingested) == 8
    assert all(result.audio.status == pb.AUDIO_STATUS_READY for result in ingested)
    assert ingested[0].audio.metadata["batch"] == "b1"
    assert ingested[0].audio.metadata["n"] == ingested[0].name
    summary = summaries[-1]
    assert (summary.files_done, summary.files_ingested, summary.errors) == (10, 8, 2)
    assert summary.audio_seconds == pytest.approx(8 * 3.0, abs=0.1)
    assert summary.audio_seconds_per_second > 0
    assert len(list_all(client, "bulk_stream")) == 8


def test_the_same_bytes_twice_in_one_stream_are_stored_once(client):
    ensure_collection(client, "bulk_twice")
    data = wav(42)
    results, _, summaries = events(client.ImportAudio(
        iter(import_messages("bulk_twice", [("a.wav", data), ("b.wav", data)])), timeout=600))

    assert [result.WhichOneof("outcome") for result in results] == ["audio", "audio"]
    assert sorted(result.already_existed for result in results) == [False, True]
    assert results[0].audio.id == results[1].audio.id
    assert (summaries[-1].files_ingested, summaries[-1].files_already_existed) == (1, 1)


def test_a_stream_that_breaks_the_protocol_is_refused(client):
    ensure_collection(client, "bulk_stream")
    header = pb.ImportAudioRequest(header=pb.ImportAudioHeader(collection="bulk_stream"))
    stray_chunk = pb.ImportAudioRequest(chunk=b"abc")

    expect_error(lambda: list(client.ImportAudio(iter([header, stray_chunk]), timeout=60)),
                 grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")
    expect_error(lambda: list(client.ImportAudio(iter([stray_chunk]), timeout=60)),
                 grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")


def test_an_import_into_a_missing_collection_is_refused(client):
    expect_error(lambda: list(client.ImportAudio(iter(import_messages("bulk_nowhere", [("a.wav", wav(1))])),
                                                 timeout=60)),
                 grpc.StatusCode.NOT_FOUND, "COLLECTION_NOT_FOUND")


@pytest.fixture(scope="module")
def sound_tree(import_root: Path, tmp_path_factory) -> Path:
    """lib/ with two good files, one bad, a text file, a subfolder and a link that leaves the root."""
    outside = tmp_path_factory.mktemp("outside-the-root")
    (outside / "secret.wav").write_bytes(wav(90))
    lib = import_root / "lib"
    (lib / "sub").mkdir(parents=True)
    (lib / "one.wav").write_bytes(wav(20))
    (lib / "broken.wav").write_bytes(GARBAGE)
    (lib / "readme.txt").write_text("not audio")
    (lib / "sub" / "two.flac").write_bytes(sounds.to_bytes(sounds.synth("birds", 3.0, seed=21), fmt="FLAC"))
    (lib / "escape.wav").symlink_to(outside / "secret.wav")
    (import_root / "outside-link").symlink_to(outside, target_is_directory=True)
    return lib


def test_a_directory_is_imported_recursively_and_bad_files_are_reported(client, sound_tree):
    ensure_collection(client, "bulk_dir")

    results, _, summaries = events(client.ImportDirectory(pb.ImportDirectoryRequest(
        collection="bulk_dir", path="lib", recursive=True, metadata={"source": "tree"}), timeout=600))

    outcomes = {result.name: result for result in results}
    assert set(outcomes) == {"one.wav", "broken.wav", os.path.join("sub", "two.flac"), "escape.wav"}
    assert outcomes["broken.wav"].error.reason == "INVALID_AUDIO"
    assert outcomes["escape.wav"].error.code == "PERMISSION_DENIED"
    assert outcomes["escape.wav"].error.reason == "PATH_NOT_ALLOWED"
    two = outcomes[os.path.join("sub", "two.flac")].audio
    assert two.name == "two.flac"
    assert two.metadata["path"] == os.path.join("lib", "sub", "two.flac")
    assert two.metadata["source"] == "tree"
    summary = summaries[-1]
    assert (summary.files_total, summary.files_done, summary.files_ingested, summary.errors) == (4, 4, 2, 2)
    assert sorted(record.name for record in list_all(client, "bulk_dir")) == ["one.wav", "two.flac"]


def test_a_directory_import_without_recursion_stays_at_the_top(client, sound_tree):
    ensure_collection(client, "bulk_flat")

    results, _, _ = events(client.ImportDirectory(pb.ImportDirectoryRequest(
        collection="bulk_flat", path="lib", recursive=False), timeout=600))

    assert sorted(result.name for result in results) == ["broken.wav", "escape.wav", "one.wav"]


@pytest.mark.parametrize("path", ["..", "lib/../..", "/etc", "outside-link", "lib/../outside-link"])
def test_paths_that_leave_the_import_root_are_refused(client, sound_tree, path):
    ensure_collection(client, "bulk_dir")

    error = expect_error(lambda: list(client.ImportDirectory(
        pb.ImportDirectoryRequest(collection="bulk_dir", path=path), timeout=60)),
        grpc.StatusCode.PERMISSION_DENIED, "PATH_NOT_ALLOWED")
    assert "root" in error.details()


def test_a_missing_directory_is_not_found(client, sound_tree):
    ensure_collection(client, "bulk_dir")

    expect_error(lambda: list(client.ImportDirectory(
        pb.ImportDirectoryRequest(collection="bulk_dir", path="no/such/folder"), timeout=60)),
        grpc.StatusCode.NOT_FOUND, "PATH_NOT_FOUND")


def test_the_cli_imports_a_directory_on_the_gateway_side(gateway_address, client, sound_tree, capsys):
    from audiosearch.cli.main import main

    ensure_collection(client, "bulk_cli")

    code = main(["--gateway", gateway_address, "--collection", "bulk_cli", "import-dir", "lib", "--json"])

    report = json.loads(capsys.readouterr().out)
    assert code == 1  # two files of the tree are bad
    assert (report["summary"]["ingested"], report["summary"]["failed"]) == (2, 2)
    assert {entry["name"] for entry in report["files"] if "error" in entry} == {"broken.wav", "escape.wav"}
