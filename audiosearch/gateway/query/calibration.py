"""Choosing a collection's thresholds from its own content, on catalogs that hold variants of their sounds.

Negatives: each sampled recording (its first QUERY_SEGMENTS segments, the length of a typical query) queried
against the rest of the collection as if it were not there (leave one out: its own hits are left out and as
many more fetched, so a long recording cannot crowd the others out of the hit lists). What it finds is what a
sound that is not in the catalog finds: its best score, and the landmark evidence of the recordings that the same
excerpt's stored landmarks, looked up the same way, line up with. Positives: each segment against the next segment
of the same recording, i.e. the score of an excerpt shifted by one hop. With the default hop (= the window) the two
share no audio, while a real query window lies within a sixteenth of a window of a stored one: the reported
true-positive rate is then a pessimistic bound.

Variants. A sound library holds several takes of a voice line or a footstep, a music catalog remasters and edits:
an excerpt finds its variants because they share audio, and counting that as a false positive puts the thresholds
above most true copies. So the recordings that share the excerpt's audio are set aside (reported, not counted) and
the negative is what the excerpt finds among the others. A recording shares the excerpt's audio when its aligned
landmarks stand out of what the excerpt lines up with across the catalog: VARIANT_RATIO times as many as the
VARIANT_COHORT-th best recording, and MIN_LANDMARKS at least. Chance spreads over recordings alike (on the dev
sounds a long excerpt's best unrelated recording lines up 8-12 landmarks and its fifth best 4-8), shared audio
stands out (a take of a fire 79 against 4, a short hit 15 against 2). The test compares recordings with one another
for one excerpt, never with a threshold, so it does not lean on the thresholds it helps to set; a family with more
than VARIANT_COHORT - 1 takes that share audio is not set aside, which makes the thresholds stricter, not looser.

Thresholds. They let through as many negatives as keep the target false-positive rate within a one-sided 95 %
Clopper-Pearson bound: the rate on sounds that were not sampled, not only on the sample, stays under the target
with that confidence. Of the 300 negatives of a 300-recording collection at target 0.05 that allows 8 (a sample
rate of 0.027); a collection too small to show the target (under 59 negatives at 0.05) allows none. Landmarks decide
by their share (matching.landmark_shares) once MIN_LANDMARKS line up, a share that does not grow with the query's
length. The embedding first has to show that it separates: at the score threshold that the whole allowance would
give it, MIN_EMBEDDING_TPR of the shifted-excerpt positives clear. Then the landmarks take up to half of the
allowance and the score what they leave. When it does not (untrained weights: unrelated sounds score 0.93-0.9999),
the score threshold lies just above every negative's score, where only near-exact copies reach it, the landmarks
take the whole allowance, and threshold_source says so.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

from audiosearch.catalog.v1 import catalog_pb2 as cpb
from audiosearch.common.errors import FailedPrecondition
from audiosearch.gateway.audio.fingerprints import landmarks_from_message
from audiosearch.gateway.backends.stubs import Backends
from audiosearch.gateway.query.matching import LandmarkAlignment, QuerySegment
from audiosearch.gateway.query.search import Query, Scope
from audiosearch.search.v1 import search_pb2 as spb
from audiosearch.v1 import audiosearch_pb2 as pb

SAMPLE_RECORDINGS = 1000
QUERY_SEGMENTS = 10
MIN_RECORDINGS = 5
# The fewest aligned landmarks that make a match: in a short overlap (a 0.1 s click holds about 50 landmarks)
# chance lines up 6 now and then between unrelated short effects, 8 seldom.
MIN_LANDMARKS = 8
VARIANT_CANDIDATES = 20  # recordings whose landmark alignments a negative looks at
VARIANT_COHORT = 5  # the rank of the recording that gives chance's level for an excerpt: up to 4 variants stand out
VARIANT_RATIO = 3.0
# The share of the shifted-excerpt positives that the embedding must let through, at the score threshold the whole
# allowance would give it, to count as separating copies from other sounds: half.
MIN_EMBEDDING_TPR = 0.5
CONFIDENCE = 0.95
VECTOR_BATCH = 50  # recordings per GetSegmentVectors call, to keep replies small
READY = pb.AUDIO_STATUS_READY


@dataclass(frozen=True)
class Negative:
    """What a recording's excerpt finds in the rest of the collection, the recordings that share its audio set aside."""

    score: float  # the best score among the others; -1 when none
    landmark_share: float  # the best landmark share among the others with MIN_LANDMARKS or more; 0 when none
    variants: int  # recordings set aside


