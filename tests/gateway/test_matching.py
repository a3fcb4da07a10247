import numpy as np
import pytest

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

QUERY = [QuerySegment(float(s), float(s) + 2.0) for s in range(4)]


def test_aligned_segments_vote_together_and_give_the_reference_range():
    hits = [SegmentHit(i, "a", 60.0 + i, 62.0 + i, 0.9) for i in range(4)]
    hits += [SegmentHit(0, "b", 10.0, 12.0, 0.95)]
    hits += [SegmentHit(i, "a", 5.0 + 3 * i, 7.0 + 3 * i, 0.6) for i in range(4)]
    matches = aggregate_matches(hits, QUERY, offset_tolerance=0.75, reference_hop=1.0)
    best_a = next(m for m in matches if m.audio_id == "a")
    assert best_a.reference_range == (60.0, 65.0)
    assert best_a.query_range == (0.0, 5.0)
    assert best_a.matched_segments == 4
    assert best_a.score == pytest.approx(0.9)


def test_two_sounds_in_one_query_each_get_their_own_query_range():
    hits = [SegmentHit(0, "a", 0.0, 2.0, 0.97), SegmentHit(1, "a", 1.0, 3.0, 0.96),
            SegmentHit(2, "b", 0.0, 2.0, 0.95), SegmentHit(3, "b", 1.0, 3.0, 0.94)]
    matches = {m.audio_id: m for m in aggregate_matches(hits, QUERY, offset_tolerance=0.75, reference_hop=1.0)}
    assert matches["a"].query_range == (0.0, 3.0)
    assert matches["b"].query_range == (2.0, 5.0)


def test_matches_are_sorted_best_first():
    hits = [SegmentHit(0, "weak", 0.0, 2.0, 0.4), SegmentHit(0, "strong", 0.0, 2.0, 0.99)]
    assert [m.audio_id for m in aggregate_matches(hits, QUERY, 0.75, 1.0)] == ["strong", "weak"]


def test_the_offset_comes_from_the_best_aligned_hits_and_both_ranges_follow_it():
    # A 5 s excerpt cut at 101.6 s: its windows fall between the reference's, the closest ones score best.
    hits = [SegmentHit(0, "long", 102.0, 104.0, 0.97), SegmentHit(1, "long", 103.0, 105.0, 0.96),
            SegmentHit(2, "long", 104.0, 106.0, 0.98), SegmentHit(3, "long", 105.0, 107.0, 0.97),
            SegmentHit(0, "long", 101.0, 103.0, 0.90), SegmentHit(3, "long", 104.0, 106.0, 0.91)]
    match = aggregate_matches(hits, QUERY, offset_tolerance=0.75, reference_hop=1.0)[0]
    assert match.matched_segments == 4
    assert match.reference_range == (102.0, 107.0)
    assert match.query_range == (0.0, 5.0)
    assert match.score == pytest.approx(np.mean([0.97, 0.96, 0.98, 0.97]))


def test_a_short_sound_inside_a_longer_query_is_placed_where_it_starts():
    # A 0.8 s catalog sound (one looped segment) at 3 s in a 6 s query: the windows starting at 2 and 3 hold it.
    query = [QuerySegment(float(s), float(s) + 2.0) for s in range(5)]
    hits = [SegmentHit(2, "click", 0.0, 0.8, 0.93), SegmentHit(3, "click", 0.0, 0.8, 0.95),
            SegmentHit(0, "click", 0.0, 0.8, 0.40)]
    match = aggregate_matches(hits, query, offset_tolerance=0.75, reference_hop=1.0)[0]
    assert match.reference_range == (0.0, 0.8)
    assert match.query_range == (3.0, 3.8)


def test_a_query_longer_than_the_recording_is_cut_to_the_recording():
    # A 4 s sound (segments at 0, 1, 2) placed at 1 s in a 6 s query.
    query = [QuerySegment(float(s), float(s) + 2.0) for s in range(5)]
    hits = [SegmentHit(1, "a", 0.0, 2.0, 0.95), SegmentHit(2, "a", 1.0, 3.0, 0.96), SegmentHit(3, "a", 2.0, 4.0, 0.95),
            SegmentHit(0, "a", 0.0, 2.0, 0.70), SegmentHit(4, "a", 2.0, 4.0, 0.72)]
    match = aggregate_matches(hits, query, offset_tolerance=0.75, reference_hop=1.0)[0]
    assert match.reference_range == (0.0, 4.0)
    assert match.query_range == (1.0, 5.0)


HALF_SECOND_HOP_QUERY = [QuerySegment(s * 0.5, s * 0.5 + 2.0) for s in range(7)]  # a 5 s query cut at a 0.5 s hop


