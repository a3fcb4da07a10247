"""Bytes to vectors: decode, cut into windows, embed. Shared by ingest, search, tagging and calibration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from audiosearch.common.errors import InvalidArgument
from audiosearch.common.loudness import normalise_loudness
from audiosearch.gateway.audio.decoding import AudioError, AudioLimits, DecodedAudio, decode_audio
from audiosearch.gateway.audio.labels import top_labels
from audiosearch.gateway.audio.segments import Segments
from audiosearch.gateway.backends.admission import Work
from audiosearch.gateway.backends.embedder import EmbedderClient, Embeddings
from audiosearch.v1 import audiosearch_pb2 as pb

# How a clip is cut for one use: `stored_segments` (ingest), `query_segments` (search) or `cut_segments` (tagging).
Cutter = Callable[[np.ndarray, int, float, float], Segments]


@dataclass(frozen=True)
class EmbeddedAudio:
    audio: DecodedAudio
    segments: Segments
    embeddings: Embeddings

    def clip_tags(self, count: int, floor: float = 0.0) -> list[pb.Tag]:
        return to_tags(self.embeddings.tag_probabilities.mean(axis=0), count, floor)

    def segment_tags(self, index: int, count: int, floor: float = 0.0) -> list[pb.Tag]:
        return to_tags(self.embeddings.tag_probabilities[index], count, floor)


def to_tags(probabilities: np.ndarray, count: int, floor: float = 0.0) -> list[pb.Tag]:
    return [pb.Tag(label=label, score=score) for label, score in top_labels(probabilities, count, floor)]


class AudioPipeline:
    def __init__(self, embedder: EmbedderClient, limits: AudioLimits) -> None:
        self._embedder = embedder
        self._limits = limits

    def decode(self, data: bytes, sample_rate_hz: int, max_duration_seconds: float | None = None) -> DecodedAudio:
        limits = self._limits
        if max_duration_seconds is not None:
            limits = replace(limits, max_duration_seconds=min(max_duration_seconds, limits.max_duration_seconds))
        try:
            return decode_audio(data, sample_rate_hz, limits)
        except AudioError as error:
            raise InvalidArgument(str(error), reason=error.reason) from error

    def embed(self, audio: DecodedAudio, segment_config: pb.SegmentConfig, cut: Cutter,
              work: Work = Work.INTERACTIVE) -> EmbeddedAudio:
        segments = cut(audio.samples, audio.sample_rate_hz, segment_config.window_seconds, segment_config.hop_seconds)
        embeddings = self._embedder.embed(normalise_loudness(segments.windows), work)
        return EmbeddedAudio(audio, segments, embeddings)
