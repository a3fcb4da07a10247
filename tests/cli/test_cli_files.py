"""Finding audio files: extensions, magic bytes, directory walks."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiosearch.cli.files import discover, has_audio_extension, looks_like_audio, sniff_audio

AUDIO_HEADS = {
    "wav": b"RIFF\x24\x00\x00\x00WAVEfmt ",
    "flac": b"fLaC\x00\x00\x00\x22",
    "ogg": b"OggS\x00\x02\x00\x00",
    "id3": b"ID3\x04\x00\x00\x00\x00\x00\x00",
    "mp3_frame": b"\xff\xfb\x90\x64\x00\x00",
    "mp2_frame": b"\xff\xfd\x84\x00",
    "adts": b"\xff\xf1\x50\x80\x02\x1f\xfc",
    "mp4": b"\x00\x00\x00\x20ftypM4A \x00\x00",
    "aiff": b"FORM\x00\x00\x10\x00AIFFCOMM",
    "aifc": b"FORM\x00\x00\x10\x00AIFCFVER",
    "wavpack": b"wvpk\x20\x00\x00\x00",
    "matroska": b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81",
}
NOT_AUDIO_HEADS = {
    "empty": b"",
    "text": b"hello, world\n",
    "png": b"\x89PNG\r\n\x1a\n\x00\x00",
    "avi": b"RIFF\x24\x00\x00\x00AVI LIST",
    "form_not_aiff": b"FORM\x00\x00\x10\x00ILBMBMHD",
    "reserved_mpeg_version": b"\xff\xeb\x90\x00",
    "reserved_layer": b"\xff\xe1\x90\x00",
    "bad_bitrate": b"\xff\xfb\xf0\x00",
    "short_sync": b"\xff\xfb",
    "zeros": b"\x00" * 16,
}


@pytest.mark.parametrize("head", AUDIO_HEADS.values(), ids=AUDIO_HEADS.keys())
def test_audio_signatures_are_recognised(head: bytes) -> None:
    assert looks_like_audio(head)


@pytest.mark.parametrize("head", NOT_AUDIO_HEADS.values(), ids=NOT_AUDIO_HEADS.keys())
def test_other_signatures_are_not(head: bytes) -> None:
    assert not looks_like_audio(head)


@pytest.mark.parametrize(
    "name", ["a.wav", "b.FLAC", "c.Mp3", "d.opus", "e.oga", "f.m4a", "g.aif", "h.wv", "i.webm", "j.mka"]
)
def test_audio_extensions_ignore_case(name: str) -> None:
    assert has_audio_extension(name)


@pytest.mark.parametrize("name", ["notes.txt", "image.png", "noext", "archive.wav.gz", ".wav"])
def test_other_extensions(name: str) -> None:
    assert not has_audio_extension(name)


@pytest.mark.parametrize(
    ("fmt", "subtype"), [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("AIFF", "PCM_16")]
)
def test_real_encoded_files_without_extension_are_sniffed(tmp_path: Path, fmt: str, subtype: str) -> None:
    buffer = io.BytesIO()
    tone = 0.2 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000)
    sf.write(buffer, tone, 16000, format=fmt, subtype=subtype)
    path = tmp_path / f"clip_{fmt.lower()}"
    path.write_bytes(buffer.getvalue())
    assert sniff_audio(str(path))
    assert discover([str(path)]).files[0].path == str(path)


def test_unreadable_or_missing_files_do_not_sniff_as_audio(tmp_path: Path) -> None:
    assert not sniff_audio(str(tmp_path / "missing"))
    assert not sniff_audio(str(tmp_path))


def _tree(root: Path) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (root / "b.wav").write_bytes(b"anything: chosen by extension")
    (root / "a.MP3").write_bytes(b"")
    (root / "notes.txt").write_bytes(b"just text")
    (root / "sub" / "sniffed.bin").write_bytes(AUDIO_HEADS["flac"])
    (root / "sub" / "noext").write_bytes(AUDIO_HEADS["ogg"])
    (root / "sub" / "deeper" / "c.opus").write_bytes(b"x")
    (root / "sub" / "image.png").write_bytes(NOT_AUDIO_HEADS["png"])
    (root / ".hidden" / "secret.wav").write_bytes(b"x")
    (root / ".DS_Store").write_bytes(b"x")
    (root / "._b.wav").write_bytes(b"AppleDouble")


def test_directories_are_walked_recursively_in_order(tmp_path: Path) -> None:
    _tree(tmp_path)
    found = discover([str(tmp_path)])
    relative = [os.path.relpath(file.path, tmp_path) for file in found.files]
    assert relative == ["a.MP3", "b.wav", "sub/noext", "sub/sniffed.bin", "sub/deeper/c.opus"]
    assert found.skipped == []
    assert found.missing == []


def test_paths_are_kept_as_given_and_names_are_base_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    found = discover(["sub", "b.wav"])
    assert [file.path for file in found.files] == [
        os.path.join("sub", "noext"),
        os.path.join("sub", "sniffed.bin"),
        os.path.join("sub", "deeper", "c.opus"),
        "b.wav",
    ]
    assert [file.name for file in found.files] == ["noext", "sniffed.bin", "c.opus", "b.wav"]


def test_explicit_files_are_filtered_too_and_reported(tmp_path: Path) -> None:
    _tree(tmp_path)
    notes, missing, wav = str(tmp_path / "notes.txt"), str(tmp_path / "nope.wav"), str(tmp_path / "b.wav")
    found = discover([notes, missing, wav])
    assert [file.path for file in found.files] == [wav]
    assert found.skipped == [notes]
    assert found.missing == [missing]


def test_each_file_is_ingested_once(tmp_path: Path) -> None:
    _tree(tmp_path)
    wav = str(tmp_path / "b.wav")
    found = discover([wav, str(tmp_path), wav, str(tmp_path / "sub" / ".." / "b.wav")])
    paths = [file.path for file in found.files]
    assert paths.count(wav) == 1
    assert len(paths) == 5


def test_explicit_hidden_file_is_accepted(tmp_path: Path) -> None:
    _tree(tmp_path)
    secret = str(tmp_path / ".hidden" / "secret.wav")
    assert [file.path for file in discover([secret]).files] == [secret]
