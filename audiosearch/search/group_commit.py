"""Milvus Lite's writes, one at a time and grouped: concurrent upserts become one upsert and one flush.

Milvus Lite answers one request at a time and each call has a fixed cost well above its rows' share, so many small
writes in a row starve ingest (docs/benchmarks.md, bench.throughput). Two
flushes at once break its manifest ("current_seq is monotonic"), and it rebuilds the arrays of unflushed rows on
every search, so each write is flushed before it is acknowledged.

Writers queue their writes. Whichever thread holds the writer's lock applies everything queued so far, collection
by collection, each collection's writes in queue order: consecutive upserts as one upsert (where an id repeats,
the later row wins), any other write on its own, then one flush. The others wait for their own write's outcome.
A merged upsert that fails with an error worth isolating is applied again write by write, so that one bad write
fails alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

Row = dict[str, Any]


@dataclass(eq=False)
class _Queued:
    collection: str
    rows: list[Row]  # an upsert's rows
    primary_key: str = ""  # the rows' primary key field, where rows repeat an id the later one wins
    action: Callable[[], object] | None = None  # any other write (a delete), instead of rows
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class GroupCommit:
    """`upsert(collection, rows)` and `flush(collection)` are the store's own calls; `isolate(error)` says whether
    a merged upsert's failure may lie in one of its writes (a bad row) rather than in Milvus (down, timed out).
    `primary_key` names the rows' primary key field, unless an upsert names another (a collection of its own
    schema)."""

    def __init__(self, upsert: Callable[[str, list[Row]], None], flush: Callable[[str], None],
                 isolate: Callable[[Exception], bool], primary_key: str) -> None:
        self._upsert = upsert
        self._flush = flush
        self._isolate = isolate
        self._primary_key = primary_key
        self._queue: list[_Queued] = []
        self._queue_lock = threading.Lock()
        self._writer_lock = threading.Lock()

    def upsert(self, collection: str, rows: list[Row], primary_key: str = "") -> None:
        self._submit(_Queued(collection, rows, primary_key or self._primary_key))

    def run(self, collection: str, action: Callable[[], object]) -> None:
        """Any other write (a delete), in queue order with the upserts, flushed before it returns."""
        self._submit(_Queued(collection, [], action=action))

    def _submit(self, queued: _Queued) -> None:
        with self._queue_lock:
            self._queue.append(queued)
        while not queued.done.is_set():
            with self._writer_lock:
                if queued.done.is_set():
                    break  # the thread that held the lock applied it
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._apply(batch)
        if queued.error is not None:
            raise queued.error

    def _apply(self, batch: list[_Queued]) -> None:
        by_collection: dict[str, list[_Queued]] = {}
        for queued in batch:
            by_collection.setdefault(queued.collection, []).append(queued)
        try:
            for collection, writes in by_collection.items():
                for run in _runs(writes):
                    self._apply_run(run)
                applied = [queued for queued in writes if queued.error is None]
                if applied:
                    _attempt(applied, lambda collection=collection: self._flush(collection))
        except BaseException as error:  # interrupted: no write of the batch counts as acknowledged
            for queued in batch:
                queued.error = queued.error or error
            raise
        finally:
            for queued in batch:
                queued.done.set()

    def _apply_run(self, run: list[_Queued]) -> None:
        first = run[0]
        if first.action is not None:
            _attempt(run, first.action)
            return
        merged = {row[queued.primary_key]: row for queued in run for row in queued.rows}
        error = _attempt(run, lambda: self._upsert(first.collection, list(merged.values())))
        if error is None or len(run) == 1 or not self._isolate(error):
            return
        for queued in run:  # again one by one: only the writes to blame fail
            queued.error = None
            _attempt([queued], lambda rows=queued.rows: self._upsert(first.collection, rows))


def _attempt(writes: list[_Queued], write: Callable[[], object]) -> Exception | None:
    """One call that decides the outcome of `writes`; its error is theirs."""
    try:
        write()
    except Exception as error:  # noqa: BLE001 - reported to every writer it concerns
        for queued in writes:
            queued.error = error
        return error
    return None


def _runs(writes: list[_Queued]) -> Iterator[list[_Queued]]:
    """Consecutive upserts together; every other write alone (the writes of one collection, in queue order)."""
    run: list[_Queued] = []
    for queued in writes:
        if run and (queued.action is not None or run[0].action is not None):
            yield run
            run = []
        run.append(queued)
    if run:
        yield run
