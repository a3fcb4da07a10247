"""Cutting decoded audio into the fixed-length windows the embedder sees."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SILENCE_BELOW_LOUDEST_DB = 50.0
# A short sound is looped from its first to its last audible 10 ms, not from the file's edges: codec padding
# (mp3 adds ~50 ms), leading silence or a cut tail would otherwise change the loop and so the vector.
EDGE_BELOW_PEAK_DB = 60.0
EDGE_FRAME_SECONDS = 0.01
# A stored short sound and a query's event get a second window, looped over their loud core alone (the frames
# within CORE_BELOW_PEAK_DB of their own loudest), with the same range: a bed under the query moves the end of the
# quiet tail that the audible span keeps, not the core's, and the matcher takes the better of the two. Only where
# the core is shorter than the span by more than CORE_MIN_SHORTER_SECONDS.
CORE_BELOW_PEAK_DB = 20.0
CORE_MIN_SHORTER_SECONDS = 0.02


QUERY_HOPS_PER_WINDOW = 8
# Short sounds inside a longer query: frames this far above the query's median level (its background), in runs
# shorter than a window, at most this many (the loudest), joined across gaps up to EVENT_GAP_SECONDS.
EVENT_ABOVE_BACKGROUND_DB = 10.0
# An event's span then reaches out, frame by frame, while the level stays this far above the background, so a
# decay that the 10 dB detection cut off is kept in the loop as ingest keeps it (hysteresis).
EVENT_EDGE_ABOVE_BACKGROUND_DB = 3.0
EVENT_MIN_SECONDS = 0.05
EVENT_GAP_SECONDS = 0.05
MAX_QUERY_EVENTS = 8


def query_hop_seconds(window_seconds: float, hop_seconds: float) -> float:
    """Queries are cut at a finer hop than recordings, so wherever an excerpt starts some query window lies within
    half a query hop (a sixteenth of a window) of a stored one. The stored side can then use a hop as long as the
    window (each second of audio embedded once at ingest) while the cost of the density falls on the short query."""
    return min(hop_seconds, window_seconds / QUERY_HOPS_PER_WINDOW)


@dataclass(frozen=True)
class Segments:
    windows: np.ndarray  # float32 (n, window_samples)
    starts_seconds: np.ndarray  # float64 (n,)
    ends_seconds: np.ndarray  # float64 (n,)

    def __len__(self) -> int:
        return len(self.windows)


def cut_segments(samples: np.ndarray, sample_rate_hz: int, window_seconds: float, hop_seconds: float) -> Segments:
    """Overlapping windows covering the whole clip; a clip shorter than one window is looped to fill it, from
    its first to its last audible moment (which the one segment's range then gives).

    Windows much quieter than the loudest one are dropped (silence matches any silence), but never all.
    """
    window = round(window_seconds * sample_rate_hz)
    hop = round(hop_seconds * sample_rate_hz)
    if len(samples) <= window:
        span = audible_bounds(samples, sample_rate_hz)
        return _looped(samples, sample_rate_hz, window, [span], [span])
    starts = list(range(0, len(samples) - window + 1, hop))
    if starts[-1] + window < len(samples):
        starts.append(len(samples) - window)
    windows = np.stack([samples[start : start + window] for start in starts])
    starts_seconds = np.array(starts, dtype=np.float64) / sample_rate_hz
    segments = Segments(windows, starts_seconds, starts_seconds + window_seconds)
    return _without_silent_windows(segments)


def stored_segments(samples: np.ndarray, sample_rate_hz: int, window_seconds: float, hop_seconds: float) -> Segments:
    """What ingest stores: `cut_segments`, plus the core loop of a sound shorter than a window (an alternative
    window with the same range; tagging leaves it out)."""
    segments = cut_segments(samples, sample_rate_hz, window_seconds, hop_seconds)
    window = segments.windows.shape[1]
    if len(samples) > window:
        return segments
    return _joined(segments, _core_loops(samples, sample_rate_hz, window, [audible_bounds(samples, sample_rate_hz)]))


def event_segments(samples: np.ndarray, sample_rate_hz: int, window_seconds: float) -> Segments:
    """Short sounds that stand out of a longer query's background, each looped to one window over its own span.

    Ingest stores a sound shorter than a window looped; a query that holds the same sound once, over other
    audio, only has windows of it once plus that audio. Looping each such event the same way lets it meet the
    stored loop, and its range says where in the query it is; its core loop follows, as ingest stores one. A query
    no longer than a window has none (the whole query is already looped).
    """
    window = round(window_seconds * sample_rate_hz)
    frame = max(1, round(EDGE_FRAME_SECONDS * sample_rate_hz))
    if len(samples) <= window:
        return _no_segments(window)
    levels = _frame_levels_db(samples, frame)
    background, peak_floor = float(np.median(levels)), float(levels.max()) - EDGE_BELOW_PEAK_DB
    threshold = max(background + EVENT_ABOVE_BACKGROUND_DB, peak_floor)
    runs = _runs(levels >= threshold, max_gap=round(EVENT_GAP_SECONDS / EDGE_FRAME_SECONDS))
    min_frames = round(EVENT_MIN_SECONDS / EDGE_FRAME_SECONDS)
    short = [(first, last) for first, last in runs if min_frames <= last - first and (last - first) * frame < window]
    loudest = sorted(short, key=lambda run: float(levels[run[0] : run[1]].max()), reverse=True)[:MAX_QUERY_EVENTS]
    if not loudest:
        return _no_segments(window)
    edge_db = max(background + EVENT_EDGE_ABOVE_BACKGROUND_DB, peak_floor)
    widened = [_widened(run, levels >= edge_db, -(-window // frame) - 1) for run in sorted(loudest)]
    edge_level = float(np.sqrt(10 ** (edge_db / 10)))
    bounds = [_narrowed(samples, first * frame, min(len(samples), last * frame), frame, edge_level)
              for first, last in widened]
    return _joined(_looped(samples, sample_rate_hz, window, bounds, bounds),
                   _core_loops(samples, sample_rate_hz, window, bounds))


def query_segments(samples: np.ndarray, sample_rate_hz: int, window_seconds: float, hop_seconds: float) -> Segments:
    """A query's windows for a collection stored at `hop_seconds`: every query hop, then the short events.

    A short query alone gets no core loop: its audible span is the stored one's, unless a filter or a codec changed
    its envelope, and then its 20 dB core moved too, so a core loop of the query ranks such queries worse
    (docs/benchmarks.md, bench.quality). Its loop still meets the stored core when that is closer."""
    regular = cut_segments(samples, sample_rate_hz, window_seconds, query_hop_seconds(window_seconds, hop_seconds))
    return _joined(regular, event_segments(samples, sample_rate_hz, window_seconds))


def event_spans(segments: Segments, window_seconds: float) -> list[tuple[float, float]]:
    """The spans of the short sounds the audio was cut around (their windows are loops, shorter than a window)."""
    spans = zip(segments.starts_seconds.tolist(), segments.ends_seconds.tolist(), strict=True)
    return [(start, end) for start, end in spans if end - start < window_seconds - 1e-6]


def audible_bounds(samples: np.ndarray, sample_rate_hz: int, below_peak_db: float = EDGE_BELOW_PEAK_DB
                   ) -> tuple[int, int]:
    """First and last (exclusive) sample of the audible part: the 10 ms frames within `below_peak_db` of the
    loudest frame, narrowed inside the edge frames to the first and last sample that reach that level."""
    frame = max(1, round(EDGE_FRAME_SECONDS * sample_rate_hz))
    energy = _frame_energies(samples, frame)
    if not energy.any():
        return 0, len(samples)
    floor = energy.max() * 10 ** (-below_peak_db / 10)
    audible = np.flatnonzero(energy >= floor)
    first, last = int(audible[0]) * frame, min(len(samples), (int(audible[-1]) + 1) * frame)
    return _narrowed(samples, first, last, frame, float(np.sqrt(floor)))


def _core_loops(samples: np.ndarray, sample_rate_hz: int, window: int, spans: list[tuple[int, int]]) -> Segments:
    """For each looped span [first, last) whose loud core is shorter than it, the core looped, with the span's range."""
    shorter = round(CORE_MIN_SHORTER_SECONDS * sample_rate_hz)
    pairs = [(span, loud_core(samples, *span, sample_rate_hz)) for span in spans]
    kept = [(span, core) for span, core in pairs if core[1] - core[0] < span[1] - span[0] - shorter]
    if not kept:
        return _no_segments(window)
    return _looped(samples, sample_rate_hz, window, [core for _, core in kept], [span for span, _ in kept])


def loud_core(samples: np.ndarray, first: int, last: int, sample_rate_hz: int) -> tuple[int, int]:
    """[first, last) of the frames of `samples[first:last]` within CORE_BELOW_PEAK_DB of its loudest."""
    core_first, core_last = audible_bounds(samples[first:last], sample_rate_hz, CORE_BELOW_PEAK_DB)
    return first + core_first, first + core_last


def _looped(samples: np.ndarray, sample_rate_hz: int, window: int, loops: list[tuple[int, int]],
            ranges: list[tuple[int, int]]) -> Segments:
    """One window per loop (`samples[first:last]` looped to the window), with the range of its `ranges` entry."""
    windows = np.stack([loop_to(samples[first:last], window) for first, last in loops])
    starts, ends = (np.array(edge, dtype=np.float64) / sample_rate_hz for edge in zip(*ranges, strict=True))
    return Segments(windows, starts, ends)


def _joined(first: Segments, second: Segments) -> Segments:
    return Segments(np.concatenate([first.windows, second.windows]),
                    np.concatenate([first.starts_seconds, second.starts_seconds]),
                    np.concatenate([first.ends_seconds, second.ends_seconds]))


def _narrowed(samples: np.ndarray, first: int, last: int, frame: int, level: float) -> tuple[int, int]:
    """[first, last) narrowed inside its edge frames to the first and last sample that reach `level`."""
    head = np.flatnonzero(np.abs(samples[first : first + frame]) >= level)
    tail = np.flatnonzero(np.abs(samples[max(first, last - frame) : last]) >= level)
    if len(head):
        first += int(head[0])
    if len(tail):
        last = max(first + 1, max(first, last - frame) + int(tail[-1]) + 1)
    return first, last


def _widened(run: tuple[int, int], above: np.ndarray, max_frames: int) -> tuple[int, int]:
    """The frame run extended on both sides while `above` holds, to at most `max_frames` frames."""
    first, last = run
    while first > 0 and above[first - 1] and last - first < max_frames:
        first -= 1
    while last < len(above) and above[last] and last - first < max_frames:
        last += 1
    return first, last


def _frame_energies(samples: np.ndarray, frame: int) -> np.ndarray:
    """Mean square of each `frame` samples, the last frame zero-padded."""
    count = -(-len(samples) // frame)
    padded = np.zeros(count * frame, dtype=np.float64)
    padded[: len(samples)] = samples
    return np.mean(np.square(padded.reshape(count, frame)), axis=1)


def _frame_levels_db(samples: np.ndarray, frame: int) -> np.ndarray:
    return 10 * np.log10(_frame_energies(samples, frame) + 1e-20)


def _runs(flags: np.ndarray, max_gap: int) -> list[tuple[int, int]]:
    """[first, last) of each run of True, runs separated by at most `max_gap` False joined."""
    indices = np.flatnonzero(flags)
    if not len(indices):
        return []
    breaks = np.flatnonzero(np.diff(indices) > max_gap + 1)
    firsts = np.concatenate([[indices[0]], indices[breaks + 1]])
    lasts = np.concatenate([indices[breaks], [indices[-1]]]) + 1
    return [(int(first), int(last)) for first, last in zip(firsts, lasts, strict=True)]


def _no_segments(window: int) -> Segments:
    return Segments(np.zeros((0, window), dtype=np.float32), np.zeros(0), np.zeros(0))


def loop_to(samples: np.ndarray, length: int) -> np.ndarray:
    # Looping rather than zero padding keeps a short sound's texture over the whole window, so the
    # same sound matches whether it arrives alone or inside a longer recording.
    repeats = -(-length // len(samples))
    return np.tile(samples, repeats)[:length].astype(np.float32, copy=False)


def _without_silent_windows(segments: Segments) -> Segments:
    rms = np.sqrt(np.mean(np.square(segments.windows, dtype=np.float64), axis=1))
    audible = rms >= rms.max() * 10 ** (-SILENCE_BELOW_LOUDEST_DB / 20)
    return Segments(segments.windows[audible], segments.starts_seconds[audible], segments.ends_seconds[audible])
