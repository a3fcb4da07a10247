"""The occurrence tracker of MonitorAudio: stretch matches in, plays (started, ended) out; no servers."""

from __future__ import annotations

import itertools

from audiosearch.gateway.query.matching import Evidence
from audiosearch.gateway.query.occurrences import OccurrenceState, OccurrenceTracker, StretchMatch

WINDOW, HOP = 10.0, 5.0


def tracker() -> OccurrenceTracker:
    ids = itertools.count(1)
    return OccurrenceTracker(new_id=lambda: f"d{next(ids)}")


def match(audio_id: str, feed: tuple[float, float], reference_start: float, landmarks: int = 30,
          evidence: Evidence = Evidence.LANDMARKS) -> StretchMatch:
    length = feed[1] - feed[0]
    return StretchMatch(audio_id, feed, (reference_start, reference_start + length), 0.9, landmarks, 0.4, evidence)


def plays_in(feed_seconds: float, plays: list[tuple[str, float, float]]) -> list[list[StretchMatch]]:
    """What each stretch of a feed would match: the part of every play (audio id, feed start, length) inside it."""
    stretches = []
    end = HOP
    while end - HOP < feed_seconds:
        start = max(0.0, end - WINDOW)
        found = []
        for audio_id, play_start, length in plays:
            first, last = max(start, play_start), min(end, play_start + length)
            if last - first >= 1.0:
                found.append(match(audio_id, (first, last), first - play_start))
        stretches.append((end, found))
        end += HOP
    return stretches


def run(stretches, tracker_=None):
    tracker_ = tracker_ or tracker()
    events = [event for end, found in stretches for event in tracker_.observe(end, found)]
    return events + tracker_.finish()


def ended(events):
    return [event.occurrence for event in events if event.state is OccurrenceState.ENDED]


def test_a_long_play_seen_in_many_stretches_is_one_detection_with_its_whole_range():
    events = run(plays_in(240.0, [("song", 20.0, 180.0)]))
    assert [event.state for event in events] == [OccurrenceState.STARTED, OccurrenceState.ENDED]
    final = ended(events)[0]
    assert final.feed_range == (20.0, 200.0)
    assert final.reference_range == (0.0, 180.0)


def test_a_recording_played_twice_is_two_detections():
    events = run(plays_in(90.0, [("jingle", 10.0, 6.0), ("jingle", 50.0, 6.0)]))
    plays = ended(events)
    assert [play.feed_range for play in plays] == [(10.0, 16.0), (50.0, 56.0)]
    assert plays[0].detection_id != plays[1].detection_id


def test_back_to_back_plays_of_one_recording_are_two_detections():
    events = run(plays_in(60.0, [("jingle", 10.0, 8.0), ("jingle", 18.0, 8.0)]))
    assert sorted(play.feed_range for play in ended(events)) == [(10.0, 18.0), (18.0, 26.0)]


def test_a_play_ends_once_a_stretch_past_its_end_no_longer_aligns():
    occurrences = tracker()
    started = occurrences.observe(15.0, [match("a", (11.0, 15.0), 0.0)])
    assert [event.state for event in started] == [OccurrenceState.STARTED]
    assert occurrences.observe(20.0, [match("a", (11.0, 17.0), 0.0)]) == []
    ending = occurrences.observe(25.0, [])
    assert [(event.state, event.occurrence.feed_range) for event in ending] == [(OccurrenceState.ENDED,
                                                                                  (11.0, 17.0))]
    assert occurrences.open == []


def test_a_stretch_that_stops_short_of_the_end_margin_keeps_the_play_open():
    occurrences = tracker()
    occurrences.observe(10.0, [match("a", (5.0, 10.0), 0.0)])
    assert occurrences.observe(11.0, []) == []  # the stretch reaches only 1 s past the play
    assert len(occurrences.open) == 1


def test_two_recordings_at_once_are_tracked_apart():
    events = run(plays_in(60.0, [("a", 10.0, 20.0), ("b", 15.0, 10.0)]))
    assert sorted((play.audio_id, play.feed_range) for play in ended(events)) == [("a", (10.0, 30.0)),
                                                                                  ("b", (15.0, 25.0))]


def test_a_shifted_alignment_inside_the_same_feed_time_continues_the_play():
    occurrences = tracker()
    occurrences.observe(10.0, [match("loop", (2.0, 10.0), 0.0)])
    # A recording that repeats itself every 4 s: the next stretch aligns one period off, over the same feed time.
    assert occurrences.observe(15.0, [match("loop", (6.0, 15.0), 0.0)]) == []
    assert [play.feed_range for play in occurrences.open] == [(2.0, 15.0)]


def test_the_strongest_evidence_speaks_for_the_play():
    occurrences = tracker()
    occurrences.observe(10.0, [match("a", (4.0, 10.0), 0.0, landmarks=0, evidence=Evidence.EMBEDDING)])
    occurrences.observe(15.0, [match("a", (4.0, 12.0), 0.0, landmarks=40, evidence=Evidence.BOTH)])
    (play,) = occurrences.open
    assert play.strongest.evidence is Evidence.BOTH
    assert play.strongest.landmarks == 40


def test_finish_ends_every_open_play_in_feed_order():
    occurrences = tracker()
    occurrences.observe(10.0, [match("b", (6.0, 10.0), 0.0), match("a", (2.0, 10.0), 3.0)])
    events = occurrences.finish()
    assert [(event.state, event.occurrence.audio_id) for event in events] == [
        (OccurrenceState.ENDED, "a"), (OccurrenceState.ENDED, "b")]
    assert occurrences.finish() == []


def test_every_started_detection_ends_once_with_the_same_id():
    events = run(plays_in(300.0, [("a", 3.0, 40.0), ("b", 60.0, 7.0), ("a", 100.0, 12.0), ("c", 101.0, 90.0)]))
    started = [event.occurrence.detection_id for event in events if event.state is OccurrenceState.STARTED]
    finished = [event.occurrence.detection_id for event in events if event.state is OccurrenceState.ENDED]
    assert sorted(started) == sorted(finished)
    assert len(set(started)) == 4


def test_a_recording_that_only_sounds_like_what_plays_is_not_a_second_play():
    occurrences = tracker()
    events = occurrences.observe(10.0, [
        match("played", (5.0, 10.0), 0.0, landmarks=300, evidence=Evidence.BOTH),
        match("alike", (5.0, 9.0), 0.0, landmarks=3, evidence=Evidence.EMBEDDING)])
    assert [event.occurrence.audio_id for event in events] == ["played"]


def test_a_few_chance_landmarks_under_a_play_are_not_a_second_play():
    occurrences = tracker()
    events = occurrences.observe(10.0, [
        match("played", (2.0, 10.0), 0.0, landmarks=300),
        match("chance", (3.3, 4.5), 0.4, landmarks=16)])
    assert [event.occurrence.audio_id for event in events] == ["played"]


def test_two_recordings_mixed_together_are_both_played():
    occurrences = tracker()
    events = occurrences.observe(10.0, [
        match("voice", (2.0, 10.0), 0.0, landmarks=120),
        match("music", (2.0, 10.0), 5.0, landmarks=60)])
    assert sorted(event.occurrence.audio_id for event in events) == ["music", "voice"]


def test_a_match_beside_a_play_is_not_dominated_by_it():
    occurrences = tracker()
    events = occurrences.observe(10.0, [
        match("first", (0.0, 5.0), 3.0, landmarks=300),
        match("second", (5.0, 10.0), 0.0, landmarks=0, evidence=Evidence.EMBEDDING)])
    assert sorted(event.occurrence.audio_id for event in events) == ["first", "second"]
