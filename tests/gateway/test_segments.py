import numpy as np
import pytest

from audiosearch.gateway.audio.segments import (
    CORE_BELOW_PEAK_DB,
    MAX_QUERY_EVENTS,
    audible_bounds,
    cut_segments,
    event_segments,
    loop_to,
    query_hop_seconds,
    query_segments,
    stored_segments,
)

RATE = 32_000


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(int(seconds * RATE)).astype(np.float32) * 0.1


def test_short_clip_is_one_window_looped_not_zero_padded():
    clip = noise(0.3)
    segments = cut_segments(clip, RATE, 2.0, 1.0)
    assert len(segments) == 1
    assert segments.windows.shape == (1, 2 * RATE)
    assert np.array_equal(segments.windows[0, len(clip) : 2 * len(clip)], clip)
    assert segments.ends_seconds[0] == pytest.approx(0.3)


def test_windows_overlap_by_hop_and_cover_the_tail():
    segments = cut_segments(noise(5.5), RATE, 2.0, 1.0)
    assert list(segments.starts_seconds) == [0.0, 1.0, 2.0, 3.0, 3.5]
    assert segments.ends_seconds[-1] == pytest.approx(5.5)


def test_silent_windows_are_dropped_but_never_all():
    clip = np.concatenate([noise(2.0), np.zeros(4 * RATE, np.float32)])
    segments = cut_segments(clip, RATE, 2.0, 1.0)
    assert list(segments.starts_seconds) == [0.0, 1.0]


def test_a_short_sound_is_looped_from_its_audible_part_and_its_range_says_where_that_is():
    sound = noise(0.3)
    padded = np.concatenate([np.zeros(int(0.05 * RATE), np.float32), sound, np.zeros(int(0.1 * RATE), np.float32)])
    segments = cut_segments(padded, RATE, 2.0, 1.0)
    assert segments.starts_seconds[0] == pytest.approx(0.05, abs=0.01)
    assert segments.ends_seconds[0] == pytest.approx(0.35, abs=0.01)
    assert np.array_equal(segments.windows, cut_segments(sound, RATE, 2.0, 1.0).windows)


def test_codec_padding_does_not_change_a_short_sounds_window():
    sound = noise(0.4, seed=3)
    padded = np.concatenate([np.full(1105, 1e-6, np.float32), sound, np.zeros(600, np.float32)])
    alone, with_padding = (cut_segments(clip, RATE, 2.0, 1.0).windows for clip in (sound, padded))
    assert np.array_equal(alone, with_padding)


def tone(seconds: float, hz: float, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * hz * np.arange(int(seconds * RATE)) / RATE)).astype(np.float32)


def placed(background: np.ndarray, sound: np.ndarray, at_seconds: float) -> np.ndarray:
    mixed = background.copy()
    start = int(at_seconds * RATE)
    mixed[start : start + len(sound)] += sound
    return mixed


def test_a_short_sound_over_a_quieter_background_becomes_a_window_looped_like_the_stored_one():
    sound = tone(0.7, 440.0)
    query = placed(noise(8.0) * 0.1, sound, 3.2)

    events = event_segments(query, RATE, 2.0)

    assert len(events) == 1
    assert (events.starts_seconds[0], events.ends_seconds[0]) == pytest.approx((3.2, 3.9), abs=0.011)
    stored = cut_segments(sound, RATE, 2.0, 2.0).windows[0]
    correlation = np.corrcoef(events.windows[0], stored)[0, 1]
    assert correlation > 0.95, "the event's loop lines up with the loop ingest stores for the sound alone"


def test_an_events_span_keeps_the_decay_that_stands_above_the_background():
    # A struck tone 31 dB over the background, decaying 60 dB a second: the 10 dB detection alone ends it after
    # about 0.36 s; the span reaches on while the frames stay 3 dB over the background, which the tone plus the
    # background do until the tone falls to the background's own level, after about 0.52 s.
    seconds = np.arange(int(0.6 * RATE)) / RATE
    struck = (tone(0.6, 440.0) * 10 ** (-60 / 20 * seconds)).astype(np.float32)

    events = event_segments(placed(noise(8.0) * 0.1, struck, 3.2), RATE, 2.0)

    assert len(events) == 2, "the event's loop, then its core loop"
    assert events.starts_seconds[0] == pytest.approx(3.2, abs=0.011)
    assert events.ends_seconds[0] == pytest.approx(3.2 + 0.52, abs=0.03)