@dataclass(frozen=True)
class ThresholdChoice:
    score_threshold: float
    landmark_share_threshold: float  # 0 when the collection keeps no landmarks
    embedding_separates: bool
    embedding_alone: float  # the score threshold the whole allowance would give the embedding
    embedding_alone_tpr: float  # the positives that clear it
    by_landmarks: np.ndarray  # per negative: its landmarks clear their thresholds
    cleared: np.ndarray  # per negative: its landmarks or its score clear


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
        negatives = [self._negative(collection, audio_id, segments) for audio_id, segments in segments_by_audio.items()]
        positives = np.concatenate([_neighbour_scores(segments) for segments in segments_by_audio.values()])
        allowed = allowed_false_positives(len(negatives), target_false_positive_rate)
        landmarks_on = collection.landmark_threshold > 0
        choice = choose_thresholds(np.array([n.score for n in negatives]),
                                   np.array([n.landmark_share for n in negatives]), positives, allowed, landmarks_on)
        true_positive_rate = float(np.mean(positives >= choice.score_threshold)) if len(positives) else 0.0
        source = _threshold_source(target_false_positive_rate, negatives, allowed, choice, landmarks_on,
                                   len(positives), true_positive_rate)
        updated = self._backends.catalog.UpdateCollectionThreshold(cpb.UpdateCollectionThresholdRequest(
            name=collection.name, score_threshold=choice.score_threshold, threshold_source=source,
            landmark_threshold=MIN_LANDMARKS if landmarks_on else 0,
            landmark_share_threshold=choice.landmark_share_threshold)).collection
        return pb.CalibrateCollectionResponse(
            collection=updated, negative_queries=len(negatives), positive_queries=len(positives),
            true_positive_rate=true_positive_rate, false_positive_rate=float(np.mean(choice.cleared)),
            variant_queries=sum(1 for n in negatives if n.variants))

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

    def _negative(self, collection: pb.Collection, audio_id: str, segments: list[spb.SegmentVector]) -> Negative:
        variants: set[str] = set()
        share = 0.0
        if collection.landmark_threshold:
            alignments = self._leave_one_out_alignments(collection, audio_id)
            variants = shared_audio(alignments)
            share = max((a.share for a in alignments if a.audio_id not in variants and a.landmarks >= MIN_LANDMARKS),
                        default=0.0)
        return Negative(self._leave_one_out_score(collection, audio_id, segments, variants), share, len(variants))

    def _leave_one_out_score(self, collection: pb.Collection, audio_id: str, segments: list[spb.SegmentVector],
                             variants: set[str]) -> float:
        excerpt = segments[:QUERY_SEGMENTS]
        query_segments = [QuerySegment(s.start_seconds, s.end_seconds) for s in excerpt]
        others = self._query.rank(collection, _as_matrix(excerpt), query_segments,
                                  excluded=(audio_id, len(segments)))
        return next((match.score for match in others if match.audio_id not in variants), -1.0)

    def _leave_one_out_alignments(self, collection: pb.Collection, audio_id: str) -> list[LandmarkAlignment]:
        excerpt_ms = round(QUERY_SEGMENTS * collection.segment_config.hop_seconds * 1000)
        stored = self._backends.search.GetLandmarks(spb.GetLandmarksRequest(
            collection=collection.name, audio_id=audio_id, before_ms=excerpt_ms)).landmarks
        return self._query.align_landmarks(collection.name, landmarks_from_message(stored), Scope(),
                                           top_k=VARIANT_CANDIDATES, excluded_audio_id=audio_id)


def shared_audio(alignments: list[LandmarkAlignment]) -> set[str]:
    """The recordings among one excerpt's `alignments` (most landmarks first) that share its audio: at least
    MIN_LANDMARKS aligned and VARIANT_RATIO times as many as the VARIANT_COHORT-th best recording (chance's level for
    this excerpt; 0 when fewer recordings line up at all)."""
    chance = alignments[VARIANT_COHORT - 1].landmarks if len(alignments) >= VARIANT_COHORT else 0
    needed = max(MIN_LANDMARKS, VARIANT_RATIO * chance)
    return {alignment.audio_id for alignment in alignments if alignment.landmarks >= needed}