def test_with_a_finer_query_hop_the_best_aligned_query_window_speaks_for_each_stored_window():
    # Stored windows every 2 s (hop = window); the excerpt starts at 10.4 s. Query windows at 0.5 and 2.5 s land
    # 0.1 s from stored windows at 11 and 13 s and score best; their neighbours, 0.4 s off, score less.
    hits = [SegmentHit(1, "long", 11.0, 13.0, 0.97), SegmentHit(5, "long", 13.0, 15.0, 0.96),
            SegmentHit(0, "long", 11.0, 13.0, 0.85), SegmentHit(2, "long", 11.0, 13.0, 0.84),
            SegmentHit(4, "long", 13.0, 15.0, 0.86), SegmentHit(6, "long", 13.0, 15.0, 0.83),
            SegmentHit(0, "other", 4.0, 6.0, 0.90)]
    matches = aggregate_matches(hits, HALF_SECOND_HOP_QUERY, offset_tolerance=0.375, reference_hop=2.0)
    match = matches[0]
    assert match.audio_id == "long"
    assert match.matched_segments == 2
    assert match.score == pytest.approx((0.97 + 0.96) / 2)
    assert match.reference_range[0] == pytest.approx(11.0)
    assert match.query_range[0] == pytest.approx(0.5)


def test_a_stored_window_under_the_query_but_missing_from_the_hits_counts_at_the_lowest_score():
    # Stored windows at 20, 22, 24 s; the one at 22 s was not returned for its aligned query window (index 4).
    hits = [SegmentHit(0, "a", 20.0, 22.0, 0.95), SegmentHit(4, "a", 30.0, 32.0, 0.30),
            SegmentHit(4, "b", 0.0, 2.0, 0.50), SegmentHit(2, "a", 24.0, 26.0, 0.93)]
    query = [QuerySegment(s * 0.5, s * 0.5 + 2.0) for s in range(9)]
    match = next(m for m in aggregate_matches(hits, query, offset_tolerance=0.375, reference_hop=2.0)
                 if m.audio_id == "a")
    # Offset 20 s wins with the window at 20 s alone (24 s was hit at offset 23). The grid puts a window at 22 s
    # under query window 4 (2 s): it counts at that query window's lowest score, 0.30. The one at 24 s sits under
    # query window 8, which found nothing at all, so it cannot be scored and is left out.
    assert match.matched_segments == 1
    assert match.score == pytest.approx((0.95 + 0.30) / 2)


def test_a_short_sounds_loop_and_core_loop_share_a_range_and_count_as_one_stored_window():
    # A query's event (window 4) and its core loop (window 5) at 3.2-3.7 s; the stored sound's loop and core loop
    # both at 0.0-0.5 s. Whichever pair scores best speaks for the one stored window; nothing counts as missing.
    query = [*QUERY, QuerySegment(3.2, 3.7), QuerySegment(3.2, 3.7)]
    hits = [SegmentHit(4, "short", 0.0, 0.5, 0.80), SegmentHit(4, "short", 0.0, 0.5, 0.85),
            SegmentHit(5, "short", 0.0, 0.5, 0.97), SegmentHit(5, "short", 0.0, 0.5, 0.90),
            SegmentHit(5, "other", 0.0, 0.4, 0.95)]

    matches = aggregate_matches(hits, query, offset_tolerance=0.19, reference_hop=2.0)

    assert [m.audio_id for m in matches] == ["short", "other"]
    assert matches[0].score == pytest.approx(0.97)
    assert matches[0].matched_segments == 1
    assert matches[0].reference_range == (0.0, 0.5)
    assert matches[0].query_range == pytest.approx((3.2, 3.7))


# Landmarks beside the embedding


def embedding_match(audio_id: str, score: float) -> RecordingMatch:
    return RecordingMatch(audio_id, score, (4.0, 8.0), (0.0, 4.0), 2)


def test_a_recording_with_landmarks_over_the_threshold_comes_first_with_their_alignment() -> None:
    matches = [embedding_match("close", 0.99), embedding_match("copied", 0.90)]
    alignments = [LandmarkAlignment("copied", 40, 12.34, (0.5, 3.5)), LandmarkAlignment("close", 3, 0.0, (0.0, 1.0))]

    fused = with_landmarks(matches, alignments, LandmarkThresholds(10), reference_hop=2.0)

    assert [(m.audio_id, m.landmarks) for m in fused] == [("copied", 40), ("close", 3)]
    assert fused[0].score == pytest.approx(0.90)
    assert fused[0].query_range == pytest.approx((0.5, 3.5))
    assert fused[0].reference_range == pytest.approx((12.84, 15.84))
    assert fused[1].reference_range == (4.0, 8.0)  # under the threshold: the embedding's alignment stands


def test_under_the_threshold_a_recording_that_stands_out_by_its_landmarks_comes_first() -> None:
    matches = [embedding_match("close", 0.99), embedding_match("copied", 0.90), embedding_match("third", 0.8)]
    leading = [LandmarkAlignment("copied", 8, 12.0, (0.5, 3.5)), LandmarkAlignment("close", 4, 0.0, (0.0, 1.0))]
    level = [LandmarkAlignment("copied", 8, 12.0, (0.5, 3.5)), LandmarkAlignment("close", 5, 0.0, (0.0, 1.0))]
    few = [LandmarkAlignment("third", 5, 0.0, (0.0, 1.0))]

    fused = with_landmarks(matches, leading, LandmarkThresholds(20), reference_hop=2.0)
    assert [m.audio_id for m in fused] == ["copied", "close", "third"]
    assert fused[0].reference_range == pytest.approx((12.5, 15.5))
    for alignments in (level, few):
        fused = with_landmarks(matches, alignments, LandmarkThresholds(20), reference_hop=2.0)
        assert [m.audio_id for m in fused] == ["close", "copied", "third"]