def struck_tone(seconds: float = 0.6) -> np.ndarray:
    """A tone decaying 60 dB a second: its loud core (within 20 dB of its peak) is its first third of a second."""
    decay = 10 ** (-60 / 20 * np.arange(int(seconds * RATE)) / RATE)
    return (tone(seconds, 440.0) * decay).astype(np.float32)


def test_a_decaying_short_sound_is_stored_also_as_its_core_looped_with_the_same_range():
    sound = struck_tone()

    segments = stored_segments(sound, RATE, 2.0, 2.0)

    assert len(segments) == 2
    assert np.array_equal(segments.windows[:1], cut_segments(sound, RATE, 2.0, 2.0).windows)
    assert segments.starts_seconds[1] == segments.starts_seconds[0] == pytest.approx(0.0, abs=0.001)
    assert segments.ends_seconds[1] == segments.ends_seconds[0] == pytest.approx(0.6, abs=0.011)
    first, last = audible_bounds(sound, RATE, CORE_BELOW_PEAK_DB)
    assert (last - first) / RATE == pytest.approx(1 / 3, abs=0.011)
    assert np.array_equal(segments.windows[1], loop_to(sound[first:last], 2 * RATE))


def test_a_sound_with_no_quiet_tail_a_long_recording_and_tagging_get_no_core_loop():
    assert len(stored_segments(tone(0.7, 440.0), RATE, 2.0, 2.0)) == 1
    long_decay = np.concatenate([struck_tone(), struck_tone(), struck_tone(), struck_tone()])
    assert np.array_equal(stored_segments(long_decay, RATE, 2.0, 2.0).windows,
                          cut_segments(long_decay, RATE, 2.0, 2.0).windows)
    assert len(cut_segments(struck_tone(), RATE, 2.0, 2.0)) == 1


def test_an_events_core_loop_follows_its_loop_with_the_events_range():
    sound = struck_tone()

    events = event_segments(placed(noise(8.0) * 0.01, sound, 3.2), RATE, 2.0)

    assert len(events) == 2
    assert list(events.starts_seconds) == [events.starts_seconds[0]] * 2
    assert list(events.ends_seconds) == [events.ends_seconds[0]] * 2
    core = stored_segments(sound, RATE, 2.0, 2.0).windows[1]
    one_pass = int(0.3 * RATE)
    assert np.corrcoef(events.windows[1][:one_pass], core[:one_pass])[0, 1] > 0.99, "it starts as the stored core"
    assert np.corrcoef(events.windows[0][:one_pass], core[:one_pass])[0, 1] > 0.99
    assert np.corrcoef(events.windows[1], core)[0, 1] > np.corrcoef(events.windows[0], core)[0, 1] + 0.5


def test_a_background_alone_a_long_sound_or_a_query_within_one_window_has_no_events():
    assert len(event_segments(noise(8.0), RATE, 2.0)) == 0
    assert len(event_segments(placed(noise(8.0) * 0.1, tone(3.0, 440.0), 2.0), RATE, 2.0)) == 0
    assert len(event_segments(placed(noise(1.8) * 0.1, tone(0.5, 440.0), 0.5), RATE, 2.0)) == 0


def test_only_the_loudest_events_are_kept_in_time_order():
    query = noise(30.0) * 0.05
    for index in range(MAX_QUERY_EVENTS + 3):
        query = placed(query, tone(0.4, 300.0 + 50 * index, amplitude=0.2 + 0.05 * index), 1.0 + 2.5 * index)

    events = event_segments(query, RATE, 2.0)

    assert len(events) == MAX_QUERY_EVENTS
    assert list(events.starts_seconds) == sorted(events.starts_seconds)
    assert events.starts_seconds[0] == pytest.approx(1.0 + 2.5 * 3, abs=0.011), "the three quietest are left out"


def test_a_query_is_its_windows_at_the_query_hop_then_its_events():
    query = placed(noise(8.0) * 0.1, tone(0.7, 440.0), 3.2)

    segments = query_segments(query, RATE, 2.0, 2.0)

    regular = cut_segments(query, RATE, 2.0, query_hop_seconds(2.0, 2.0))
    assert len(segments) == len(regular) + 1
    assert np.array_equal(segments.starts_seconds[:-1], regular.starts_seconds)
    assert (segments.starts_seconds[-1], segments.ends_seconds[-1]) == pytest.approx((3.2, 3.9), abs=0.011)
