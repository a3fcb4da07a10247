"""Which embedding request goes to Triton next: work classes and the gateway's admission of background work.

Three classes of work share the embedder (docs/operations.md, "Fairness between kinds of work"): interactive
(SearchAudio, TagAudio: a caller waits), monitor (MonitorAudio stretches) and bulk (IngestAudio, imports). Each is
sent at its own Triton priority level, and Triton's dynamic batcher takes the queued requests of a higher level
first. That alone does not keep a short search's latency: a free model instance batches the search with whatever
lower-level windows are queued behind it, and waits for the instances busy with long batches. So the gateway sends
background work (monitors, bulk, and the windows of an interactive query longer than one batch) in small chunks,
and only while fewer than `parallel` requests (one per model instance), short interactive ones included, are in
Triton: a search that arrives finds at most small chunks ahead of it and nothing queued to be batched with it. A
chunk that has waited `max_wait_seconds` goes in anyway (within `parallel` background chunks), so a monitor
under a steady stream of searches runs slower (and reports its lag) but never stops.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


class Work(enum.IntEnum):
    """A kind of work, valued at the Triton priority level it is sent at (1 is served first)."""

    INTERACTIVE = 1
    MONITOR = 2
    BULK = 3


PRIORITY_LEVELS = len(Work)


@dataclass(frozen=True)
class BackgroundLimits:
    """How background work is sent: chunks of `chunk_windows`, `parallel_requests` at once, admitted past short
    interactive requests once they have waited `max_wait_seconds`."""

    chunk_windows: int = 8
    parallel_requests: int = 2
    max_wait_seconds: float = 5.0


@dataclass(order=True)
class _Ticket:
    level: int
    sequence: int
    enqueued: float = field(compare=False)


class Admission:
    """Admits interactive requests at once and background chunks in turn (class first, then arrival)."""

    def __init__(self, parallel: int, max_wait_seconds: float) -> None:
        self._parallel = parallel
        self._max_wait_seconds = max_wait_seconds
        self._condition = threading.Condition()
        self._interactive = 0
        self._background = 0
        self._waiting: list[_Ticket] = []
        self._sequence = itertools.count()

    @contextmanager
    def interactive(self) -> Iterator[None]:
        """Around one short interactive request in Triton: it takes one of the `parallel` places from background
        chunks that have not waited their limit."""
        with self._condition:
            self._interactive += 1
        try:
            yield
        finally:
            with self._condition:
                self._interactive -= 1
                self._condition.notify_all()

    def enter_background(self, work: Work) -> float:
        """Blocks until a background chunk of `work` may go to Triton; returns the seconds it waited. Each entry is
        followed by one `leave_background`."""
        with self._condition:
            ticket = _Ticket(int(work), next(self._sequence), time.monotonic())
            heapq.heappush(self._waiting, ticket)
            while not self._admits(ticket):
                self._condition.wait(timeout=self._until_aged(ticket))
            self._waiting.remove(ticket)
            heapq.heapify(self._waiting)
            self._background += 1
            self._condition.notify_all()  # the next in line may be admitted too, when slots remain
            return time.monotonic() - ticket.enqueued

    def leave_background(self) -> None:
        with self._condition:
            self._background -= 1
            self._condition.notify_all()

    def _admits(self, ticket: _Ticket) -> bool:
        if self._background >= self._parallel or self._next() is not ticket:
            return False
        return self._background + self._interactive < self._parallel or self._aged(ticket)

    def _next(self) -> _Ticket:
        """The aged ticket that waited longest, else the first by class and arrival."""
        aged = [ticket for ticket in self._waiting if self._aged(ticket)]
        if aged:
            return min(aged, key=lambda ticket: ticket.enqueued)
        return self._waiting[0]

    def _aged(self, ticket: _Ticket) -> bool:
        return time.monotonic() - ticket.enqueued >= self._max_wait_seconds

    def _until_aged(self, ticket: _Ticket) -> float | None:
        remaining = ticket.enqueued + self._max_wait_seconds - time.monotonic()
        return remaining if remaining > 0 else None
