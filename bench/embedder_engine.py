"""Embedder measurements: throughput of the in-process engine, and how well embeddings separate sounds.

    python -m bench.embedder_engine [--device cpu|cuda] [--precision float32|float16|bfloat16|int8]
                                      [--channels-last] [--compile] throughput [--batch-sizes 1 8 32]
    python -m bench.embedder_engine [...] profile [--batch-size 256] [--repeats 10]
    python -m bench.embedder_engine separation --sounds DIR [--count 50] [--components 0 4]

Both run the untrained model unless --checkpoint is given. Figures are printed as plain text.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from collections.abc import Callable
from math import gcd
from pathlib import Path
from typing import TypeVar, get_args

import numpy as np
import soundfile
import torch
import torch.nn.functional as F
from scipy.signal import resample_poly

from audiosearch.embedder.cnn14 import SAMPLE_RATE
from audiosearch.embedder.engine import (
    Embedder,
    Precision,
    RuntimeOptions,
    WeightsSource,
    default_threads,
    finite_rows_of,
)

WINDOW = 2 * SAMPLE_RATE
T = TypeVar("T")


def _embedder(args: argparse.Namespace, components: int = 4) -> Embedder:
    source = (
        WeightsSource(checkpoint_path=Path(args.checkpoint))
        if args.checkpoint
        else WeightsSource(untrained_seed=args.seed)
    )
    options = RuntimeOptions(
        device=args.device,
        precision=args.precision,
        num_threads=default_threads(1),
        channels_last=args.channels_last,
        compile=args.compile,
        batch_samples=max(args.batch_sizes or [32]) * WINDOW,
        centering_components=components,
    )
    return Embedder.load(source, options)


def throughput(args: argparse.Namespace) -> None:
    embedder = _embedder(args)
    rng = np.random.default_rng(0)
    print(f"device={args.device} precision={args.precision} threads={torch.get_num_threads()} "
          f"channels_last={args.channels_last} compile={args.compile}")
    for batch_size in args.batch_sizes:
        batch = (0.1 * rng.standard_normal((batch_size, WINDOW))).astype(np.float16)  # as Triton hands it over
        embedder.embed(batch)
        calls = max(2, args.windows // batch_size)
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            for _ in range(calls):
                embedder.embed(batch)
            best = min(best, time.perf_counter() - start)
        audio_seconds = calls * batch_size * WINDOW / SAMPLE_RATE
        rate = audio_seconds / best
        print(f"batch {batch_size:3d}: {rate:6.1f} s of audio per s ({best / calls * 1e3:.0f} ms/call)")


def profile(args: argparse.Namespace) -> None:
    """Median time of each stage of one `embed` call, synchronised with the device between stages."""
    embedder = _embedder(args)
    spectrogram = embedder.model.spectrogram_extractor
    sync = torch.cuda.synchronize if embedder.device.type == "cuda" else (lambda: None)
    batch = (0.1 * np.random.default_rng(0).standard_normal((args.batch_size, WINDOW))).astype(np.float32)
    wire_batch = batch.astype(np.float16)  # what the gateway sends and Triton hands over
    stages: dict[str, list[float]] = {}

    def timed(name: str, record: bool, step: Callable[..., T], *inputs: object) -> T:
        sync()
        started = time.perf_counter()
        result = step(*inputs)
        sync()
        if record:
            stages.setdefault(name, []).append(time.perf_counter() - started)
        return result

    def to_host(raw: torch.Tensor, tags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return embedder.centering(raw).cpu(), tags.cpu()

    with torch.inference_mode():
        for repeat in range(args.repeats + 1):  # the first round warms up and is not recorded
            record = repeat > 0
            timed("check shape (CPU)", record, embedder.check_shape, batch)
            timed("copy to device, float32 rows", record, embedder.to_device, [batch])
            waveforms = timed("copy to device, float16 rows", record, embedder.to_device, [wire_batch])
            timed("finite check (device)", record, finite_rows_of, waveforms)
            for by_fft in (False, True):
                spectrogram.use_fft = by_fft
                label = f"log-mel, STFT by {'FFT' if by_fft else 'convolution'}"
                logmel = timed(label, record, embedder.logmel, waveforms)
            raw, tags = timed("backbone", record, embedder.backbone, logmel)
            timed("centre, copy to host", record, to_host, raw, tags)
    audio_seconds = args.batch_size * WINDOW / SAMPLE_RATE
    print(f"device={args.device} precision={args.precision} channels_last={args.channels_last} "
          f"compile={args.compile} batch={args.batch_size} windows ({audio_seconds:g} s of audio)")
    for name, seconds in stages.items():
        median = float(np.median(seconds))
        print(f"  {name:40s} {median * 1e3:8.2f} ms  ({audio_seconds / median:10,.0f} s of audio per s)")


def decode(path: Path) -> np.ndarray:
    """Mono float32 at 32 kHz; soundfile first, ffmpeg for what libsndfile cannot read (e.g. WavPack)."""
    try:
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError):
        raw = subprocess.run(
            [
                "ffmpeg",
                "-v",
                "quiet",
                "-i",
                str(path),
                "-f",
                "f32le",
                "-ac",
                "1",
                "-ar",
                str(SAMPLE_RATE),
                "-",
            ],
            capture_output=True,
            check=True,
        ).stdout
        return np.frombuffer(raw, np.float32).copy()
    mono = data.mean(axis=1)
    if rate != SAMPLE_RATE:
        common = gcd(rate, SAMPLE_RATE)
        mono = resample_poly(mono, SAMPLE_RATE // common, rate // common)
    return mono.astype(np.float32)


def window(signal: np.ndarray, start: int = 0) -> np.ndarray:
    """A 2 s window from `start`, loop-padded like the gateway pads short sounds."""
    part = signal[start:] if signal.size > start else signal
    return np.resize(part, WINDOW).astype(np.float32)


def variants(signals: list[np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    originals = np.stack([window(s) for s in signals])
    rms = np.sqrt(np.mean(np.square(originals), axis=1, keepdims=True))
    return {
        "original": originals,
        "gain -6 dB": originals * 0.5,
        "noise 30 dB SNR": originals
        + rng.standard_normal(originals.shape).astype(np.float32) * rms * 10**-1.5,
        "50 ms later start": np.stack([window(s, start=1600 if s.size > 12000 else 0) for s in signals]),
        "50 ms silence first": np.stack(
            [window(np.concatenate([np.zeros(1600, np.float32), s])) for s in signals]
        ),
    }


def _stats(values: np.ndarray) -> str:
    return f"mean {values.mean():.3f} min {values.min():.3f} max {values.max():.3f}"


def separation_report(embeddings: dict[str, torch.Tensor], title: str) -> None:
    originals = F.normalize(embeddings["original"], dim=1)
    count = originals.shape[0]
    cosines = (originals @ originals.T).numpy()
    unrelated = cosines[np.triu_indices(count, 1)]
    np.fill_diagonal(cosines, -np.inf)
    nearest_other = cosines.max(axis=1)
    print(f"{title}\n  unrelated pairs: {_stats(unrelated)} p95 {np.percentile(unrelated, 95):.3f}")
    for name, batch in embeddings.items():
        if name == "original":
            continue
        similarity = (F.normalize(batch, dim=1) @ originals.T).numpy()
        own = np.diag(similarity)
        top1 = float(np.mean(similarity.argmax(axis=1) == np.arange(count)))
        above = float(np.mean(own > nearest_other))
        print(
            f"  {name:20s}: cos to own original {_stats(own)}; top-1 {top1:.2f}; above all others {above:.2f}"
        )


def separation(args: argparse.Namespace) -> None:
    files = sorted(p for p in Path(args.sounds).iterdir() if p.is_file())
    picked = [files[int(i * len(files) / args.count)] for i in range(min(args.count, len(files)))]
    signals = [decode(path) for path in picked]
    batches = variants(signals, np.random.default_rng(7))
    for components in args.components:
        embedder = _embedder(args, components)
        raw = {name: embedder.raw_embeddings(batch).cpu() for name, batch in batches.items()}
        if components == args.components[0]:
            separation_report(raw, f"raw relu(fc1), {len(picked)} sounds ({embedder.identity.weights})")
        centred = {name: embedder.centering(value) for name, value in raw.items()}
        separation_report(
            centred, f"centred, top {components} probe components removed ({embedder.identity})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", help="Cnn14 checkpoint; default: untrained model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--precision", choices=get_args(Precision), default="float32")
    commands = parser.add_subparsers(dest="command", required=True)
    tp = commands.add_parser("throughput")
    tp.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    tp.add_argument("--windows", type=int, default=64, help="2 s windows per timed run")
    tp.add_argument("--repeats", type=int, default=3, help="timed runs; the best is reported")
    prof = commands.add_parser("profile")
    prof.add_argument("--batch-size", type=int, default=256, help="2 s windows per call")
    prof.add_argument("--repeats", type=int, default=10, help="timed rounds; medians are reported")
    sep = commands.add_parser("separation")
    sep.add_argument("--sounds", required=True)
    sep.add_argument("--count", type=int, default=50)
    sep.add_argument("--components", type=int, nargs="+", default=[0, 4])
    args = parser.parse_args()
    if args.command == "throughput":
        throughput(args)
    elif args.command == "profile":
        args.batch_sizes = [args.batch_size]
        profile(args)
    else:
        args.batch_sizes = None
        separation(args)


if __name__ == "__main__":
    main()
