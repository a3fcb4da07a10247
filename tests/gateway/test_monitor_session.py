"""MonitorAudio's flow without servers: stretches, events, progress, the limit of monitors and the drain, with a
stand-in search that finds a 'recording' wherever the feed is loud."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest

from audiosearch.common.errors import NotFound, ResourceExhausted, Unavailable
from audiosearch.gateway.audio.decoding import DecodedAudio, resample
from audiosearch.gateway.audio.pipeline import EmbeddedAudio
from audiosearch.gateway.backends.admission import Work
from audiosearch.gateway.backends.embedder import Embeddings
from audiosearch.gateway.query.monitor import Monitors, _WindowVectors, grid_segments, matched_span
from audiosearch.gateway.settings import GatewaySettings
from audiosearch.v1 import audiosearch_pb2 as pb

RATE = 8_000
MODEL_RATE = 32_000
RECORD = pb.AudioRecord(id="a" * 32, name="jingle.wav", duration_seconds=6.0)
SHORT_RECORD = pb.AudioRecord(id="b" * 32, name="ding.wav", duration_seconds=1.5)
LOUD = 0.5


class Collections:
    def get_for_model(self, name: str) -> pb.Collection:
        if name != "library":
            raise NotFound(f"collection {name!r} does not exist", reason="COLLECTION_NOT_FOUND")
        return pb.Collection(name=name, model=pb.ModelIdentity(sample_rate_hz=MODEL_RATE), score_threshold=0.5,
                             segment_config=pb.SegmentConfig(window_seconds=2.0, hop_seconds=2.0))


class Pipeline:
    """Embeds every window as zeros; keeps the windows it was given."""

    def __init__(self) -> None:
        self.works: list[Work] = []
        self.windows: list[np.ndarray] = []

    def embed(self, audio, segment_config, cut, work=Work.INTERACTIVE):
        self.works.append(work)
        segments = cut(audio.samples, audio.sample_rate_hz, segment_config.window_seconds, segment_config.hop_seconds)
        self.windows += list(segments.windows)
        return EmbeddedAudio(audio, segments, Embeddings(np.zeros((len(segments), 4), np.float32),
                                                         np.zeros((len(segments), 527), np.float32)))


class Query:
    """Finds RECORD where the stretch is loud; the recording starts where the loudness starts in the feed."""

    def __init__(self, play_start: float) -> None:
        self.play_start = play_start
        self.stretch_start = 0.0

    def match(self, collection, embedded, top_k, threshold, audio_filter):
        assert len(embedded.embeddings.vectors) == len(embedded.segments)
        loud = np.flatnonzero(np.abs(embedded.audio.samples) > LOUD / 2)
        if len(loud) < MODEL_RATE:
            return []
        first, last = loud[0] / MODEL_RATE, (loud[-1] + 1) / MODEL_RATE
        return [pb.Match(audio=RECORD, score=0.9, landmarks=50, landmark_share=0.5,
                         decided_by=pb.MATCH_EVIDENCE_BOTH,
                         query_range=pb.TimeRange(start_seconds=first, end_seconds=last),
                         reference_range=pb.TimeRange(start_seconds=0.0, end_seconds=last - first))]


class OneFrameQuery:
    """Aligns SHORT_RECORD's landmarks on one frame, 0.2 s into the loud sound, as a short sound's can be: a range
    of no length."""

    def match(self, collection, embedded, top_k, threshold, audio_filter):
        loud = np.flatnonzero(np.abs(embedded.audio.samples) > LOUD / 2)
        if len(loud) < MODEL_RATE // 2:
            return []
        frame = loud[0] / MODEL_RATE + 0.2
        return [pb.Match(audio=SHORT_RECORD, score=0.0, landmarks=12, landmark_share=0.3,
                         decided_by=pb.MATCH_EVIDENCE_LANDMARKS,
                         query_range=pb.TimeRange(start_seconds=frame, end_seconds=frame),
                         reference_range=pb.TimeRange(start_seconds=0.2, end_seconds=0.2))]


class Context:
    def __init__(self) -> None:
        self.callbacks = []

    def add_callback(self, callback) -> bool:
        self.callbacks.append(callback)
        return True


def settings(**overrides) -> GatewaySettings:
    return GatewaySettings(monitor_window_seconds=10.0, monitor_hop_seconds=5.0, **overrides)


def feed_samples(seconds: float, play: tuple[float, float] | None) -> np.ndarray:
    samples = np.full(int(seconds * RATE), 0.01, np.float32)
    samples[::2] = -0.01
    if play:
        samples[int(play[0] * RATE) : int((play[0] + play[1]) * RATE)] = LOUD
    return samples


def requests(samples: np.ndarray, hold: threading.Event | None = None, **header) -> Iterator[pb.MonitorAudioRequest]:
    yield pb.MonitorAudioRequest(header=pb.MonitorAudioHeader(
        collection="library", raw_format=pb.RawAudioFormat(sample_rate_hz=RATE, channels=1,
                                                           sample_format=pb.SAMPLE_FORMAT_F32LE), **header))
    data = samples.astype("<f4").tobytes()
    for start in range(0, len(data), 16_000):
        yield pb.MonitorAudioRequest(chunk=data[start : start + 16_000])
    if hold is not None:
        hold.wait(30)


def monitors(play_start: float = 0.0, **overrides) -> Monitors:
    return Monitors(settings(**overrides), Collections(), Query(play_start), Pipeline())


def detections(responses: list[pb.MonitorAudioResponse]) -> list[pb.MonitorDetection]:
    return [response.detection for response in responses if response.WhichOneof("event") == "detection"]


def test_a_play_is_started_then_ended_with_its_feed_range_and_the_feed_offset():
    responses = list(monitors().monitor(requests(feed_samples(40.0, (12.0, 6.0)), feed_offset_seconds=50.0,
                                                 feed_label="radio"), Context()))
    found = detections(responses)
    assert [d.state for d in found] == [pb.DETECTION_STATE_STARTED, pb.DETECTION_STATE_ENDED]
    assert found[0].detection_id == found[1].detection_id
    assert found[1].feed_range.start_seconds == pytest.approx(62.0, abs=0.01)
    assert found[1].feed_range.end_seconds == pytest.approx(68.0, abs=0.01)
    assert found[1].audio.id == RECORD.id
    assert found[1].feed_label == "radio"
    final = responses[-1].progress
    assert final.audio_seconds == pytest.approx(90.0)
    assert final.open_detections == 0


def test_a_short_sound_whose_landmarks_align_on_one_frame_is_detected_over_the_whole_sound():
    found = detections(list(Monitors(settings(), Collections(), OneFrameQuery(), Pipeline()).monitor(
        requests(feed_samples(30.0, (12.0, 1.5))), Context())))
    assert [d.state for d in found] == [pb.DETECTION_STATE_STARTED, pb.DETECTION_STATE_ENDED]
    assert found[1].feed_range.start_seconds == pytest.approx(12.0, abs=0.02)
    assert found[1].feed_range.end_seconds == pytest.approx(13.5, abs=0.02)
    assert found[1].reference_range.start_seconds == pytest.approx(0.0, abs=0.02)
    assert found[1].reference_range.end_seconds == pytest.approx(1.5, abs=0.02)


def test_a_match_spans_the_short_sound_that_holds_it_within_the_recording_as_placed():
    events = [(1.0, 2.0), (4.0, 4.6)]
    # Landmarks on one frame of the sound at 4.0-4.6 s; the recording starts 0.1 s before that frame.
    assert matched_span((4.3, 4.3), -4.2, 0.5, 10.0, events) == pytest.approx((4.2, 4.6))
    # No short sound holds it: a recording shorter than the stretch is matched whole, where the match places it.
    assert matched_span((7.3, 7.3), -7.0, 1.5, 10.0, events) == pytest.approx((7.0, 8.5))
    # ... but not past the stretch's end; a long recording keeps the range its evidence gave.
    assert matched_span((9.5, 9.5), -9.0, 1.5, 10.0, events) == pytest.approx((9.0, 10.0))
    assert matched_span((6.0, 8.0), 30.0, 180.0, 10.0, events) == (6.0, 8.0)


def test_stretches_are_embedded_as_monitor_work():
    pipeline = Pipeline()
    list(Monitors(settings(), Collections(), Query(0.0), pipeline).monitor(
        requests(feed_samples(20.0, (2.0, 6.0))), Context()))
    assert pipeline.works
    assert set(pipeline.works) == {Work.MONITOR}


def test_each_window_of_the_feed_grid_is_embedded_once_across_overlapping_stretches():
    pipeline = Pipeline()
    noise = np.random.default_rng(0).uniform(-0.3, 0.3, int(31.0 * RATE)).astype(np.float32)
    list(Monitors(settings(), Collections(), Query(0.0), pipeline).monitor(requests(noise), Context()))
    # Stretches end every 5 s and span 10 s; 2 s windows start on the feed's 2 s grid (0, 2, .. 28), and the
    # feed's last stretch adds one reaching its end (29-31 s). Noise has no short sounds to loop.
    window = 2 * MODEL_RATE
    assert all(len(embedded) == window for embedded in pipeline.windows)
    assert len(pipeline.windows) == 15 + 1
    feed = resample(noise, RATE, MODEL_RATE)
    grid = range(0, 15 * window, window)
    # Each embedded window is the feed's audio at one grid position (up to the edges of a stretch's resampling).
    differences = np.array([[np.mean(np.abs(embedded - feed[start : start + window])) for start in grid]
                            for embedded in pipeline.windows[:15]])
    assert sorted(np.argmin(differences, axis=1).tolist()) == list(range(15))
    assert differences.min(axis=1).max() < 1e-3


def test_stretches_searched_together_embed_their_new_windows_once_in_one_request():
    pipeline = Pipeline()
    vectors = _WindowVectors(pipeline)
    feed = np.random.default_rng(2).uniform(-0.3, 0.3, 20 * MODEL_RATE).astype(np.float32)
    config = pb.SegmentConfig(window_seconds=2.0, hop_seconds=2.0)
    stretches = []
    for first, last in ((0, 10), (5, 15), (10, 20)):
        audio = DecodedAudio(feed[first * MODEL_RATE : last * MODEL_RATE], MODEL_RATE, MODEL_RATE, 1, "feed")
        stretches.append((audio, *grid_segments(audio.samples, MODEL_RATE, 2.0, 2.0, first * MODEL_RATE, False)))
    embedded = vectors.embedded(stretches[:2], config)
    assert len(pipeline.works) == 1
    assert len(pipeline.windows) == 7  # 0, 2, 4, 6, 8 s, then 6, 8, 10, 12 s: those at 6 and 8 s shared
    assert [len(item.embeddings.vectors) for item in embedded] == [5, 4]
    vectors.embedded(stretches[2:], config)
    assert len(pipeline.works) == 2
    assert len(pipeline.windows) == 10  # 10, 12, 14, 16, 18 s: those at 10 and 12 s known from the second


def test_grid_windows_start_on_the_feed_grid_whatever_the_stretch_start():
    samples = np.random.default_rng(1).uniform(-0.3, 0.3, 10 * MODEL_RATE).astype(np.float32)
    segments, keys = grid_segments(samples, MODEL_RATE, 2.0, 2.0, origin=5 * MODEL_RATE, final=False)
    assert keys == [6 * MODEL_RATE, 8 * MODEL_RATE, 10 * MODEL_RATE, 12 * MODEL_RATE]
    assert segments.starts_seconds.tolist() == [1.0, 3.0, 5.0, 7.0]
    assert np.array_equal(segments.windows[0], samples[MODEL_RATE : 3 * MODEL_RATE])
    final, final_keys = grid_segments(samples, MODEL_RATE, 2.0, 2.0, origin=5 * MODEL_RATE, final=True)
    assert final_keys[-1] == 13 * MODEL_RATE
    assert final.ends_seconds[-1] == pytest.approx(10.0)


def test_a_short_sound_is_looped_alike_in_both_stretches_that_hold_it():
    feed = np.full(15 * MODEL_RATE, 0.001, np.float32)
    feed[7 * MODEL_RATE : 7 * MODEL_RATE + MODEL_RATE // 2] = np.sin(np.arange(MODEL_RATE // 2) * 0.3) * 0.5
    first, first_keys = grid_segments(feed[: 10 * MODEL_RATE], MODEL_RATE, 2.0, 2.0, origin=0, final=False)
    second, second_keys = grid_segments(feed[5 * MODEL_RATE :], MODEL_RATE, 2.0, 2.0, origin=5 * MODEL_RATE,
                                        final=False)
    looped = [index for index, key in enumerate(first_keys) if isinstance(key, bytes)]
    assert looped
    assert all(first.ends_seconds[index] - first.starts_seconds[index] < 2.0 for index in looped)
    assert first.starts_seconds[looped[0]] == pytest.approx(7.0, abs=0.02)
    assert second.starts_seconds[second_keys.index(first_keys[looped[0]])] == pytest.approx(2.0, abs=0.02)


def test_a_feed_that_ends_mid_play_ends_the_play_at_the_end():
    found = detections(list(monitors().monitor(requests(feed_samples(20.0, (16.0, 4.0))), Context())))
    assert [d.state for d in found] == [pb.DETECTION_STATE_STARTED, pb.DETECTION_STATE_ENDED]
    assert found[1].feed_range.end_seconds == pytest.approx(20.0, abs=0.01)


def test_wall_clock_times_follow_the_headers_start_time():
    header = pb.MonitorAudioHeader()
    header.start_time.FromSeconds(1_700_000_000)
    found = detections(list(monitors().monitor(
        requests(feed_samples(30.0, (12.0, 6.0)), start_time=header.start_time), Context())))
    assert found[-1].feed_start_time.ToNanoseconds() / 1e9 == pytest.approx(1_700_000_012, abs=0.01)


def test_an_unknown_collection_is_not_found():
    stream = monitors().monitor(iter([pb.MonitorAudioRequest(header=pb.MonitorAudioHeader(collection="other"))]),
                                Context())
    with pytest.raises(NotFound):
        next(stream)


def test_beyond_the_limit_a_monitor_is_refused_until_one_ends():
    gateway = monitors(max_concurrent_monitors=1, monitor_progress_seconds=0.01)
    hold = threading.Event()
    first = gateway.monitor(requests(feed_samples(3.0, None), hold), Context())
    next(first)  # running: it holds the only slot
    with pytest.raises(ResourceExhausted):
        next(gateway.monitor(requests(feed_samples(3.0, None)), Context()))
    hold.set()
    list(first)
    assert next(gateway.monitor(requests(feed_samples(3.0, None)), Context())) is not None


def test_a_drain_ends_the_open_plays_then_the_stream_with_the_second_to_resume_from():
    gateway = monitors(monitor_progress_seconds=0.01)
    hold = threading.Event()
    stream = gateway.monitor(requests(feed_samples(30.0, (22.0, 8.0)), hold), Context())
    received = []
    for response in stream:
        received.append(response)
        if detections(received):
            break
    gateway.drain()
    with pytest.raises(Unavailable) as stopped:
        received.extend(stream)
    hold.set()
    found = detections(received)
    assert [d.state for d in found] == [pb.DETECTION_STATE_STARTED, pb.DETECTION_STATE_ENDED]
    assert stopped.value.reason == "SHUTTING_DOWN"
    # The play was found by the stretch ending at second 25, the last searched: resume 5 s (the overlap) before.
    assert float(stopped.value.metadata["resume_from_seconds"]) == pytest.approx(20.0)


def test_a_cancelled_stream_stops_without_further_events():
    context = Context()
    hold = threading.Event()
    stream = monitors(monitor_progress_seconds=0.01).monitor(requests(feed_samples(3.0, None), hold), context)
    next(stream)
    for callback in context.callbacks:
        callback()
    assert list(stream) == []
    hold.set()
