"""What limits bench.quality's offset queries of short sounds: the windows, or the model?

    python -m bench.offset_oracle [--sounds DIR] [--seed N] [--limit N] [--checkpoint PTH]

Takes the sounds, split and offset queries of `bench.quality` (same seed, same random streams: a short indexed
sound placed inside a longer recording of held-back sounds 20 dB lower) and, with the model in this process and
the gateway's own windowing, scores each indexed sound shorter than one window (stored looped, over its audible
span and over its loud core):

    query     the best window the gateway cuts from the query (regular windows and event windows)
    exact     the exact audible span of the sound inside the query, looped as ingest loops it: what a perfect
              event detector would cut (the bed 20 dB lower is still under it)
    other     the best similarity of any query window to any other indexed recording's window

`exact` above `other` is needed for the sound to come first; the share where it is bounds what better event
windows could reach. Untrained weights by default; `--checkpoint` measures the real Cnn14.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiosearch.common.loudness import normalise_loudness
from audiosearch.embedder.cnn14 import SAMPLE_RATE
from audiosearch.embedder.engine import Embedder, RuntimeOptions, WeightsSource
from audiosearch.gateway.audio.decoding import AudioLimits, decode_audio
from audiosearch.gateway.audio.segments import audible_bounds, loop_to, query_segments, stored_segments
from audiosearch.gateway.settings import GatewaySettings
from bench.quality import DEFAULT_SOUNDS, TRANSFORMS, Sound, Transformer, load_sounds, split

# A new collection's segmentation, as the gateway gives it.
WINDOW_SECONDS = float(GatewaySettings.model_fields["default_window_seconds"].default)
HOP_SECONDS = float(GatewaySettings.model_fields["default_hop_seconds"].default)
LIMITS = AudioLimits(max_duration_seconds=3600.0)


@dataclass(frozen=True)
class Scores:
    name: str
    seconds: float
    query: float
    exact: float
    other: float


class Catalog:
    """The indexed sounds' stored windows, embedded as ingest embeds them."""

    def __init__(self, embedder: Embedder, sounds: list[Sound]) -> None:
        self._embedder = embedder
        self.samples = {sound.name: decode_audio(sound.data, SAMPLE_RATE, LIMITS).samples for sound in sounds}
        vectors = {name: self.embed(stored_segments(samples, SAMPLE_RATE, WINDOW_SECONDS, HOP_SECONDS).windows)
                   for name, samples in self.samples.items()}
        self.vectors = np.concatenate(list(vectors.values()))
        self.owners = np.array([name for name, rows in vectors.items() for _ in range(len(rows))])

    def embed(self, windows: np.ndarray) -> np.ndarray:
        return self._embedder.embed(normalise_loudness(windows)).embeddings

    def best(self, vectors: np.ndarray, name: str, mine: bool) -> float:
        columns = (self.owners == name) if mine else (self.owners != name)
        return float((vectors @ self.vectors[columns].T).max())


def score(catalog: Catalog, sound: Sound, query_audio: bytes, start_seconds: float) -> Scores:
    query = decode_audio(query_audio, SAMPLE_RATE, LIMITS).samples
    windows = catalog.embed(query_segments(query, SAMPLE_RATE, WINDOW_SECONDS, HOP_SECONDS).windows)
    stored = catalog.samples[sound.name]
    first, last = audible_bounds(stored, SAMPLE_RATE)
    start = round(start_seconds * SAMPLE_RATE)
    exact = catalog.embed(loop_to(query[start + first : start + last], round(WINDOW_SECONDS * SAMPLE_RATE))[None])
    return Scores(sound.name, len(stored) / SAMPLE_RATE, catalog.best(windows, sound.name, mine=True),
                  catalog.best(exact, sound.name, mine=True), catalog.best(windows, sound.name, mine=False))


def report(rows: list[Scores]) -> str:
    def median(values: list[float]) -> float:
        return float(np.median(values))

    query_first = sum(row.query > row.other for row in rows)
    exact_first = sum(row.exact > row.other for row in rows)
    return "\n".join([
        f"{len(rows)} offset queries of indexed sounds shorter than {WINDOW_SECONDS:g} s",
        f"median similarity to the stored loop: best query window {median([r.query for r in rows]):.3f}, "
        f"exact span {median([r.exact for r in rows]):.3f}; best window of another recording "
        f"{median([r.other for r in rows]):.3f}",
        f"above every other recording: best query window {query_first} of {len(rows)}, "
        f"exact span {exact_first} of {len(rows)}",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.offset_oracle", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sounds", type=Path, default=DEFAULT_SOUNDS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, help="use at most N sounds (bench.quality's seeded choice)")
    parser.add_argument("--max-query-seconds", type=float, default=10.0)
    parser.add_argument("--checkpoint", type=Path, help="Cnn14_mAP=0.431.pth; default: untrained weights")
    args = parser.parse_args()
    sounds, _ = load_sounds(args.sounds, args.limit, np.random.default_rng(args.seed))
    indexed, held_back, _ = split(sounds)
    source = WeightsSource(checkpoint_path=args.checkpoint) if args.checkpoint else WeightsSource(untrained_seed=0)
    catalog = Catalog(Embedder.load(source, RuntimeOptions()), indexed)
    transformer = Transformer(held_back, args.max_query_seconds)
    number = TRANSFORMS.index("offset")
    rows = []
    for index, sound in enumerate(indexed):
        if len(catalog.samples[sound.name]) >= WINDOW_SECONDS * SAMPLE_RATE:
            continue
        case = transformer.make("offset", sound, "", np.random.default_rng([args.seed, number, index]))
        rows.append(score(catalog, sound, case.audio, -(case.truth_offset or 0.0)))
        print(f"{sound.name[:44]:44s} {rows[-1].seconds:5.2f} s  query {rows[-1].query:.3f}  "
              f"exact {rows[-1].exact:.3f}  other {rows[-1].other:.3f}", file=sys.stderr)
    print(report(rows))


if __name__ == "__main__":
    main()
