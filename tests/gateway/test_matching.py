import pytest

from services.gateway.matching import QuerySegment, SegmentHit, aggregate_matches

QUERY = [QuerySegment(float(s), float(s) + 2.0) for s in range(4)]


def test_aligned_segments_vote_together_and_give_the_reference_range():
    hits = [SegmentHit(i, "a", 60.0 + i, 62.0 + i, 0.9) for i in range(4)]
    hits += [SegmentHit(0, "b", 10.0, 12.0, 0.95)]
    hits += [SegmentHit(i, "a", 5.0 + 3 * i, 7.0 + 3 * i, 0.6) for i in range(4)]
    matches = aggregate_matches(hits, QUERY, offset_tolerance=0.75)
    best_a = next(m for m in matches if m.audio_id == "a")
    assert best_a.reference_range == (60.0, 65.0)
    assert best_a.query_range == (0.0, 5.0)
    assert best_a.matched_segments == 4
    assert best_a.score == pytest.approx(0.9)


def test_two_sounds_in_one_query_each_get_their_own_query_range():
    hits = [SegmentHit(0, "a", 0.0, 2.0, 0.97), SegmentHit(1, "a", 1.0, 3.0, 0.96),
            SegmentHit(2, "b", 0.0, 2.0, 0.95), SegmentHit(3, "b", 1.0, 3.0, 0.94)]
    matches = {m.audio_id: m for m in aggregate_matches(hits, QUERY, offset_tolerance=0.75)}
    assert matches["a"].query_range == (0.0, 3.0)
    assert matches["b"].query_range == (2.0, 5.0)


def test_matches_are_sorted_best_first():
    hits = [SegmentHit(0, "weak", 0.0, 2.0, 0.4), SegmentHit(0, "strong", 0.0, 2.0, 0.99)]
    assert [m.audio_id for m in aggregate_matches(hits, QUERY, 0.75)] == ["strong", "weak"]