def choose_thresholds(scores: np.ndarray, shares: np.ndarray, positives: np.ndarray, allowed: int,
                      landmarks_on: bool) -> ThresholdChoice:
    """The score and landmark share thresholds that let at most `allowed` of the negatives (their `scores` and
    landmark `shares`) through; see the module's docstring for how the two split them."""
    alone = _score_threshold(scores, allowed)
    alone_tpr = float(np.mean(positives >= alone)) if len(positives) else 0.0
    if not landmarks_on:
        return ThresholdChoice(alone, 0.0, True, alone, alone_tpr, np.zeros(len(scores), dtype=bool),
                               scores >= alone)
    separates = alone_tpr >= MIN_EMBEDDING_TPR
    share_threshold = _share_threshold(shares, allowed // 2 if separates else allowed)
    by_landmarks = shares >= share_threshold
    score_threshold = (_score_threshold(scores[~by_landmarks], allowed - int(by_landmarks.sum())) if separates
                       else _score_threshold(scores, 0))
    return ThresholdChoice(score_threshold, share_threshold, separates, alone, alone_tpr, by_landmarks,
                           by_landmarks | (scores >= score_threshold))


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


def _share_threshold(shares: np.ndarray, allowed: int) -> float:
    """Just above the (allowed + 1)-th largest landmark share, so at most `allowed` reach it (a share of 0, no
    recording with MIN_LANDMARKS, never does). Shares lie close together, so "just above" is the next value the
    threshold's 32-bit field holds."""
    ranked = np.sort(shares)[::-1] if len(shares) else np.zeros(1)
    return min(float(np.nextafter(np.float32(ranked[min(allowed, len(ranked) - 1)]), np.float32(np.inf))), 1.0)


def _score_threshold(scores: np.ndarray, allowed: int) -> float:
    """Just above the score of the (allowed + 1)-th best negative, so at most `allowed` clear it (never below
    the lowest negative's score)."""
    if not len(scores):
        return 1.0
    ranked = np.sort(scores)[::-1]
    return float(min(ranked[min(max(0, allowed), len(ranked) - 1)] + 1e-4, 1.0))


def _threshold_source(target_rate: float, negatives: list[Negative], allowed: int, choice: ThresholdChoice,
                      landmarks_on: bool, positives: int, true_positive_rate: float) -> str:
    """How the thresholds were chosen, for the collection's threshold_source."""
    return (f"calibrated for FPR {target_rate:g} at {CONFIDENCE:.0%} confidence: {len(negatives)} leave-one-out "
            f"negatives, {allowed} allowed (bound {_upper_bound(allowed, len(negatives)):.3f}; FPR "
            f"{float(np.mean(choice.cleared)):.3f}; landmarks {float(np.mean(choice.by_landmarks)):.3f}); "
            f"{_variants_text(negatives, landmarks_on)}; {_evidence_text(choice, landmarks_on)}; "
            f"{positives} shifted-excerpt positives (TPR {true_positive_rate:.3f})")


def _variants_text(negatives: list[Negative], landmarks_on: bool) -> str:
    if not landmarks_on:
        return "no landmarks to tell variants apart"
    return (f"{sum(1 for n in negatives if n.variants)} negatives found variants "
            f"({sum(n.variants for n in negatives)} recordings sharing their audio), set aside")


def _evidence_text(choice: ThresholdChoice, landmarks_on: bool) -> str:
    if not landmarks_on:
        return "the embedding alone decides"
    landmarks = f"landmarks decide at share {choice.landmark_share_threshold:.4f} with {MIN_LANDMARKS} or more"
    verdict = "separates" if choice.embedding_separates else "does not separate"
    embedding = (f"the embedding {verdict} (shifted-excerpt TPR {choice.embedding_alone_tpr:.3f} at "
                 f"{choice.embedding_alone:.4f}, the score the whole allowance gives it)")
    if choice.embedding_separates:
        return f"{landmarks}; {embedding}"
    return f"{landmarks}, alone but for scores above every negative; {embedding}"


def _as_matrix(segments: list[spb.SegmentVector]) -> np.ndarray:
    return np.stack([np.frombuffer(segment.vector, dtype="<f4") for segment in segments])


def _neighbour_scores(segments: list[spb.SegmentVector]) -> np.ndarray:
    if len(segments) < 2:
        return np.empty(0)
    vectors = _as_matrix(segments)
    starts = np.array([segment.start_seconds for segment in segments])
    shifted = starts[1:] != starts[:-1]  # a short sound's core loop shares its loop's range: not a shifted excerpt
    return np.sum(vectors[:-1] * vectors[1:], axis=1)[shifted]
