"""The 527 AudioSet class labels, in the order of the model's tag outputs."""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

import numpy as np

_LABELS_CSV = Path(__file__).with_name("audioset_class_labels_indices.csv")


@cache
def audioset_labels() -> tuple[str, ...]:
    with _LABELS_CSV.open(newline="", encoding="utf-8") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: int(row["index"]))
    return tuple(row["display_name"] for row in rows)


def top_labels(probabilities: np.ndarray, count: int, floor: float = 0.0) -> list[tuple[str, float]]:
    """The `count` most probable labels at or above `floor`, most probable first."""
    labels = audioset_labels()
    order = np.argsort(-probabilities, kind="stable")[:count]
    return [(labels[index], float(probabilities[index])) for index in order if probabilities[index] >= floor]
