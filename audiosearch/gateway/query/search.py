"""Search and tagging: a clip in, matches per recording (or tags) out."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import numpy as np

from audiosearch.catalog.v1 import catalog_pb2 as cpb
from audiosearch.common.errors import reason_of
from audiosearch.gateway import metrics, validation
from audiosearch.gateway.audio.fingerprints import Landmarks, landmarks_message, query_landmarks
from audiosearch.gateway.audio.pipeline import AudioPipeline, EmbeddedAudio, to_tags
from audiosearch.gateway.audio.segments import cut_segments, event_spans, query_hop_seconds, query_segments
from audiosearch.gateway.backends.stubs import Backends
from audiosearch.gateway.query.matching import (
    Evidence,
    LandmarkAlignment,
    LandmarkThresholds,
    QuerySegment,
    RecordingMatch,
    SegmentHit,
    aggregate_matches,
    decided_by,
    landmark_shares,
    with_landmarks,
)
from audiosearch.gateway.settings import GatewaySettings
from audiosearch.gateway.stages import stage
from audiosearch.search.v1 import search_pb2 as spb
from audiosearch.v1 import audiosearch_pb2 as pb

HITS_PER_SEGMENT = 64
MAX_HITS_PER_SEGMENT = 4096
MAX_FILTERED_CANDIDATES = 16_384
LANDMARK_MATCHES = 20
FILTER_UNSUPPORTED = "FILTER_UNSUPPORTED"
READY = pb.AUDIO_STATUS_READY
EVIDENCE = {Evidence.EMBEDDING: pb.MATCH_EVIDENCE_EMBEDDING, Evidence.LANDMARKS: pb.MATCH_EVIDENCE_LANDMARKS,
            Evidence.BOTH: pb.MATCH_EVIDENCE_BOTH}


@dataclass(frozen=True)
class Scope:
    """The recordings a search may return: all; those whose labels pass a filter, decided where the search service
    keeps its rows; or, in a collection whose rows hold no labels, the ids that the catalog lists for the filter."""

    audio_ids: tuple[str, ...] = ()
    labels: pb.AudioFilter | None = None


class Query:
    def __init__(self, backends: Backends, pipeline: AudioPipeline, settings: GatewaySettings) -> None:
        self._backends = backends
        self._pipeline = pipeline
        self._settings = settings
        self._unlabelled: set[str] = set()  # collections whose search rows hold no labels (written before them)

    def search(self, collection: pb.Collection, request: pb.SearchAudioRequest) -> pb.SearchAudioResponse:
        top_k = validation.top_k(request.top_k, default=10)
        threshold = collection.score_threshold
        if request.HasField("min_score"):
            threshold = validation.score_threshold(request.min_score, field="min_score")
        audio_filter = validation.audio_filter(request.filter)
        embedded = self.embed_query(collection, request.audio_content)
        metrics.SEARCH_QUERY_SEGMENTS.observe(len(embedded.segments))
        matches = self.match(collection, embedded, top_k, threshold, audio_filter)
        return pb.SearchAudioResponse(
            matches=matches, score_threshold=threshold,
            query_duration_seconds=embedded.audio.duration_seconds,
            query_tags=embedded.clip_tags(self._settings.tags_per_recording, self._settings.tag_floor),
            model=collection.model,
        )

    def embed_query(self, collection: pb.Collection, data: bytes) -> EmbeddedAudio:
        with stage("search", "decode"):
            decoded = self._pipeline.decode(data, collection.model.sample_rate_hz,
                                            self._settings.max_query_duration_seconds)
        with stage("search", "embed"):
            return self._pipeline.embed(decoded, collection.segment_config, query_segments)

    def match(
        self, collection: pb.Collection, embedded: EmbeddedAudio, top_k: int, threshold: float,
        audio_filter: pb.AudioFilter | None = None,
    ) -> list[pb.Match]:
        try:
            return self._match(collection, embedded, top_k, threshold, self._scope(collection.name, audio_filter))
        except grpc.RpcError as error:
            if reason_of(error) != FILTER_UNSUPPORTED:
                raise
        self._unlabelled.add(collection.name)
        return self._match(collection, embedded, top_k, threshold, self._scope(collection.name, audio_filter))

    def _match(self, collection: pb.Collection, embedded: EmbeddedAudio, top_k: int, threshold: float,
               scope: Scope | None) -> list[pb.Match]:
        if scope is None:
            return []
        query_segments = [QuerySegment(float(start), float(min(end, embedded.audio.duration_seconds)))
                          for start, end in zip(embedded.segments.starts_seconds, embedded.segments.ends_seconds,
                                                strict=True)]
        ranked = self.rank(collection, embedded.embeddings.vectors, query_segments, scope)
        alignments: list[LandmarkAlignment] = []
        if collection.landmark_threshold:
            with stage("search", "landmarks"):
                landmarks = query_landmarks(embedded.audio.samples, embedded.audio.sample_rate_hz,
                                            event_spans(embedded.segments, collection.segment_config.window_seconds))
                alignments = self.align_landmarks(collection.name, landmarks, scope, top_k=max(top_k, LANDMARK_MATCHES))
        landmark_thresholds = collection_landmark_thresholds(collection)
        fused = with_landmarks(ranked, alignments, landmark_thresholds, collection.segment_config.hop_seconds)
        kept = [(match, evidence) for match in fused
                if (evidence := decided_by(match, threshold, landmark_thresholds)) is not None]
        return self._with_records(collection.name, kept, top_k)

    def align_landmarks(self, collection: str, landmarks: Landmarks, scope: Scope, top_k: int,
                        excluded_audio_id: str = "") -> list[LandmarkAlignment]:
        """Recordings whose landmarks line up with these, most landmarks first, each with the share of what could
        have lined up over their overlap that did: the larger of the query's and the recording's
        (matching.landmark_shares)."""
        if not len(landmarks):
            return []
        matches = self._backends.search.MatchLandmarks(spb.MatchLandmarksRequest(
            collection=collection, landmarks=landmarks_message(landmarks), top_k=top_k,
            excluded_audio_id=excluded_audio_id, audio_ids=scope.audio_ids, filter=scope.labels)).matches
        aligned = np.array([match.landmarks for match in matches])
        of_query = landmark_shares(aligned, np.array([match.overlap_landmarks for match in matches]))
        of_recording = landmark_shares(aligned, np.array([match.recording_overlap_landmarks for match in matches]))
        shares = np.maximum(of_query, of_recording)
        return [LandmarkAlignment(match.audio_id, match.landmarks, match.offset_ms / 1000,
                                  (match.query_start_ms / 1000, match.query_end_ms / 1000), float(share))
                for match, share in zip(matches, shares, strict=True)]

    def rank(
        self, collection: pb.Collection, vectors: np.ndarray, query_segments: list[QuerySegment],
        scope: Scope | None = None, excluded: tuple[str, int] | None = None,
    ) -> list[RecordingMatch]:
        """Every recording with a segment near a query segment, best first, before any threshold.

        `excluded` is (audio id, its segment count): that recording's hits are left out and as many more are
        fetched, so the others get the hits they would get if it were not in the collection.
        """
        top_k = HITS_PER_SEGMENT + (excluded[1] if excluded else 0)
        with stage("search", "search"):
            hits = self._segment_hits(collection.name, vectors, scope or Scope(), top_k)
        if excluded:
            hits = _without(hits, excluded[0])
        config = collection.segment_config
        return aggregate_matches(hits, query_segments,
                                 query_hop_seconds(config.window_seconds, config.hop_seconds) * 0.75,
                                 config.hop_seconds)

    def tag(self, data: bytes, model: pb.ModelIdentity, segment_config: pb.SegmentConfig, top_k: int
            ) -> pb.TagAudioResponse:
        decoded = self._pipeline.decode(data, model.sample_rate_hz, self._settings.max_query_duration_seconds)
        embedded = self._pipeline.embed(decoded, segment_config, cut_segments)
        probabilities = embedded.embeddings.tag_probabilities
        segments = [
            pb.SegmentTags(range=pb.TimeRange(start_seconds=float(start),
                                              end_seconds=float(min(end, decoded.duration_seconds))),
                           tags=to_tags(probabilities[index], top_k))
            for index, (start, end) in enumerate(zip(embedded.segments.starts_seconds,
                                                     embedded.segments.ends_seconds, strict=True))
        ]
        return pb.TagAudioResponse(tags=to_tags(probabilities.mean(axis=0), top_k), segments=segments,
                                   duration_seconds=decoded.duration_seconds, model=model)

    def _scope(self, collection: str, audio_filter: pb.AudioFilter | None) -> Scope | None:
        """The recordings a search may return: None when a filter passes none."""
        if audio_filter is None or not (audio_filter.tags or audio_filter.metadata):
            return Scope()
        if collection not in self._unlabelled:
            return Scope(labels=audio_filter)
        audio_ids = self._filtered_candidates(collection, audio_filter)
        return Scope(audio_ids=tuple(audio_ids)) if audio_ids else None

    def _filtered_candidates(self, collection: str, audio_filter: pb.AudioFilter) -> list[str]:
        """Ids allowed by a tag/metadata filter, for a collection whose search rows hold no labels: read before the
        vector search so rare matches are not lost."""
        ids: list[str] = []
        page_token = ""
        while len(ids) < MAX_FILTERED_CANDIDATES:
            page = self._backends.catalog.ListAudio(cpb.ListAudioRequest(
                collection=collection, page_size=1000, page_token=page_token, status=READY, filter=audio_filter))
            ids.extend(audio.id for audio in page.audios)
            page_token = page.next_page_token
            if not page_token:
                break
        return ids

    def _segment_hits(self, collection: str, vectors: np.ndarray, scope: Scope,
                      top_k: int = HITS_PER_SEGMENT) -> list[SegmentHit]:
        little_endian = vectors.astype("<f4", copy=False)
        response = self._backends.search.SearchSegments(spb.SearchSegmentsRequest(
            collection=collection, vectors=[row.tobytes() for row in little_endian],
            top_k=min(top_k, MAX_HITS_PER_SEGMENT), audio_ids=scope.audio_ids, filter=scope.labels,
        ))
        return [
            SegmentHit(query_index, hit.audio_id, hit.start_seconds, hit.end_seconds, hit.score)
            for query_index, result in enumerate(response.results)
            for hit in result.hits
        ]

    def _with_records(self, collection: str, scored: list[tuple[RecordingMatch, Evidence]], top_k: int
                      ) -> list[pb.Match]:
        """Joins matches with READY records in one batched read; anything not READY is never returned."""
        if not scored:
            return []
        wanted = scored[: top_k * 2]
        with stage("search", "catalog"):
            records = self._backends.catalog.BatchGetAudio(cpb.BatchGetAudioRequest(
                collection=collection, audio_ids=[match.audio_id for match, _ in wanted], status=READY)).audios
        by_id = {record.id: record for record in records}
        return [
            pb.Match(
                audio=by_id[match.audio_id], score=match.score,
                reference_range=pb.TimeRange(start_seconds=match.reference_range[0],
                                             end_seconds=min(match.reference_range[1],
                                                             by_id[match.audio_id].duration_seconds)),
                query_range=pb.TimeRange(start_seconds=match.query_range[0], end_seconds=match.query_range[1]),
                matched_segments=match.matched_segments, landmarks=match.landmarks,
                landmark_share=match.landmark_share, decided_by=EVIDENCE[evidence],
            )
            for match, evidence in wanted if match.audio_id in by_id
        ][:top_k]


def collection_landmark_thresholds(collection: pb.Collection) -> LandmarkThresholds:
    return LandmarkThresholds(collection.landmark_threshold, collection.landmark_share_threshold)


def _without(hits: list[SegmentHit], audio_id: str) -> list[SegmentHit]:
    """The hits of other recordings, at most HITS_PER_SEGMENT per query segment (hits arrive best first)."""
    kept: list[SegmentHit] = []
    per_segment: dict[int, int] = {}
    for hit in hits:
        taken = per_segment.get(hit.query_index, 0)
        if hit.audio_id != audio_id and taken < HITS_PER_SEGMENT:
            per_segment[hit.query_index] = taken + 1
            kept.append(hit)
    return kept
