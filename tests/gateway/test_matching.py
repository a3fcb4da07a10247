import numpy as np
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


def test_the_offset_comes_from_the_best_aligned_hits_and_both_ranges_follow_it():
    # A 5 s excerpt cut at 101.6 s: its windows fall between the reference's, the closest ones score best.
    hits = [SegmentHit(0, "long", 102.0, 104.0, 0.97), SegmentHit(1, "long", 103.0, 105.0, 0.96),
            SegmentHit(2, "long", 104.0, 106.0, 0.98), SegmentHit(3, "long", 105.0, 107.0, 0.97),
            SegmentHit(0, "long", 101.0, 103.0, 0.90), SegmentHit(3, "long", 104.0, 106.0, 0.91)]
    match = aggregate_matches(hits, QUERY, offset_tolerance=0.75)[0]
    assert match.matched_segments == 4
    assert match.reference_range == (102.0, 107.0)
    assert match.query_range == (0.0, 5.0)
    assert match.score == pytest.approx(np.mean([0.97, 0.96, 0.98, 0.97]))


def test_a_short_sound_inside_a_longer_query_is_placed_where_it_starts():
    # A 0.8 s catalog sound (one looped segment) at 3 s in a 6 s query: the windows starting at 2 and 3 hold it.
    query = [QuerySegment(float(s), float(s) + 2.0) for s in range(5)]
    hits = [SegmentHit(2, "click", 0.0, 0.8, 0.93), SegmentHit(3, "click", 0.0, 0.8, 0.95),
            SegmentHit(0, "click", 0.0, 0.8, 0.40)]
    match = aggregate_matches(hits, query, offset_tolerance=0.75)[0]
    assert match.reference_range == (0.0, 0.8)
    assert match.query_range == (3.0, 3.8)


def test_a_query_longer_than_the_recording_is_cut_to_the_recording():
    # A 4 s sound (segments at 0, 1, 2) placed at 1 s in a 6 s query.
    query = [QuerySegment(float(s), float(s) + 2.0) for s in range(5)]
    hits = [SegmentHit(1, "a", 0.0, 2.0, 0.95), SegmentHit(2, "a", 1.0, 3.0, 0.96), SegmentHit(3, "a", 2.0, 4.0, 0.95),
            SegmentHit(0, "a", 0.0, 2.0, 0.70), SegmentHit(4, "a", 2.0, 4.0, 0.72)]
    match = aggregate_matches(hits, query, offset_tolerance=0.75)[0]
    assert match.reference_range == (0.0, 4.0)
    assert match.query_range == (1.0, 5.0)
