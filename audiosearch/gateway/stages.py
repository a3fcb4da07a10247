"""Where a request's time goes: each stage of an ingest or a search is timed into a Prometheus histogram
(`audiosearch_stage_duration_seconds{flow, stage}`) and, while a caller collects them, into a per-request dict,
which SearchAudio returns as trailing metadata (`x-decode-ms`, `x-embed-ms`, `x-search-ms`, `x-catalog-ms`).

gRPC's sync server runs a call in one thread, and a ContextVar is per thread, so stages nest without any
argument threading through the flows.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from audiosearch.gateway import metrics

_collected: ContextVar[dict[str, float] | None] = ContextVar("audiosearch_stage_timings", default=None)


@contextmanager
def stage(flow: str, name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - started
        metrics.STAGE_DURATION.labels(flow, name).observe(elapsed)
        timings = _collected.get()
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + elapsed


@contextmanager
def collect() -> Iterator[dict[str, float]]:
    """Seconds per stage of what runs inside, in this thread."""
    timings: dict[str, float] = {}
    token = _collected.set(timings)
    try:
        yield timings
    finally:
        _collected.reset(token)


def as_metadata(timings: dict[str, float]) -> list[tuple[str, str]]:
    return [(f"x-{name}-ms", f"{seconds * 1000:.3f}") for name, seconds in sorted(timings.items())]
