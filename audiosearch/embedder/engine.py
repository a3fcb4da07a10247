"""The embedding engine: weights → Cnn14 on a device → centred, L2-normalised embeddings and tags.

This is the part the Triton model instance runs; it knows nothing about Triton, so it is tested directly.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from audiosearch.embedder import quantization
from audiosearch.embedder.centering import Centering, fit_centering, recipe_tag
from audiosearch.embedder.checkpoint import load_checkpoint
from audiosearch.embedder.cnn14 import EMBEDDING_DIM, SAMPLE_RATE, Cnn14
from audiosearch.embedder.identity import ModelIdentity

LOG = logging.getLogger(__name__)

Precision = Literal["float32", "float16", "bfloat16", "int8"]
MIN_SAMPLES = SAMPLE_RATE  # shorter inputs are loop-padded to 1 s, as the gateway does for short sounds
DEFAULT_MAX_SAMPLES = 60 * SAMPLE_RATE
DEFAULT_CENTERING_COMPONENTS = 4
_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int8": torch.float32,  # what runs outside the quantized backbone
}


class InputError(ValueError):
    """A waveform the model cannot embed (wrong rank, empty, too long, not finite)."""


@dataclass(frozen=True)
class WeightsSource:
    """Either a checkpoint file (optionally pinned by sha256) or an explicitly requested untrained seed."""

    checkpoint_path: Path | None = None
    expected_sha256: str | None = None
    untrained_seed: int | None = None

    def __post_init__(self) -> None:
        if (self.checkpoint_path is None) == (self.untrained_seed is None):
            raise ValueError("give exactly one of checkpoint_path and untrained_seed")


@dataclass(frozen=True)
class RuntimeOptions:
    device: str = "cpu"
    precision: Precision = "float32"
    num_threads: int = 0  # 0: leave torch's default
    channels_last: bool = False
    compile: bool = False
    batch_samples: int = 64 * SAMPLE_RATE  # audio per forward pass: bounds activation memory
    max_samples: int = DEFAULT_MAX_SAMPLES
    centering_components: int = DEFAULT_CENTERING_COMPONENTS

    def __post_init__(self) -> None:
        if self.precision == "int8" and (self.device != "cpu" or self.compile):
            raise ValueError("int8 runs on the CPU only, uncompiled")


@dataclass(frozen=True)
class EmbeddingBatch:
    embeddings: np.ndarray  # (n, 2048) float32, unit L2 norm
    tags: np.ndarray  # (n, 527) float32 in [0, 1]


def identity_for(
    source: WeightsSource, checkpoint_sha256: str | None, components: int, precision: Precision
) -> ModelIdentity:
    """The float precisions give one identity (their vectors agree to cosine 0.999); int8 gives its own."""
    untrained = source.untrained_seed is not None
    return ModelIdentity(
        checkpoint_sha256=None if untrained else checkpoint_sha256,
        seed=source.untrained_seed,
        centering_tag=recipe_tag(components),
        quantization_tag=quantization.recipe_tag() if precision == "int8" else None,
    )


def untrained_cnn14(seed: int) -> Cnn14:
    """A reference-initialised Cnn14 that is bit-identical for a given seed, whatever the global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Cnn14()


def load_model(source: WeightsSource) -> tuple[Cnn14, str | None]:
    """The model in eval mode on CPU, and the sha256 of its checkpoint (None when untrained)."""
    if source.untrained_seed is not None:
        LOG.warning(
            "MODEL IS UNTRAINED: Cnn14 with random weights (seed %d); embeddings and tags are NOT "
            "meaningful. For tests and development only; set EMBEDDER_CHECKPOINT_PATH for real use.",
            source.untrained_seed,
        )
        return untrained_cnn14(source.untrained_seed).eval(), None
    assert source.checkpoint_path is not None
    verified, state_dict = load_checkpoint(source.checkpoint_path, source.expected_sha256)
    model = Cnn14()
    model.load_state_dict(state_dict, strict=True)
    return model.eval(), verified.sha256


