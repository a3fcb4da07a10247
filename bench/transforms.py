"""bench.quality's harder transforms: timing, pitch, a room, heavy noise, a short excerpt and a chain of them.

Each takes float32 mono samples at `rate` and the query's own random stream (so a query is the same whatever else
runs), and gives back the query's samples with where they sit on the input's timeline:

    speed       3 % faster or slower (the sign drawn per query), resampled: pitch and tempo move together
                (+3 %: the audio lasts 1/1.03 as long and every frequency is 1.03 times higher)
    tempo       5 % faster or slower with the pitch kept: ffmpeg's rubberband filter with its default options
    pitch       1 semitone up or down with the tempo kept: rubberband
    reverb      a synthetic room, RT60 0.6 s: the input convolved with an impulse response made of the direct
                sound (a unit impulse) and a tail of seeded white noise under an exponential decay that falls
                60 dB in 0.6 s, cut at 0.9 s (-90 dB), scaled so the tail holds as much energy as the direct
                sound (direct-to-reverberant ratio 0 dB); the output keeps the input's length and RMS
    noise-0dB   white noise at the input's RMS (0 dB SNR)
    excerpt-1s  1 s from a random place (an input of 1 s or less: all of it)
    chain       speed +2 %, then mp3 at 96 kbit/s decoded back (the decoder keeps the encoder's delay, about
                25 ms, as a search of an mp3 file would), then white noise at 10 dB SNR

SNRs are measured against the RMS of the whole input, silence included, as bench.quality's own noise is.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy.signal import fftconvolve, resample_poly

SPEED_CHANGE = 0.03
TEMPO_CHANGE = 0.05
PITCH_SEMITONES = 1.0
ROOM_RT60_SECONDS = 0.6
ROOM_TAIL_SECONDS = 1.5 * ROOM_RT60_SECONDS  # the decay is 90 dB down by then
DIRECT_TO_REVERBERANT_DB = 0.0
HEAVY_NOISE_SNR_DB = 0.0
EXCERPT_SECONDS = 1.0
CHAIN_SPEED = 1.02
CHAIN_MP3_BITRATE = "96k"
CHAIN_NOISE_SNR_DB = 10.0
# rubberband in ffmpeg fails on inputs under about 1000 samples and holds back its last frames: silence appended
# before it and cut after it lets any input through whole.
RUBBERBAND_PADDING_SECONDS = 0.5


@dataclass(frozen=True)
class Transformed:
    samples: np.ndarray  # float32 mono at the input's rate
    variant: str  # which way this query went, e.g. "+3 %", "-1 st"
    start_seconds: float = 0.0  # the input time of the output's first sample
    time_scale: float = 1.0  # input seconds per output second: above 1 when the output plays faster


# ----------------------------------------------------------------------------------------------- building blocks


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) or 1e-6


def drawn_sign(rng: np.random.Generator) -> int:
    return 1 if rng.random() < 0.5 else -1


def change_speed(samples: np.ndarray, factor: float) -> np.ndarray:
    """Played `factor` times as fast: resampled to 1/factor of the samples, so frequencies scale by `factor`."""
    ratio = Fraction(factor).limit_denominator(1000)
    return resample_poly(samples, ratio.denominator, ratio.numerator).astype(np.float32)


def rubberband(samples: np.ndarray, rate: int, tempo: float = 1.0, pitch: float = 1.0) -> np.ndarray:
    """Time-stretched to `tempo` times as fast and pitch-shifted by the factor `pitch`, each without the other."""
    padding = np.zeros(round(RUBBERBAND_PADDING_SECONDS * rate), np.float32)
    raw = np.concatenate([samples.astype(np.float32), padding]).tobytes()
    result = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "f32le", "-ar", str(rate), "-ac", "1", "-i", "pipe:0",
         "-af", f"rubberband=tempo={tempo:.6f}:pitch={pitch:.6f}", "-f", "f32le", "-ac", "1", "pipe:1"],
        input=raw, capture_output=True, check=True, timeout=120)
    return np.frombuffer(result.stdout, np.float32)[: round(len(samples) / tempo)].copy()


def room_impulse_response(rate: int, rng: np.random.Generator, rt60_seconds: float = ROOM_RT60_SECONDS
                          ) -> np.ndarray:
    """The direct sound, then a noise tail whose energy decays 60 dB in `rt60_seconds` (the module's recipe)."""
    tail_length = round(ROOM_TAIL_SECONDS / ROOM_RT60_SECONDS * rt60_seconds * rate)
    seconds = np.arange(1, tail_length + 1) / rate
    tail = rng.standard_normal(tail_length) * 10 ** (-3.0 * seconds / rt60_seconds)
    tail *= np.sqrt(10 ** (-DIRECT_TO_REVERBERANT_DB / 10) / np.sum(np.square(tail)))
    return np.concatenate([[1.0], tail]).astype(np.float32)


def reverberate(samples: np.ndarray, impulse_response: np.ndarray) -> np.ndarray:
    """The input heard in the room: its length kept (the tail past the end is cut) and its RMS kept."""
    wet = fftconvolve(samples, impulse_response)[: len(samples)]
    return (wet * (rms(samples) / rms(wet))).astype(np.float32)


def with_noise(samples: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    noise = rng.standard_normal(len(samples)).astype(np.float32)
    return samples + noise * np.float32(rms(samples) * 10 ** (-snr_db / 20) / rms(noise))


def excerpt(samples: np.ndarray, rate: int, seconds: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """`seconds` from a random place, and where it starts (s); an input no longer than that whole, from 0."""
    length = round(seconds * rate)
    if len(samples) <= length:
        return samples, 0.0
    start = int(rng.integers(0, len(samples) - length + 1))
    return samples[start : start + length], start / rate


def mp3_round_trip(samples: np.ndarray, rate: int, bitrate: str) -> np.ndarray:
    encoded = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "f32le", "-ar", str(rate), "-ac", "1", "-i", "pipe:0",
         "-c:a", "libmp3lame", "-b:a", bitrate, "-f", "mp3", "pipe:1"],
        input=np.clip(samples, -1.0, 1.0).astype(np.float32).tobytes(), capture_output=True, check=True,
        timeout=120).stdout
    decoded = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "mp3", "-i", "pipe:0", "-f", "f32le", "-ac", "1", "-ar", str(rate),
         "pipe:1"], input=encoded, capture_output=True, check=True, timeout=120).stdout
    return np.frombuffer(decoded, np.float32).copy()


