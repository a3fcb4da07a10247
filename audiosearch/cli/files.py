"""Finding the audio files to ingest: by extension, else by the magic bytes at their start."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

AUDIO_EXTENSIONS = frozenset(
    {"wav", "flac", "ogg", "oga", "opus", "mp3", "m4a", "aac", "aiff", "aif", "wv", "webm", "mka"}
)
SNIFF_BYTES = 12


@dataclass(frozen=True)
class AudioFile:
    """A file to ingest: `path` as given (or joined under a given directory); `name` is its base name."""

    path: str

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


@dataclass
class Discovery:
    """What a walk over the given paths found: audio files, skipped files named explicitly, missing paths."""

    files: list[AudioFile] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def has_audio_extension(path: str) -> bool:
    suffix = os.path.splitext(path)[1].lower().lstrip(".")
    return suffix in AUDIO_EXTENSIONS


def _is_mpeg_frame_sync(head: bytes) -> bool:
    """An MPEG audio frame header (mp1/2/3) or an ADTS AAC header, with no reserved field values."""
    if len(head) < 3 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    if head[1] & 0xF6 == 0xF0:  # ADTS: 12-bit sync, layer always 00
        return True
    version = (head[1] >> 3) & 0b11
    layer = (head[1] >> 1) & 0b11
    bitrate = head[2] >> 4
    sample_rate = (head[2] >> 2) & 0b11
    return version != 0b01 and layer != 0b00 and bitrate != 0b1111 and sample_rate != 0b11


def looks_like_audio(head: bytes) -> bool:
    """Whether the first bytes of a file are the signature of an audio container the gateway decodes."""
    return (
        (head[:4] == b"RIFF" and head[8:12] == b"WAVE")
        or head[:4] in (b"fLaC", b"OggS", b"wvpk")
        or head[:3] == b"ID3"
        or head[4:8] == b"ftyp"
        or (head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"))
        or head[:4] == b"\x1a\x45\xdf\xa3"  # EBML: Matroska / WebM
        or _is_mpeg_frame_sync(head)
    )


def sniff_audio(path: str) -> bool:
    """Reads the start of a file and says whether it looks like audio; unreadable files do not."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError:
        return False
    return looks_like_audio(head)


def is_audio_file(path: str) -> bool:
    return has_audio_extension(path) or sniff_audio(path)


def _walk(directory: str) -> Iterator[str]:
    """Every regular file under `directory`, sorted, skipping hidden files and directories."""
    for root, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith("."):
                yield os.path.join(root, name)


def discover(paths: Iterable[str]) -> Discovery:
    """Expands files and directories (recursively) into the audio files to ingest, each once, in order.

    Directories contribute only files recognised as audio; a file named explicitly that is not
    recognised is reported in `skipped`, a path that does not exist in `missing`.
    """
    found = Discovery()
    seen: set[str] = set()

    def add(path: str) -> None:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            found.files.append(AudioFile(path))

    for path in paths:
        if os.path.isdir(path):
            for candidate in _walk(path):
                if os.path.isfile(candidate) and is_audio_file(candidate):
                    add(candidate)
        elif os.path.isfile(path):
            if is_audio_file(path):
                add(path)
            else:
                found.skipped.append(path)
        else:
            found.missing.append(path)
    return found


def read_chunks(handle: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    """The rest of an open file's bytes, `chunk_size` at a time."""
    while chunk := handle.read(chunk_size):
        yield chunk