class Embedder:
    """Cnn14 with its centering, placed on a device. Thread-compatible, not thread-safe."""

    def __init__(self, model: Cnn14, identity: ModelIdentity, options: RuntimeOptions) -> None:
        self.identity = identity
        self.options = options
        self.device = torch.device(options.device)
        self._dtype = _DTYPES[options.precision]
        if options.num_threads > 0:
            torch.set_num_threads(options.num_threads)
        if not model.use_fft_stft():
            LOG.warning("the checkpoint's STFT kernels are not the plain DFT: computing them as convolutions")
        self.model = self._place(model)
        self._backbone = self.model.backbone
        if options.precision == "int8":
            self._backbone = quantization.quantize_backbone(self.model)
        elif options.compile:
            self._backbone = torch.compile(self.model.backbone, dynamic=True)
        self.centering: Centering = fit_centering(
            self.raw_embeddings, SAMPLE_RATE, options.centering_components
        ).to(self.device)

    @classmethod
    def load(cls, source: WeightsSource, options: RuntimeOptions) -> Embedder:
        model, sha256 = load_model(source)
        return cls(model, identity_for(source, sha256, options.centering_components, options.precision), options)

    def _place(self, model: Cnn14) -> Cnn14:
        model = model.to(self.device)
        for module in [model.bn0, *model.conv_blocks(), model.fc1, model.fc_audioset]:
            module.to(dtype=self._dtype)
            if self.options.channels_last:
                module.to(memory_format=torch.channels_last)
        return model

    def check_shape(self, waveforms: np.ndarray) -> None:
        """Rank, emptiness and length; whether the samples are finite is checked on the device."""
        if waveforms.ndim != 2 or waveforms.shape[0] == 0:
            raise InputError(
                f"expected a batch of waveforms shaped (n, samples), got shape {waveforms.shape}"
            )
        if waveforms.shape[1] == 0:
            raise InputError("empty waveform (0 samples)")
        if waveforms.shape[1] > self.options.max_samples:
            raise InputError(
                f"waveform of {waveforms.shape[1]} samples exceeds the limit of {self.options.max_samples} "
                f"({self.options.max_samples / SAMPLE_RATE:g} s at {SAMPLE_RATE} Hz)"
            )

    def to_device(self, pieces: Sequence[np.ndarray]) -> torch.Tensor:
        """The rows of `pieces` (float16 or float32) as one (n, samples) float32 tensor on the device, loop-padded
        to 1 s.

        On a GPU each piece is copied in its own dtype from where it lies (in Triton, its request's shared
        memory) straight into its rows on the device, with no gathering copy on the host; float16 rows are
        widened there, so they cross the bus at half the bytes.
        """
        if self.device.type == "cpu":  # the concatenation is the one copy the rows need
            waveforms = torch.from_numpy(np.concatenate(pieces, axis=0, dtype=np.float32))
        else:
            rows = sum(piece.shape[0] for piece in pieces)
            half = all(piece.dtype == np.float16 for piece in pieces)
            wire_dtype, staged_dtype = (np.float16, torch.float16) if half else (np.float32, torch.float32)
            staged = torch.empty((rows, pieces[0].shape[1]), dtype=staged_dtype, device=self.device)
            start = 0
            for piece in pieces:
                staged[start : start + piece.shape[0]].copy_(torch.from_numpy(np.asarray(piece, wire_dtype)))
                start += piece.shape[0]
            waveforms = staged.float()
        if waveforms.shape[1] < MIN_SAMPLES:
            repeats = -(-MIN_SAMPLES // waveforms.shape[1])
            waveforms = waveforms.repeat(1, repeats)[:, :MIN_SAMPLES]
        return waveforms

    def _chunks(self, parts: Sequence[np.ndarray]) -> Iterator[torch.Tensor]:
        """All rows of `parts`, in order, on the device, at most `batch_samples` of audio per chunk."""
        samples = max(parts[0].shape[1], MIN_SAMPLES)
        rows_per_chunk = max(1, self.options.batch_samples // samples)
        rows = sum(part.shape[0] for part in parts)
        for pieces in row_groups(parts, chunk_sizes(rows, rows_per_chunk, bounded=self.device.type == "cpu")):
            yield self.to_device(pieces)

    def logmel(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Waveforms on the device -> the backbone's input: log-mel in the engine's precision and layout."""
        logmel = self.model.logmel(waveforms).to(self._dtype)
        return logmel.contiguous(memory_format=torch.channels_last) if self.options.channels_last else logmel

    def backbone(self, logmel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel -> raw relu(fc1) embeddings and tag probabilities, float32 on the device."""
        out = self._backbone(logmel)
        return out.embedding.float(), out.clipwise.float()

    def _forward(self, waveforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.backbone(self.logmel(waveforms))

    def raw_embeddings(self, waveforms: np.ndarray) -> torch.Tensor:
        """Uncentred relu(fc1) embeddings, (n, 2048) float32 on the device."""
        with torch.inference_mode():
            return torch.cat([self._forward(chunk)[0] for chunk in self._chunks([waveforms])])

    def embed(self, waveforms: np.ndarray) -> EmbeddingBatch:
        """(n, samples) float16 or float32 at 32 kHz -> centred unit embeddings and tag probabilities."""
        result = self.embed_many([waveforms])[0]
        if isinstance(result, InputError):
            raise result
        return result

    def embed_many(self, requests: Sequence[np.ndarray]) -> list[EmbeddingBatch | InputError]:
        """Embed several requests at once: same-length ones run as one batch and are split back in order.

        A request with a NaN or infinite sample gets an InputError. Rows never mix in Cnn14 at inference, so
        such a row is found on the device after the forward pass and spoils only its own request.
        """
        results: list[EmbeddingBatch | InputError | None] = [None] * len(requests)
        by_length: dict[int, list[int]] = {}
        for index, waveforms in enumerate(requests):
            try:
                self.check_shape(waveforms)
            except InputError as exc:
                results[index] = exc
                continue
            by_length.setdefault(waveforms.shape[1], []).append(index)
        for indices in by_length.values():
            merged, finite_rows = self._embed_rows([requests[i] for i in indices])
            start = 0
            for index in indices:
                stop = start + requests[index].shape[0]
                results[index] = (
                    EmbeddingBatch(merged.embeddings[start:stop], merged.tags[start:stop])
                    if finite_rows[start:stop].all()
                    else InputError("waveform contains NaN or infinite samples")
                )
                start = stop
        assert all(result is not None for result in results)
        return results  # type: ignore[return-value]

    def _embed_rows(self, parts: Sequence[np.ndarray]) -> tuple[EmbeddingBatch, np.ndarray]:
        """Embeddings and tags of every row of `parts`, and whether each row's samples were all finite."""
        embeddings, tags, finite_rows = [], [], []
        with torch.inference_mode():
            for chunk in self._chunks(parts):
                raw, clipwise = self._forward(chunk)
                finite_rows.append(finite_rows_of(chunk).cpu())
                embeddings.append(self.centering(raw).cpu())
                tags.append(clipwise.cpu())
        batch = EmbeddingBatch(torch.cat(embeddings).numpy(), torch.cat(tags).numpy())
        return batch, torch.cat(finite_rows).numpy()


def finite_rows_of(waveforms: torch.Tensor) -> torch.Tensor:
    """Whether each row's samples are all finite, computed where the rows are (on the device)."""
    return torch.isfinite(waveforms).all(dim=1)


def chunk_sizes(rows: int, rows_per_chunk: int, bounded: bool = True) -> list[int]:
    """Rows per forward pass: full chunks, then the rest; `bounded`, the rest as powers of two, largest first.

    Bounded, the passes take at most log2(rows_per_chunk) + 2 shapes whatever mix of requests a batch holds, so on
    a CPU the buffers a pass frees fit the next pass of its shape and glibc's heap reuses them instead of keeping
    ever more (docs/benchmarks.md, bench.embedder_memory). A GPU's caching allocator needs no such help.
    """
    full, rest = divmod(rows, rows_per_chunk)
    if not bounded:
        return [rows_per_chunk] * full + ([rest] if rest else [])
    return [rows_per_chunk] * full + [1 << bit for bit in reversed(range(rest.bit_length())) if rest >> bit & 1]


def row_groups(parts: Sequence[np.ndarray], sizes: Sequence[int]) -> Iterator[list[np.ndarray]]:
    """The rows of `parts` in order, as lists of row slices holding `sizes[0]`, `sizes[1]`, ... rows."""
    if sum(sizes) != sum(part.shape[0] for part in parts):
        raise ValueError(f"sizes {list(sizes)} do not cover the {sum(part.shape[0] for part in parts)} rows")
    pending = iter(sizes)
    wanted = next(pending, 0)
    group: list[np.ndarray] = []
    count = 0
    for part in parts:
        start = 0
        while start < part.shape[0]:
            taken = part[start : start + wanted - count]
            group.append(taken)
            count += taken.shape[0]
            start += taken.shape[0]
            if count == wanted:
                yield group
                group, count, wanted = [], 0, next(pending, 0)


def available_cores(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota (a container's CPU limit, which
    the affinity does not show: a pod limited to 4 cores on a 32-core node sees 32)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return cores
    if quota == "max":
        return cores
    return max(1, min(cores, math.ceil(int(quota) / int(period))))


def default_threads(instance_count: int) -> int:
    """Cores available to this process split between model instances."""
    return max(1, available_cores() // max(1, instance_count))


__all__ = ["EMBEDDING_DIM", "Embedder", "EmbeddingBatch", "InputError", "RuntimeOptions", "WeightsSource"]
