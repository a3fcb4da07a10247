"""Bulk import without servers: import-root resolution, the file assembler of ImportAudio streams, the run loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiosearch.common.errors import InvalidArgument, NotFound, PermissionDenied
from audiosearch.gateway.ingest.bulk import (
    ImportFile,
    Refused,
    _ImportRun,
    _stream_files,
    import_roots,
    read_inside,
    resolve_import_path,
    walk_audio,
)
from audiosearch.v1 import audiosearch_pb2 as pb


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "lib" / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "lib" / "a.wav").write_bytes(b"a")
    (root / "lib" / "sub" / "b.ogg").write_bytes(b"b")
    (root / "lib" / "notes.txt").write_text("x")
    (root / "lib" / ".hidden.wav").write_bytes(b"h")
    (outside / "secret.wav").write_bytes(b"s")
    (root / "lib" / "leak.wav").symlink_to(outside / "secret.wav")
    (root / "away").symlink_to(outside, target_is_directory=True)
    return root, outside


def test_paths_resolve_inside_a_root(tree):
    root, _ = tree
    roots = import_roots(f"{tree[1]}/nowhere:{root}")

    assert resolve_import_path(roots, "lib") == (root, root / "lib")
    assert resolve_import_path(roots, str(root / "lib" / "sub")) == (root, root / "lib" / "sub")
    assert resolve_import_path(roots, "lib/sub/..") == (root, root / "lib")


@pytest.mark.parametrize("path", ["..", "../outside", "lib/../../outside", "/etc", "away", "away/"])
def test_paths_out_of_the_roots_are_refused(tree, path):
    with pytest.raises(PermissionDenied) as refused:
        resolve_import_path(import_roots(str(tree[0])), path)
    assert refused.value.reason == "PATH_NOT_ALLOWED"


def test_no_roots_means_no_server_side_import(tree):
    with pytest.raises(PermissionDenied):
        resolve_import_path(import_roots(""), "lib")


def test_a_missing_directory_or_a_file_is_not_found(tree):
    roots = import_roots(str(tree[0]))
    with pytest.raises(NotFound):
        resolve_import_path(roots, "nope")
    with pytest.raises(NotFound):
        resolve_import_path(roots, "lib/a.wav")


def test_the_walk_finds_audio_only_and_skips_hidden_files(tree):
    root, _ = tree
    found = sorted(str(path.relative_to(root)) for path in walk_audio(root, root / "lib", recursive=True))
    flat = sorted(str(path.relative_to(root)) for path in walk_audio(root, root / "lib", recursive=False))

    assert found == ["lib/a.wav", "lib/leak.wav", "lib/sub/b.ogg"]
    assert flat == ["lib/a.wav", "lib/leak.wav"]


def test_a_file_linking_out_of_the_root_is_not_read(tree):
    root, _ = tree
    assert read_inside(root, root / "lib" / "a.wav", 100) == b"a"
    with pytest.raises(PermissionDenied):
        read_inside(root, root / "lib" / "leak.wav", 100)
    with pytest.raises(InvalidArgument):
        read_inside(root, root / "lib" / "a.wav", 0)


def stream(*files: tuple[str, list[bytes]]) -> list[pb.ImportAudioRequest]:
    messages = []
    for name, chunks in files:
        messages.append(pb.ImportAudioRequest(file=pb.ImportFileHeader(name=name)))
        messages += [pb.ImportAudioRequest(chunk=chunk) for chunk in chunks]
        messages.append(pb.ImportAudioRequest(file_end=pb.ImportFileEnd()))
    return messages


def test_the_assembler_yields_each_file_and_refuses_one_over_the_limit():
    items = list(_stream_files(iter(stream(("a.wav", [b"12", b"34"]), ("big.wav", [b"123456"]),
                                           ("", [b"x"]))), {"k": "v"}, max_bytes=5))

    assert isinstance(items[0], ImportFile)
    assert items[0].read() == b"1234"
    assert items[0].metadata == {"k": "v"}
    assert isinstance(items[1], Refused)
    assert items[1].error.reason == "AUDIO_TOO_LARGE"
    assert isinstance(items[2], Refused)
    assert items[2].error.code == "INVALID_ARGUMENT"
    assert [item.index for item in items] == [0, 1, 2]


@pytest.mark.parametrize("messages", [
    [pb.ImportAudioRequest(chunk=b"x")],
    [pb.ImportAudioRequest(file_end=pb.ImportFileEnd())],
    [pb.ImportAudioRequest(file=pb.ImportFileHeader(name="a")), pb.ImportAudioRequest(file=pb.ImportFileHeader(
        name="b"))],
    [pb.ImportAudioRequest(file=pb.ImportFileHeader(name="a"))],
    [pb.ImportAudioRequest(header=pb.ImportAudioHeader(collection="c"))],
])
def test_a_broken_stream_is_refused(messages):
    with pytest.raises(InvalidArgument):
        list(_stream_files(iter(messages), {}, max_bytes=100))


def test_the_run_reports_every_file_and_never_holds_more_than_its_slots():
    in_flight, most = 0, 0

    def ingest(item: ImportFile) -> pb.ImportFileResult:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        result = pb.ImportFileResult(index=item.index, name=item.name)
        if item.name.startswith("bad"):
            result.error.CopyFrom(pb.ImportFileError(code="INVALID_ARGUMENT", reason="INVALID_AUDIO"))
        else:
            result.audio.CopyFrom(pb.AudioRecord(duration_seconds=2.0))
        in_flight -= 1
        return result

    files = (ImportFile(i, f"{'bad' if i % 5 == 0 else 'ok'}{i}", "n", {}, lambda: b"") for i in range(20))
    run = _ImportRun(files, ingest, parallel=3, total=20)
    events = list(run.events(interval=0.05))

    kinds = [kind for kind, _ in events]
    assert kinds.count("file") == 20
    assert kinds[-1] == "summary"
    summary = events[-1][1]
    assert (summary.files_done, summary.files_ingested, summary.errors) == (20, 16, 4)
    assert summary.audio_seconds == pytest.approx(32.0)
    assert most <= 3
