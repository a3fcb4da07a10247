"""Milvus Lite's grouped writes (audiosearch/search/group_commit.py), with the store's calls recorded."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from audiosearch.search.group_commit import GroupCommit, Row


class BadRow(Exception):
    pass


class MilvusDown(Exception):
    pass


class Recorder:
    """Stands for Milvus Lite: records each call; the first upsert blocks until released, so writes pile up."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, list[int]]] = []
        self.upserted: list[list[Row]] = []
        self.first_upsert_started = threading.Event()
        self.release_first_upsert = threading.Event()
        self.fail_upsert_when: Callable[[list[Row]], Exception | None] = lambda rows: None
        self.fail_flush: Exception | None = None

    def upsert(self, collection: str, rows: list[Row]) -> None:
        if not self.first_upsert_started.is_set():
            self.first_upsert_started.set()
            self.release_first_upsert.wait(5)
        error = self.fail_upsert_when(rows)
        self.calls.append(("upsert", collection, [row["id"] for row in rows]))
        self.upserted.append(rows)
        if error is not None:
            raise error

    def flush(self, collection: str) -> None:
        self.calls.append(("flush", collection, []))
        if self.fail_flush is not None:
            raise self.fail_flush


def commit_for(recorder: Recorder) -> GroupCommit:
    return GroupCommit(recorder.upsert, recorder.flush, lambda error: isinstance(error, BadRow), "id")


def rows(*ids: int) -> list[Row]:
    return [{"id": row_id, "value": f"v{row_id}"} for row_id in ids]


def blocked_then(recorder: Recorder, commit: GroupCommit, *writes: Callable[[], None]
                 ) -> dict[int, BaseException | None]:
    """A first upsert holds the writer while `writes` queue up behind it, in order; then it is released.
    Returns each of `writes`' outcome (None: acknowledged)."""
    outcomes: dict[int, BaseException | None] = {}

    def run(index: int, write: Callable[[], None]) -> None:
        try:
            write()
            outcomes[index] = None
        except Exception as error:  # noqa: BLE001 - the test inspects it
            outcomes[index] = error

    first = threading.Thread(target=commit.upsert, args=("a", rows(0)))
    first.start()
    assert recorder.first_upsert_started.wait(5)
    threads = [threading.Thread(target=run, args=(index, write)) for index, write in enumerate(writes)]
    for queued, thread in enumerate(threads, start=1):
        thread.start()
        wait_until(lambda queued=queued: len(commit._queue) == queued)
    recorder.release_first_upsert.set()
    for thread in [first, *threads]:
        thread.join(10)
    return outcomes


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the write never reached the queue"
        time.sleep(0.001)


def test_a_lone_write_is_upserted_then_flushed() -> None:
    recorder = Recorder()
    recorder.release_first_upsert.set()
    commit_for(recorder).upsert("a", rows(1, 2))
    assert recorder.calls == [("upsert", "a", [1, 2]), ("flush", "a", [])]


def test_writes_queued_behind_a_busy_writer_share_one_upsert_and_one_flush() -> None:
    recorder = Recorder()
    commit = commit_for(recorder)

    outcomes = blocked_then(recorder, commit, *(lambda n=n: commit.upsert("a", rows(n)) for n in range(1, 6)))

    assert outcomes == dict.fromkeys(range(5))
    assert recorder.calls == [("upsert", "a", [0]), ("flush", "a", []),
                              ("upsert", "a", [1, 2, 3, 4, 5]), ("flush", "a", [])]


def test_where_queued_writes_repeat_an_id_the_later_row_wins() -> None:
    recorder = Recorder()
    commit = commit_for(recorder)

    blocked_then(recorder, commit,
                 lambda: commit.upsert("a", [{"id": 7, "value": "old"}]),
                 lambda: commit.upsert("a", [{"id": 7, "value": "new"}]))

    assert recorder.upserted[-1] == [{"id": 7, "value": "new"}]


def test_each_collection_gets_its_own_upsert_and_flush() -> None:
    recorder = Recorder()
    commit = commit_for(recorder)

    blocked_then(recorder, commit,
                 lambda: commit.upsert("a", rows(1)), lambda: commit.upsert("b", rows(2)),
                 lambda: commit.upsert("a", rows(3)))

    assert recorder.calls[2:] == [("upsert", "a", [1, 3]), ("flush", "a", []),
                                  ("upsert", "b", [2]), ("flush", "b", [])]


def test_a_delete_between_upserts_keeps_its_place_in_the_order() -> None:
    recorder = Recorder()
    commit = commit_for(recorder)

    def delete() -> None:
        recorder.calls.append(("delete", "a", []))

    blocked_then(recorder, commit,
                 lambda: commit.upsert("a", rows(1)), lambda: commit.run("a", delete),
                 lambda: commit.upsert("a", rows(2)))

    assert recorder.calls[2:] == [("upsert", "a", [1]), ("delete", "a", []), ("upsert", "a", [2]),
                                  ("flush", "a", [])]


def test_a_bad_write_fails_alone_and_the_others_are_written() -> None:
    recorder = Recorder()
    recorder.fail_upsert_when = lambda batch: BadRow("row 3") if any(row["id"] == 3 for row in batch) else None
    commit = commit_for(recorder)

    outcomes = blocked_then(recorder, commit, *(lambda n=n: commit.upsert("a", rows(n)) for n in (2, 3, 4)))

    assert outcomes[0] is None
    assert outcomes[2] is None
    assert isinstance(outcomes[1], BadRow)
    assert recorder.calls[2:] == [("upsert", "a", [2, 3, 4]), ("upsert", "a", [2]), ("upsert", "a", [3]),
                                  ("upsert", "a", [4]), ("flush", "a", [])]


def test_when_milvus_is_down_every_write_of_the_group_fails_without_retries() -> None:
    recorder = Recorder()
    down = MilvusDown("connection refused")
    recorder.fail_upsert_when = lambda batch: down if len(batch) > 1 else None
    commit = commit_for(recorder)

    outcomes = blocked_then(recorder, commit, *(lambda n=n: commit.upsert("a", rows(n)) for n in (1, 2)))

    assert outcomes == {0: down, 1: down}
    assert recorder.calls[2:] == [("upsert", "a", [1, 2])]


def test_a_failed_flush_fails_the_writes_it_was_to_make_durable() -> None:
    recorder = Recorder()
    recorder.release_first_upsert.set()
    recorder.fail_flush = MilvusDown("flush failed")
    commit = commit_for(recorder)

    with pytest.raises(MilvusDown):
        commit.upsert("a", rows(1))
    recorder.fail_flush = None
    commit.upsert("a", rows(2))

    assert recorder.calls[-2:] == [("upsert", "a", [2]), ("flush", "a", [])]


def test_a_failed_delete_fails_only_itself() -> None:
    recorder = Recorder()
    commit = commit_for(recorder)

    def delete() -> None:
        raise MilvusDown("delete failed")

    outcomes = blocked_then(recorder, commit, lambda: commit.run("a", delete), lambda: commit.upsert("a", rows(5)))

    assert isinstance(outcomes[0], MilvusDown)
    assert outcomes[1] is None
    assert recorder.calls[2:] == [("upsert", "a", [5]), ("flush", "a", [])]
