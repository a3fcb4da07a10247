"""Choosing a collection's score threshold from its own content.

Negatives: each sampled recording (its first QUERY_SEGMENTS segments, the length of a typical query) queried
against the rest of the collection, as if it were not there (leave one out: its own hits are left out and as
many more fetched, so a long recording cannot crowd the others out of the hit lists), so its best score is
what a sound that is not in the catalog scores; the same excerpt's stored landmarks, looked up the same way, give
the most landmarks such a sound lines up with. Positives: each segment against the next segment of the same
recording, i.e. the score of an excerpt shifted by one hop. With the default hop (= the window) the two share no
audio, while a real query window lies within a sixteenth of a window of a stored one: the reported true-positive rate is
then a pessimistic bound, and only informs.

The thresholds let through as many negatives as keep the target false-positive rate within a one-sided 95 %
Clopper-Pearson bound: the rate on sounds that were not sampled, not only on the sample, stays under the target
with that confidence. Of the 300 negatives of a 300-recording collection at target 0.05 that allows 8 (a sample rate of
0.027); a collection too small to show the target (under 59 negatives at 0.05) allows none. The landmark threshold
takes up to half of them, the score threshold what the landmarks leave.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from scipy.stats import beta

from audiosearch.catalog.v1 import catalog_pb2 as cpb
from audiosearch.common.errors import FailedPrecondition
from audiosearch.gateway.audio.fingerprints import landmarks_from_message
from audiosearch.gateway.backends.stubs import Backends
from audiosearch.gateway.query.matching import QuerySegment
from audiosearch.gateway.query.search import Query
from audiosearch.search.v1 import search_pb2 as spb
from audiosearch.v1 import audiosearch_pb2 as pb

SAMPLE_RECORDINGS = 1000
QUERY_SEGMENTS = 10
MIN_RECORDINGS = 5
MIN_LANDMARK_THRESHOLD = 6
CONFIDENCE = 0.95
VECTOR_BATCH = 50  # recordings per GetSegmentVectors call, to keep replies small
READY = pb.AUDIO_STATUS_READY


class Calibrator:
    def __init__(self, backends: Backends, query: Query) -> None:
        self._backends = backends
        self._query = query

    def calibrate(self, collection: pb.Collection, target_false_positive_rate: float
                  ) -> pb.CalibrateCollectionResponse:
        segments_by_audio = self._sample_segments(collection.name)
        if len(segments_by_audio) < MIN_RECORDINGS:
            raise FailedPrecondition(
                f"calibration needs at least {MIN_RECORDINGS} ready recordings; "
                f"{collection.name!r} has {len(segments_by_audio)}",
                reason="NOT_ENOUGH_DATA", collection=collection.name)
        negatives = np.array([self._leave_one_out_score(collection, audio_id, segments)
                              for audio_id, segments in segments_by_audio.items()])
        positives = np.concatenate([_neighbour_scores(segments) for segments in segments_by_audio.values()])
        allowed = allowed_false_positives(len(negatives), target_false_positive_rate)
        landmark_threshold = 0
        by_landmarks = np.zeros(len(negatives), dtype=bool)
        if collection.landmark_threshold:
            negative_landmarks = np.array([self._leave_one_out_landmarks(collection, audio_id)
                                           for audio_id in segments_by_audio])
            landmark_threshold = _landmark_threshold(negative_landmarks, allowed // 2)
            by_landmarks = negative_landmarks >= landmark_threshold
        threshold = _score_threshold(negatives[~by_landmarks], allowed - int(by_landmarks.sum()))
        true_positive_rate = float(np.mean(positives >= threshold)) if len(positives) else 0.0
        false_positive_rate = float(np.mean(by_landmarks | (negatives >= threshold)))
        bound = _upper_bound(allowed, len(negatives))
        source = (f"calibrated for FPR {target_false_positive_rate:g} at {CONFIDENCE:.0%} confidence: "
                  f"{len(negatives)} leave-one-out negatives, {allowed} allowed (bound {bound:.3f}; "
                  f"FPR {false_positive_rate:.3f}; "
                  f"landmarks {float(np.mean(by_landmarks)):.3f}), "
                  f"{len(positives)} shifted-excerpt positives (TPR {true_positive_rate:.3f})")
        updated = self._backends.catalog.UpdateCollectionThreshold(cpb.UpdateCollectionThresholdRequest(
            name=collection.name, score_threshold=threshold, threshold_source=source,
            landmark_threshold=landmark_threshold)).collection
        return pb.CalibrateCollectionResponse(
            collection=updated, negative_queries=len(negatives), positive_queries=len(positives),
            true_positive_rate=true_positive_rate, false_positive_rate=false_positive_rate)

    def _sample_segments(self, collection: str) -> dict[str, list[spb.SegmentVector]]:
        audio_ids: list[str] = []
        page_token = ""
        while len(audio_ids) < SAMPLE_RECORDINGS:
            page = self._backends.catalog.ListAudio(cpb.ListAudioRequest(
                collection=collection, page_size=min(1000, SAMPLE_RECORDINGS - len(audio_ids)),
                page_token=page_token, status=READY))
            audio_ids += [audio.id for audio in page.audios]
            page_token = page.next_page_token
            if not page_token:
                break
        by_audio: dict[str, list[spb.SegmentVector]] = defaultdict(list)
        for start in range(0, len(audio_ids), VECTOR_BATCH):
            stored = self._backends.search.GetSegmentVectors(spb.GetSegmentVectorsRequest(
                collection=collection, audio_ids=audio_ids[start : start + VECTOR_BATCH])).segments
            for segment in stored:
                by_audio[segment.audio_id].append(segment)
        return {audio_id: sorted(segments, key=lambda s: s.start_seconds) for audio_id, segments in by_audio.items()}

    def _leave_one_out_score(self, collection: pb.Collection, audio_id: str,
                             segments: list[spb.SegmentVector]) -> float:
        excerpt = segments[:QUERY_SEGMENTS]
        query_segments = [QuerySegment(s.start_seconds, s.end_seconds) for s in excerpt]
        others = self._query.rank(collection, _as_matrix(excerpt), query_segments,
                                  excluded=(audio_id, len(segments)))
        return others[0].score if others else -1.0

    def _leave_one_out_landmarks(self, collection: pb.Collection, audio_id: str) -> int:
        excerpt_ms = round(QUERY_SEGMENTS * collection.segment_config.hop_seconds * 1000)
        stored = self._backends.catalog.GetLandmarks(cpb.GetLandmarksRequest(
            collection=collection.name, audio_id=audio_id, before_seconds=excerpt_ms / 1000)).landmarks
        others = self._query.align_landmarks(collection.name, landmarks_from_message(stored), [], top_k=1,
                                             excluded_audio_id=audio_id)
        return others[0].landmarks if others else 0


def allowed_false_positives(negatives: int, target_rate: float) -> int:
    """The most of `negatives` sampled negatives that may clear a threshold while the one-sided Clopper-Pearson
    upper bound of the false-positive rate stays within `target_rate`; 0 when even none would not show it."""
    allowed = 0
    while allowed + 1 < negatives and _upper_bound(allowed + 1, negatives) <= target_rate:
        allowed += 1
    return allowed


def _upper_bound(false_positives: int, negatives: int) -> float:
    """The CONFIDENCE one-sided Clopper-Pearson upper bound of a rate seen as false_positives / negatives."""
    return float(beta.ppf(CONFIDENCE, false_positives + 1, negatives - false_positives)) if negatives else 1.0


def _landmark_threshold(negative_landmarks: np.ndarray, allowed: int) -> int:
    """One more than the (allowed + 1)-th most landmarks a negative lined up, so at most `allowed` reach it."""
    ranked = np.sort(negative_landmarks)[::-1]
    return max(MIN_LANDMARK_THRESHOLD, int(ranked[min(allowed, len(ranked) - 1)]) + 1)


def _score_threshold(scores: np.ndarray, allowed: int) -> float:
    """Just above the score of the (allowed + 1)-th best negative, so at most `allowed` clear it (never below
    the lowest negative's score)."""
    if not len(scores):
        return 1.0
    ranked = np.sort(scores)[::-1]
    return float(min(ranked[min(max(0, allowed), len(ranked) - 1)] + 1e-4, 1.0))


def _as_matrix(segments: list[spb.SegmentVector]) -> np.ndarray:
    return np.stack([np.frombuffer(segment.vector, dtype="<f4") for segment in segments])


def _neighbour_scores(segments: list[spb.SegmentVector]) -> np.ndarray:
    if len(segments) < 2:
        return np.empty(0)
    vectors = _as_matrix(segments)
    starts = np.array([segment.start_seconds for segment in segments])
    shifted = starts[1:] != starts[:-1]  # a short sound's core loop shares its loop's range: not a shifted excerpt
    return np.sum(vectors[:-1] * vectors[1:], axis=1)[shifted]