def test_with_landmarks_off_the_embedding_order_stands() -> None:
    matches = [embedding_match("close", 0.99), embedding_match("copied", 0.90)]
    alignments = [LandmarkAlignment("copied", 40, 12.0, (0.5, 3.5))]

    fused = with_landmarks(matches, alignments, LandmarkThresholds(0), reference_hop=2.0)
    assert [(m.audio_id, m.landmarks) for m in fused] == [("close", 0), ("copied", 40)]
    assert fused[1].reference_range == (4.0, 8.0)


def test_a_recording_found_only_by_its_landmarks_is_a_match_with_score_zero() -> None:
    only = LandmarkAlignment("only", 25, -1.0, (2.0, 6.0))
    fused = with_landmarks([embedding_match("close", 0.99)], [only], LandmarkThresholds(10), reference_hop=2.0)

    assert [(m.audio_id, m.score) for m in fused] == [("only", 0.0), ("close", 0.99)]
    # The query starts before the recording does: the ranges start where the recording starts.
    assert fused[0].query_range == pytest.approx((2.0, 6.0))
    assert fused[0].reference_range == pytest.approx((1.0, 5.0))
    weak = LandmarkAlignment("weak", 5, 0.0, (0.0, 1.0))
    assert with_landmarks([], [weak], LandmarkThresholds(10), reference_hop=2.0) == []


def test_a_negative_offset_is_cut_to_the_start_of_the_recording() -> None:
    late = LandmarkAlignment("late", 30, -3.0, (1.0, 6.0))
    fused = with_landmarks([], [late], LandmarkThresholds(10), reference_hop=2.0)

    assert fused[0].query_range == pytest.approx((3.0, 6.0))
    assert fused[0].reference_range == pytest.approx((0.0, 3.0))


def test_where_the_embedding_agrees_the_ranges_cover_both_at_the_landmarks_offset() -> None:
    # Landmarks mark where peaks start: they stop short of the end that the embedding's windows reach.
    fused = with_landmarks([embedding_match("copied", 0.9)], [LandmarkAlignment("copied", 30, 4.1, (0.5, 3.0))],
                           LandmarkThresholds(10), reference_hop=2.0)

    assert fused[0].query_range == pytest.approx((0.0, 4.0))
    assert fused[0].reference_range == pytest.approx((4.1, 8.1))


def test_landmarks_decide_only_when_both_their_count_and_their_share_reach_the_thresholds() -> None:
    thresholds = LandmarkThresholds(8, share=0.05)
    matches = [embedding_match("both", 0.99), embedding_match("copied", 0.5), embedding_match("few", 0.5),
               embedding_match("thin", 0.5)]
    alignments = [LandmarkAlignment("both", 40, 4.0, (0.0, 4.0), share=0.3),
                  LandmarkAlignment("copied", 40, 4.0, (0.0, 4.0), share=0.3),
                  LandmarkAlignment("few", 7, 4.0, (0.0, 4.0), share=0.3),  # a handful, however large their share
                  LandmarkAlignment("thin", 40, 4.0, (0.0, 4.0), share=0.01)]  # many, of a long query
    fused = {m.audio_id: m for m in with_landmarks(matches, alignments, thresholds, reference_hop=2.0)}

    evidence = {audio_id: decided_by(match, 0.95, thresholds) for audio_id, match in fused.items()}

    assert evidence == {"both": Evidence.BOTH, "copied": Evidence.LANDMARKS, "few": None, "thin": None}
    assert decided_by(fused["thin"], 0.4, thresholds) is Evidence.EMBEDDING
    assert fused["copied"].landmark_share == pytest.approx(0.3)


def test_the_landmark_share_holds_for_a_short_and_a_long_copy_where_the_count_grows_with_the_length() -> None:
    # A copy whose fifth of the landmarks line up, 1 s and 30 s long (about 300 landmarks a second), and a handful
    # lined up by chance in a short overlap and in a long one.
    copies = landmark_shares(np.array([60, 1800]), np.array([300, 9000]))
    chance = landmark_shares(np.array([8, 12]), np.array([40, 9000]))

    assert copies[1] - copies[0] < 0.06  # the counts differ 30-fold
    assert copies.max() < 0.2
    assert chance[0] < copies[0] - 0.05  # 8 of 40 is a ratio of 0.2 too, but a handful of landmarks proves less
    assert chance[1] < 0.002
    assert landmark_shares(np.array([0, 5]), np.array([100, 0])).tolist() == [0.0, 0.0]  # none, or nothing known