# ----------------------------------------------------------------------------------------------- the transforms


def speed(samples: np.ndarray, rate: int, rng: np.random.Generator) -> Transformed:
    sign = drawn_sign(rng)
    factor = 1 + sign * SPEED_CHANGE
    return Transformed(change_speed(samples, factor), f"{sign * SPEED_CHANGE:+.0%}", time_scale=factor)


def tempo(samples: np.ndarray, rate: int, rng: np.random.Generator) -> Transformed:
    sign = drawn_sign(rng)
    factor = 1 + sign * TEMPO_CHANGE
    return Transformed(rubberband(samples, rate, tempo=factor), f"{sign * TEMPO_CHANGE:+.0%}", time_scale=factor)


def pitch(samples: np.ndarray, rate: int, rng: np.random.Generator) -> Transformed:
    semitones = drawn_sign(rng) * PITCH_SEMITONES
    return Transformed(rubberband(samples, rate, pitch=2 ** (semitones / 12)), f"{semitones:+g} st")


def reverb(samples: np.ndarray, rate: int, rng: np.random.Generator) -> Transformed:
    return Transformed(reverberate(samples, room_impulse_response(rate, rng)), f"RT60 {ROOM_RT60_SECONDS:g} s")


def heavy_noise(samples: np.ndarray, rate: int, rng: np.random.Generator) -> Transformed:
    return Transformed(with_noise(samples, HEAVY_NOISE_SNR_DB, rng), f"{HEAVY_NOISE_SNR_DB:g} dB SNR")


def short_excerpt(samples: np.ndarray, rate: int, rng: np.random.Generator) -> Transformed:
    part, start = excerpt(samples, rate, EXCERPT_SECONDS, rng)
    return Transformed(part, f"at {start:.2f} s", start_seconds=start)


def chain(samples: np.ndarray, rate: int, rng: np.random.Generator) -> Transformed:
    faster = mp3_round_trip(change_speed(samples, CHAIN_SPEED), rate, CHAIN_MP3_BITRATE)
    return Transformed(with_noise(faster, CHAIN_NOISE_SNR_DB, rng),
                       f"speed {CHAIN_SPEED - 1:+.0%}, mp3 {CHAIN_MP3_BITRATE}, noise {CHAIN_NOISE_SNR_DB:g} dB",
                       time_scale=CHAIN_SPEED)


TRANSFORMS: dict[str, Callable[[np.ndarray, int, np.random.Generator], Transformed]] = {
    "speed": speed, "tempo": tempo, "pitch": pitch, "reverb": reverb, "noise-0dB": heavy_noise,
    "excerpt-1s": short_excerpt, "chain": chain,
}
NAMES = tuple(TRANSFORMS)
# The ones that cut from anywhere in the input, not its start: given the whole sound, not the query's first seconds.
FROM_ANYWHERE = ("excerpt-1s",)


def apply(name: str, samples: np.ndarray, rate: int, rng: np.random.Generator) -> Transformed:
    return TRANSFORMS[name](samples, rate, rng)
