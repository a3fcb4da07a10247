"""bench.monitor's feed: where each play sits, what of its recording it holds, and how detections are scored."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bench.monitor import (
    MIN_GAP_SECONDS,
    RATE,
    Detection,
    Play,
    Recording,
    monitor_stretch,
    placed,
    plan_plays,
    render,
    score,
    summary,
)

SOUNDS = [Recording(f"sound{i}.wav", 1.0 + i % 5, music=False) for i in range(60)]
TRACKS = [Recording(f"track{i}.ogg", 120.0 + i, music=True) for i in range(12)]


def planned(count: int = 40, feed_seconds: float = 1800.0, seed: int = 0) -> list[Play]:
    return plan_plays(SOUNDS + TRACKS, feed_seconds, count, np.random.default_rng(seed))


def test_plays_lie_inside_the_feed_in_order_with_bed_between_them() -> None:
    plays = planned()
    assert len(plays) == 40
    assert plays[0].feed_start >= MIN_GAP_SECONDS - 1e-9
    assert plays[-1].feed_end <= 1800.0 - MIN_GAP_SECONDS + 1e-6
    for before, after in itertools.pairwise(plays):
        assert after.feed_start - before.feed_end >= MIN_GAP_SECONDS - 1e-9


def test_music_plays_are_excerpts_of_ten_to_sixty_seconds_inside_their_track() -> None:
    lengths = {track.name: track.seconds for track in TRACKS}
    music = [play for play in planned() if play.music]
    assert len(music) >= 10
    for play in music:
        assert play.reference_start >= 0
        assert play.reference_start + play.clip_seconds <= lengths[play.recording] + 1e-9
        if not play.cut_short:
            assert 10.0 <= play.clip_seconds <= 60.0


def test_some_recordings_are_played_twice_and_some_plays_cut_short() -> None:
    plays = planned()
    times_played: dict[str, int] = {}
    for play in plays:
        times_played[play.recording] = times_played.get(play.recording, 0) + 1
    replays = [play for play in plays if play.replay]
    assert len(replays) == 6
    assert all(times_played[play.recording] == 2 for play in replays)
    assert sum(play.cut_short for play in plays) == 6
    whole_sounds = {sound.name: sound.seconds for sound in SOUNDS}
    for play in plays:
        if not play.music:
            shorter = play.clip_seconds < whole_sounds[play.recording] - 1e-9
            assert shorter == play.cut_short


def test_every_transform_is_used_and_the_plan_is_seeded() -> None:
    plays = planned()
    assert {play.transform for play in plays} == {"mp3", "gain", "noise", "telephone", "8k", "mix"}
    assert planned() == plays
    assert planned(seed=1) != plays


def test_a_feed_too_short_for_its_plays_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot hold"):
        planned(count=40, feed_seconds=300.0)


def test_the_truth_is_the_audible_part_of_the_clip_where_it_was_placed() -> None:
    play = Play("track1.ogg", True, "gain", feed_start=10.0, clip_seconds=3.0, reference_start=50.0,
                cut_short=False, replay=False)
    clip = np.zeros(3 * RATE, np.float32)
    clip[RATE // 2 : 2 * RATE] = 0.5  # silent for 0.5 s, audible for 1.5 s, silent to the end
    bed_samples = np.full(30 * RATE, 0.01, np.float32)
    feed, places = render(30.0, [play], [clip], bed_samples)
    assert places[0].audible == pytest.approx((10.5, 12.0), abs=0.011)
    assert places[0].reference_range == pytest.approx((50.5, 52.0), abs=0.011)
    assert np.all(feed[10 * RATE : 13 * RATE] == clip)
    assert np.all(feed[: 10 * RATE] == 0.01)
    assert np.all(feed[13 * RATE :] == 0.01)


def detection(recording: str, start: float, end: float, started_at: float = 0.0) -> Detection:
    return Detection(f"{recording}-{start}", recording, (start, end), (0.0, end - start), started_at, "LANDMARKS",
                     20, 0.5)


def test_detections_are_scored_against_the_plays_they_overlap() -> None:
    plays = [Play("a.wav", False, "gain", 10.0, 4.0, 0.0, False, False),
             Play("b.wav", False, "mp3", 30.0, 4.0, 0.0, False, False),
             Play("a.wav", False, "noise", 60.0, 4.0, 0.0, False, True)]
    places = [placed(play, np.full(4 * RATE, 0.3, np.float32)) for play in plays]
    names = {"id-a": "a.wav", "id-b": "b.wav", "id-c": "c.wav"}
    detections = [
        detection("id-a", 10.3, 14.1, started_at=15.0),  # the first play of a, 0.3 s late
        detection("id-a", 11.0, 13.0),  # a second detection of that play: wrong, over a play
        detection("id-c", 31.0, 33.0),  # another recording over b's play
        detection("id-a", 45.0, 47.0),  # on the bed
        detection("id-a", 60.0, 60.0),  # the replay of a, aligned at one frame
    ]
    scored = score(places, detections, 100.0, names, sent_at=lambda feed_second: feed_second)
    assert (scored.found, scored.right, scored.wrong, scored.bed_false) == (2, 2, 2, 1)
    assert scored.start_errors == pytest.approx([0.3, 0.0])
    assert scored.end_errors == pytest.approx([0.1, 4.0])
    assert scored.latencies == pytest.approx([1.0, -64.0])
    assert scored.bed_hours == pytest.approx(88.0 / 3600)
    figures = summary(scored)
    assert figures["recall"] == pytest.approx(2 / 3)
    assert figures["precision"] == pytest.approx(2 / 5)
    assert figures["false_per_bed_hour"] == pytest.approx(3600 / 88)
    assert figures["start_error"]["within_0_5_s"] == 1.0
    assert figures["end_error"]["within_0_5_s"] == 0.5
    assert [line.split(" (")[0] for line in scored.missed] == ["b.wav"]


def test_a_missed_play_is_searched_in_the_first_monitor_stretch_that_holds_it_whole() -> None:
    assert monitor_stretch((12.0, 13.0)) == (5.0, 15.0)
    assert monitor_stretch((14.5, 15.5)) == (10.0, 20.0)  # across a stretch's end: only the next holds it whole
    assert monitor_stretch((2.0, 3.0)) == (0.0, 5.0)
    assert monitor_stretch((20.0, 45.0)) == (20.0, 30.0)  # longer than a stretch: the first one full of it
