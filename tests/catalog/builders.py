"""Valid records to start tests from, each test changing only what it is about."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence

from audiosearch.catalog.records import Collection, ModelIdentity, NewAudio, NewSegment, Tag

MODEL = ModelIdentity("panns_cnn14", "untrained-seed0", 2048, 32000, True)


def unique_name(prefix: str = "c") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def new_collection(name: str | None = None, **changes: object) -> Collection:
    fields: dict[str, object] = {
        "name": unique_name() if name is None else name,
        "description": "test collection",
        "model": MODEL,
        "window_seconds": 2.0,
        "hop_seconds": 1.0,
        "score_threshold": 0.75,
        "threshold_source": "default",
    }
    return Collection(**{**fields, **changes})  # type: ignore[arg-type]


def sha256_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def new_audio(
    collection: str,
    content: str | None = None,
    name: str = "clip.wav",
    metadata: Mapping[str, str] | None = None,
    tags: Sequence[tuple[str, float]] = (),
    duration_seconds: float = 3.0,
) -> NewAudio:
    return NewAudio(
        collection=collection,
        name=name,
        sha256=sha256_of(content or uuid.uuid4().hex),
        duration_seconds=duration_seconds,
        sample_rate_hz=44100,
        channels=2,
        codec="pcm_s16le",
        size_bytes=529_244,
        metadata=dict(metadata or {}),
        tags=tuple(Tag(label, score) for label, score in tags),
    )


def new_segments(count: int, window: float = 2.0, hop: float = 1.0) -> list[NewSegment]:
    return [
        NewSegment(index, index * hop, index * hop + window, (Tag("Speech", 0.5 + index / (2 * count)),))
        for index in range(count)
    ]
