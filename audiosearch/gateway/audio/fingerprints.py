"""Landmarks: hashes of pairs of spectral peaks, the classic audio fingerprint, beside the embeddings.

A peak is a local maximum of the spectrogram. Peaks are picked in fixed frequency bands, each with its own
quota per second ranked within the band, so a copy that lost some bands (a telephone line, an 8 kHz codec) keeps
the peaks of the bands it still has. Each peak is paired with the next few peaks of its band; a pair hashes its
two frequencies and their time difference, which no gain, codec or added sound changes, and it carries the time
of its first peak, so matching landmarks also tell where a query sits in a recording. They do not depend on the
embedding model: they hold whether its weights are trained or not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy.ndimage import maximum_filter

from audiosearch.gateway.audio.segments import loud_core
from audiosearch.search.v1 import search_pb2 as spb

FRAME_SECONDS = 0.032
HOP_SECONDS = 0.010
BANDS_HZ = ((400.0, 3000.0), (3000.0, 7000.0), (7000.0, 15000.0), (60.0, 400.0))
PEAKS_PER_SECOND = 15  # per band
MIN_PEAKS = 12  # per band and second-long block, so a short sound still has landmarks enough to stand out
BLOCK_FRAMES = 100
NEIGHBOURHOOD = (9, 9)  # frames x frequency bins a peak must top
FLOOR_DB = 70.0  # peaks more than this under the clip's loudest bin are ignored
SILENCE_DBFS = -100.0  # and so are peaks under this (relative to a full-scale sine): digital silence has none
FANOUT = 5  # pairs per anchor peak
CANDIDATES = 3 * FANOUT
MAX_PAIR_FRAMES = 60
MAX_PAIR_BINS = 40


@dataclass(frozen=True)
class Landmarks:
    hashes: np.ndarray  # uint32
    times_ms: np.ndarray  # int32, time of each landmark's first peak

    def __len__(self) -> int:
        return len(self.hashes)


NO_LANDMARKS = Landmarks(np.empty(0, np.uint32), np.empty(0, np.int32))


def landmarks_message(landmarks: Landmarks) -> spb.Landmarks:
    return spb.Landmarks(hashes=landmarks.hashes.tolist(), times_ms=landmarks.times_ms.tolist())


def landmarks_from_message(message: spb.Landmarks) -> Landmarks:
    return Landmarks(np.array(message.hashes, dtype=np.uint32), np.array(message.times_ms, dtype=np.int32))


def extract_landmarks(samples: np.ndarray, sample_rate_hz: int) -> Landmarks:
    power, bin_hz = _power_spectrogram(samples, sample_rate_hz)
    hashes: list[np.ndarray] = []
    times: list[np.ndarray] = []
    floor = max(float(power.max()) * 10 ** (-FLOOR_DB / 10), 10 ** (SILENCE_DBFS / 10)) if power.size else 0.0
    for band, (low_hz, high_hz) in enumerate(BANDS_HZ):
        low, high = int(low_hz / bin_hz), min(int(high_hz / bin_hz), power.shape[1])
        if high - low < 2:
            continue
        frames, bins = _band_peaks(power[:, low:high], floor)
        band_hashes, band_frames = _pair(band, frames, bins + low)
        hashes.append(band_hashes)
        times.append(band_frames)
    if not hashes:
        return NO_LANDMARKS
    all_times = np.concatenate(times)
    order = np.argsort(all_times, kind="stable")
    milliseconds = np.round(all_times[order] * HOP_SECONDS * 1000).astype(np.int32)
    return Landmarks(np.concatenate(hashes)[order].astype(np.uint32), milliseconds)


def query_landmarks(samples: np.ndarray, sample_rate_hz: int, event_spans: list[tuple[float, float]]) -> Landmarks:
    """A query's landmarks, and those of each short sound in it taken alone (span in seconds), over its span and
    over its loud core.

    Ingest takes a short sound's landmarks alone, with the quota of a short clip. Inside a longer query the same sound
    shares its seconds with other audio, which takes some of the quota and pairs its peaks with others, so its own
    landmarks are extracted again from its span alone, as they were stored. The span reaches on while the level
    stays over the background, so a bed can stretch it; the core (the frames within 20 dB of its loudest) cannot."""
    parts = [extract_landmarks(samples, sample_rate_hz)]
    for first, last in _alone(samples, sample_rate_hz, event_spans):
        alone = extract_landmarks(samples[first:last], sample_rate_hz)
        parts.append(Landmarks(alone.hashes, alone.times_ms + np.int32(round(first * 1000 / sample_rate_hz))))
    if len(parts) == 1:
        return parts[0]
    keys = np.unique(np.concatenate([part.times_ms.astype(np.int64) << 32 | part.hashes for part in parts]))
    return Landmarks((keys & 0xFFFFFFFF).astype(np.uint32), (keys >> 32).astype(np.int32))


def _alone(samples: np.ndarray, sample_rate_hz: int, event_spans: list[tuple[float, float]]) -> list[tuple[int, int]]:
    """Each span's [first, last) sample range and its loud core's, once where the two are the same."""
    ranges: set[tuple[int, int]] = set()
    for start, end in event_spans:
        first, last = round(start * sample_rate_hz), round(end * sample_rate_hz)
        ranges |= {(first, last), loud_core(samples, first, last, sample_rate_hz)}
    return sorted(ranges)


def _power_spectrogram(samples: np.ndarray, sample_rate_hz: int) -> tuple[np.ndarray, float]:
    """(frames x bins) power relative to a full-scale sine's, up to the top band, and the width of a bin in Hz.

    Power, not decibels: peaks and their order are the same, without a logarithm per bin."""
    frame = 1 << int(np.ceil(np.log2(FRAME_SECONDS * sample_rate_hz)))
    hop = max(1, round(HOP_SECONDS * sample_rate_hz))
    audio = np.asarray(samples, dtype=np.float32)
    if len(audio) < frame:
        audio = np.pad(audio, (0, frame - len(audio)))
    frames = np.lib.stride_tricks.sliding_window_view(audio, frame)[::hop]
    spectrum = scipy.fft.rfft(frames * np.hanning(frame).astype(np.float32), axis=1)
    bin_hz = sample_rate_hz / frame
    spectrum = spectrum[:, : min(spectrum.shape[1], int(max(high for _, high in BANDS_HZ) / bin_hz) + 1)]
    power = np.square(spectrum.real) + np.square(spectrum.imag)
    return power / np.float32((frame / 4) ** 2), bin_hz


def _band_peaks(band: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima of one band over `floor`, the strongest few per block of frames, sorted by (frame, bin)."""
    is_peak = (band == maximum_filter(band, size=NEIGHBOURHOOD, mode="constant", cval=-np.inf)) & (band > floor)
    frames, bins = np.nonzero(is_peak)
    if len(frames) == 0:
        return frames, bins
    strength = band[frames, bins]
    blocks = frames // BLOCK_FRAMES
    block_frames = np.minimum(BLOCK_FRAMES, band.shape[0] - blocks * BLOCK_FRAMES)
    quota = np.maximum(MIN_PEAKS, PEAKS_PER_SECOND * block_frames * HOP_SECONDS).astype(int)
    order = np.lexsort((-strength, blocks))  # by block, strongest first
    rank_in_block = np.arange(len(order)) - np.searchsorted(blocks[order], blocks[order])
    kept = order[rank_in_block < quota[order]]
    kept = kept[np.lexsort((bins[kept], frames[kept]))]
    return frames[kept], bins[kept]


def _pair(band: int, frames: np.ndarray, bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each peak with the first FANOUT later peaks of its band that lie close enough in time and frequency."""
    count = len(frames)
    if count < 2:
        return np.empty(0, np.uint32), np.empty(0, np.int64)
    anchors = np.arange(count)[:, None]
    partners = anchors + np.arange(1, CANDIDATES + 1)[None, :]
    inside = partners < count
    partners = np.minimum(partners, count - 1)
    time_gap = frames[partners] - frames[anchors]
    bin_gap = bins[partners].astype(np.int64) - bins[anchors]
    valid = inside & (time_gap <= MAX_PAIR_FRAMES) & (np.abs(bin_gap) <= MAX_PAIR_BINS)
    valid &= np.cumsum(valid, axis=1) <= FANOUT
    rows, columns = np.nonzero(valid)
    first_bins = bins[rows].astype(np.uint64)
    hashes = ((band << 28) | (first_bins << 18) | ((bin_gap[rows, columns] + 512).astype(np.uint64) << 7)
              | time_gap[rows, columns].astype(np.uint64))
    return (hashes & 0xFFFFFFFF).astype(np.uint32), frames[rows]
