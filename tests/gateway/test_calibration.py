"""Calibration and leave-one-out ranking against in-memory catalog and vector-search fakes."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy.stats import beta

from audiosearch.catalog.v1 import catalog_pb2 as cpb
from audiosearch.gateway.query.calibration import (
    MIN_LANDMARKS,
    Calibrator,
    _neighbour_scores,
    allowed_false_positives,
    choose_thresholds,
    shared_audio,
)
from audiosearch.gateway.query.matching import LandmarkAlignment, QuerySegment
from audiosearch.gateway.query.search import HITS_PER_SEGMENT, Query
from audiosearch.search.landmark_vote import vote, with_overlaps
from audiosearch.search.v1 import search_pb2 as spb
from audiosearch.v1 import audiosearch_pb2 as pb

DIM = 16
COLLECTION = pb.Collection(name="library", segment_config=pb.SegmentConfig(window_seconds=2.0, hop_seconds=1.0),
                           landmark_threshold=12)


class FakeSearch:
    """Exact inner-product search over stored segments, best first, and an exact landmark vote."""

    def __init__(self, landmarks: dict[str, list[tuple[int, int]]] | None = None) -> None:
        self.segments: list[spb.SegmentVector] = []
        self.top_ks: list[int] = []
        self.landmarks = landmarks or {}

    def add(self, audio_id: str, vectors: np.ndarray) -> None:
        for index, vector in enumerate(vectors):
            self.segments.append(spb.SegmentVector(
                segment_id=len(self.segments), audio_id=audio_id, start_seconds=float(index),
                end_seconds=float(index) + 2.0, vector=vector.astype("<f4").tobytes()))

    def _matrix(self) -> np.ndarray:
        return np.stack([np.frombuffer(s.vector, dtype="<f4") for s in self.segments])

    def SearchSegments(self, request):
        self.top_ks.append(request.top_k)
        stored = self._matrix()
        results = []
        for raw in request.vectors:
            scores = stored @ np.frombuffer(raw, dtype="<f4")
            order = np.argsort(-scores)[: request.top_k]
            results.append(spb.QueryHits(hits=[
                spb.SegmentHit(segment_id=self.segments[i].segment_id, audio_id=self.segments[i].audio_id,
                               start_seconds=self.segments[i].start_seconds, end_seconds=self.segments[i].end_seconds,
                               score=float(scores[i])) for i in order]))
        return spb.SearchSegmentsResponse(results=results)

    def GetSegmentVectors(self, request):
        wanted = set(request.audio_ids)
        return spb.GetSegmentVectorsResponse(segments=[s for s in self.segments if s.audio_id in wanted])

    def GetLandmarks(self, request):
        before_ms = request.before_ms
        kept = [(h, t) for h, t in self.landmarks.get(request.audio_id, []) if t < before_ms]
        return spb.GetLandmarksResponse(landmarks=spb.Landmarks(hashes=[h for h, _ in kept],
                                                                times_ms=[t for _, t in kept]))

    def MatchLandmarks(self, request):
        query = list(zip(request.landmarks.hashes, request.landmarks.times_ms, strict=True))
        hits = [(audio_id, h, t_ref, t_query) for audio_id, stored in self.landmarks.items()
                if audio_id != request.excluded_audio_id
                for h, t_ref in stored for h_query, t_query in query if h == h_query]
        durations_ms = {audio_id: max(t for _, t in stored) + 100 for audio_id, stored in self.landmarks.items()}

        def recording_landmarks(audio_id: str, first_ms: int, last_ms: int) -> int:
            return len({h for h, t in self.landmarks[audio_id] if first_ms <= t <= last_ms})

        votes = with_overlaps(vote(hits)[: request.top_k], request.landmarks.hashes, request.landmarks.times_ms,
                              durations_ms, recording_landmarks)
        return spb.MatchLandmarksResponse(matches=[
            spb.LandmarkMatch(audio_id=v.audio_id, landmarks=v.landmarks, offset_ms=v.offset_ms,
                              overlap_landmarks=v.overlap_landmarks,
                              recording_overlap_landmarks=v.recording_overlap_landmarks) for v in votes])


class FakeCatalog:
    def __init__(self, audio_ids: list[str]) -> None:
        self.audio_ids = audio_ids
        self.threshold: tuple[float, str] | None = None
        self.landmark_threshold: int | None = None
        self.landmark_share_threshold: float | None = None

    def ListAudio(self, request):
        return cpb.ListAudioResponse(audios=[pb.AudioRecord(id=i, status=pb.AUDIO_STATUS_READY)
                                             for i in self.audio_ids])

    def UpdateCollectionThreshold(self, request):
        self.threshold = (request.score_threshold, request.threshold_source)
        self.landmark_threshold = request.landmark_threshold
        self.landmark_share_threshold = request.landmark_share_threshold
        return cpb.UpdateCollectionThresholdResponse(collection=pb.Collection(
            name=request.name, score_threshold=request.score_threshold, threshold_source=request.threshold_source))


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def collection():
    """A long recording of 150 near-identical segments and twelve short ones, unrelated but for two takes of one
    sound (short0 and short1: the same embedding, 30 of 40 landmarks alike)."""
    rng = np.random.default_rng(5)
    search = FakeSearch()
    drone = rng.standard_normal(DIM)
    search.add("long", unit(drone + 0.05 * rng.standard_normal((150, DIM))))
    shorts = [f"short{i}" for i in range(12)]
    take = unit(rng.standard_normal((3, DIM)))
    for audio_id in shorts:
        search.add(audio_id, take if audio_id in ("short0", "short1") else unit(rng.standard_normal((3, DIM))))
    landmarks = {audio_id: [(int(h), 100 * i) for i, h in enumerate(rng.integers(0, 2**32, 40))]
                 for audio_id in ["long", *shorts]}
    landmarks["short1"] = landmarks["short0"][:30]
    search.landmarks = landmarks
    catalog = FakeCatalog(["long", *shorts])
    backends = SimpleNamespace(search=search, catalog=catalog)
    return search, catalog, Query(backends, pipeline=None, settings=None)


def test_leave_one_out_ranking_leaves_the_recording_out_without_starving_the_others(collection):
    search, _, query = collection
    long_vectors = np.stack([np.frombuffer(s.vector, dtype="<f4") for s in search.segments[:2]])
    segments = [QuerySegment(0.0, 2.0), QuerySegment(1.0, 3.0)]
    plain = query.rank(COLLECTION, long_vectors, segments)
    assert {m.audio_id for m in plain} == {"long"}  # its own 150 segments fill every hit list
    others = query.rank(COLLECTION, long_vectors, segments, excluded=("long", 150))
    assert search.top_ks[-1] == HITS_PER_SEGMENT + 150
    assert {m.audio_id for m in others} == {f"short{i}" for i in range(12)}


def test_calibration_scores_every_recording_as_a_sound_not_in_the_catalog(collection):
    _, catalog, query = collection
    reply = Calibrator(SimpleNamespace(catalog=query._backends.catalog, search=query._backends.search),
                       query).calibrate(COLLECTION, 0.1)
    assert reply.negative_queries == 13
    assert reply.false_positive_rate <= 0.1 + 1e-9
    threshold, source = catalog.threshold
    assert reply.collection.score_threshold == pytest.approx(threshold)
    assert "calibrated for FPR 0.1" in source
    # Neither the long recording's own segments (all alike) nor the two takes (the same vectors) counted.
    assert threshold < 0.99


def test_takes_that_share_audio_are_set_aside_as_variants_and_reported(collection):
    _, catalog, query = collection
    backends = SimpleNamespace(catalog=query._backends.catalog, search=query._backends.search)

    reply = Calibrator(backends, query).calibrate(COLLECTION, 0.1)

    # Each take's excerpt finds the other (30 landmarks where the rest of the catalog lines up none): set aside,
    # so neither the landmark share nor the score threshold has to climb above them.
    assert reply.variant_queries == 2
    assert "2 negatives found variants (2 recordings sharing their audio), set aside" in catalog.threshold[1]
    assert catalog.landmark_threshold == MIN_LANDMARKS
    assert catalog.landmark_share_threshold < 0.01
    assert reply.false_positive_rate == 0.0


def test_a_recording_shares_the_excerpts_audio_when_it_stands_out_of_what_the_excerpt_lines_up_with() -> None:
    def found(*landmarks: int) -> set[str]:
        return shared_audio([LandmarkAlignment(f"r{rank}", count, 0.0, (0.0, 1.0))
                             for rank, count in enumerate(landmarks)])

    assert found(79, 10, 6, 5, 4, 3) == {"r0"}  # a take of the same fire
    assert found(40, 38, 35, 4, 3, 2) == {"r0", "r1", "r2"}  # three takes of a hit
    assert found(15, 2) == {"r0"}  # a short sound: nothing else lines up
    assert found(12, 11, 10, 9, 8, 7) == set()  # chance, spread over the catalog alike
    assert found(7, 1) == set()  # too few to tell
    assert found(30, 30, 30, 30, 30, 10) == set()  # more takes than the cohort: counted, the thresholds climb


def test_when_the_embedding_cannot_separate_the_score_threshold_lies_above_every_negative_and_landmarks_decide():
    rng = np.random.default_rng(3)
    # Untrained weights: unrelated sounds score 0.93-0.9999, and so do excerpts of one recording a hop apart.
    scores = rng.uniform(0.93, 0.9995, 300)
    positives = rng.uniform(0.93, 0.999, 900)
    shares = np.concatenate([rng.uniform(0.0, 0.03, 290), np.zeros(10)])

    choice = choose_thresholds(scores, shares, positives, allowed=8, landmarks_on=True)

    assert not choice.embedding_separates
    assert choice.score_threshold == pytest.approx(scores.max() + 1e-4)
    assert choice.score_threshold < 1.0
    assert choice.landmark_share_threshold == pytest.approx(np.sort(shares)[::-1][8])  # the whole allowance
    assert int(choice.by_landmarks.sum()) == 8
    assert int(choice.cleared.sum()) == 8


def test_an_embedding_that_separates_shares_the_allowance_with_the_landmarks():
    rng = np.random.default_rng(4)
    scores = rng.uniform(0.2, 0.7, 300)
    positives = rng.uniform(0.75, 0.95, 900)
    shares = rng.uniform(0.0, 0.03, 300)

    choice = choose_thresholds(scores, shares, positives, allowed=8, landmarks_on=True)

    assert choice.embedding_separates
    assert int(choice.by_landmarks.sum()) == 4  # half of the allowance
    assert choice.score_threshold < scores.max()
    assert int(choice.cleared.sum()) <= 8


@pytest.mark.parametrize(("negatives", "target", "allowed"), [(300, 0.05, 8), (1000, 0.05, 38), (80, 0.05, 0),
                                                              (59, 0.05, 0), (13, 0.6, 4), (300, 0.01, 0)])
def test_the_allowed_false_positives_keep_the_rate_within_the_target_at_95_percent_confidence(negatives, target,
                                                                                           allowed):
    assert allowed_false_positives(negatives, target) == allowed
    # One more would put the upper bound over the target: the sample rate alone (8/300 < 0.05) is not enough.
    assert beta.ppf(0.95, allowed + 2, negatives - allowed - 1) > target
    if allowed:
        assert beta.ppf(0.95, allowed + 1, negatives - allowed) <= target


def test_calibration_records_the_bound_and_allows_no_negative_through_a_small_sample(collection):
    _, catalog, query = collection
    reply = Calibrator(SimpleNamespace(catalog=query._backends.catalog, search=query._backends.search),
                       query).calibrate(COLLECTION, 0.1)
    assert reply.false_positive_rate == 0.0  # 13 negatives cannot show 0.1 even with none through
    assert "at 95% confidence: 13 leave-one-out negatives, 0 allowed (bound 0.206;" in catalog.threshold[1]
    assert any(verdict in catalog.threshold[1] for verdict in ("the embedding separates", "does not separate"))


def test_a_short_sounds_core_loop_is_not_counted_as_a_shifted_excerpt_of_its_loop():
    loop, core, next_window = np.eye(3, dtype=np.float32) * 0.5 + 0.5 / 3

    def stored(start: float, vector: np.ndarray) -> spb.SegmentVector:
        return spb.SegmentVector(audio_id="a", start_seconds=start, end_seconds=start + 2.0,
                                 vector=vector.astype("<f4").tobytes())

    assert len(_neighbour_scores([stored(0.0, loop), stored(0.0, core)])) == 0
    shifted = _neighbour_scores([stored(0.0, loop), stored(0.0, core), stored(2.0, next_window)])
    assert shifted == pytest.approx([float(core @ next_window)])


def test_a_collection_without_landmarks_gives_the_whole_target_to_the_score(collection):
    _, catalog, query = collection
    backends = SimpleNamespace(catalog=query._backends.catalog, search=query._backends.search)
    without = pb.Collection()
    without.CopyFrom(COLLECTION)
    without.landmark_threshold = 0

    reply = Calibrator(backends, query).calibrate(without, 0.4)

    assert catalog.landmark_threshold == 0
    assert catalog.landmark_share_threshold == 0.0
    assert "landmarks 0.000" in catalog.threshold[1]
    assert "the embedding alone decides" in catalog.threshold[1]
    assert reply.false_positive_rate <= 0.4 + 1e-9
