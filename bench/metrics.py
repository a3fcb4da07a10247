"""Prometheus scrapes, percentiles and result output shared by the benches.

Light on imports, so that a bench of one service runs where the rest of the suite is not installed.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from prometheus_client.parser import text_string_to_metric_families


def scrape(port: int, host: str = "127.0.0.1") -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus endpoint: (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def delta(after: dict, before: dict, name: str, **labels: str) -> float:
    """The change of the samples called `name` whose labels include `labels`, summed."""
    total = 0.0
    for (sample, sample_labels), value in after.items():
        if sample != name or not set(labels.items()) <= set(sample_labels):
            continue
        total += value - before.get((sample, sample_labels), 0.0)
    return total


@contextlib.contextmanager
def gpu_sampler() -> Iterator[list[tuple[float, float]]]:
    """(utilisation %, memory MiB) every 0.5 s from nvidia-smi while the block runs; empty without a GPU."""
    samples: list[tuple[float, float]] = []
    if shutil.which("nvidia-smi") is None:
        yield samples
        return
    process = subprocess.Popen(
        ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-lms", "500"],
        stdout=subprocess.PIPE, text=True)

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with contextlib.suppress(ValueError):
                utilisation, memory = (float(part) for part in line.split(",")[:2])
                samples.append((utilisation, memory))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield samples
    finally:
        process.terminate()
        process.wait()


def percentiles(values: Sequence[float], points: Sequence[float] = (50, 99)) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    return {f"p{point:g}": float(np.percentile(array, point)) for point in points} if len(array) else {}


def emit(report: str, result: dict, json_target: str | None) -> None:
    """Prints the table; `--json -` puts the JSON on stdout (table on stderr), `--json FILE` writes it too."""
    if json_target == "-":
        print(report, file=sys.stderr)
        print(json.dumps(result, indent=1))
        return
    print(report)
    if json_target:
        Path(json_target).write_text(json.dumps(result, indent=1))
