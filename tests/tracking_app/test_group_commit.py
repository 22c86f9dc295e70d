"""Group commit: concurrent submitters share writes, and each returns only after its own row is written."""

from __future__ import annotations

import threading

import pytest

from tracking_app.group_commit import GroupCommit


class Store:
    """A write function whose first call can be held open, so others queue behind it."""

    def __init__(self, fail_on: set[int] = frozenset()) -> None:
        self.batches: list[list[int]] = []
        self.written: set[int] = set()
        self.fail_on = fail_on
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def write(self, rows):
        self.entered.set()
        self.release.wait(10)
        if self.fail_on & set(rows):
            raise ConnectionError("database went away")
        self.batches.append(list(rows))
        self.written.update(rows)


def _submit_all(group: GroupCommit, store: Store, rows, outcomes: dict) -> list[threading.Thread]:
    def run(row):
        try:
            group.submit(row)
            outcomes[row] = row in store.written  # written before submit returned?
        except ConnectionError as exc:
            outcomes[row] = exc

    threads = [threading.Thread(target=run, args=(row,)) for row in rows]
    for t in threads:
        t.start()
    return threads


def test_a_lone_row_is_written_at_once_on_its_own():
    store = Store()
    GroupCommit(store.write).submit(1)
    assert store.batches == [[1]]


def _behind_a_held_write(group: GroupCommit, store: Store, rows) -> dict:
    """Submit row 0 and hold its write open while rows queue behind it; then let all finish."""
    outcomes: dict = {}
    store.release.clear()
    first = _submit_all(group, store, [0], outcomes)
    assert store.entered.wait(5)
    queued = _submit_all(group, store, rows, outcomes)
    while len(group._queue) < len(rows):  # every one waiting behind the write in progress
        threading.Event().wait(0.005)
    store.release.set()
    for t in first + queued:
        t.join(10)
    return outcomes


def test_rows_arriving_during_a_write_share_the_next_one_and_each_returns_after_its_own():
    store = Store()
    outcomes = _behind_a_held_write(GroupCommit(store.write), store, range(1, 21))
    assert [sorted(b) for b in store.batches] == [[0], list(range(1, 21))]
    assert outcomes == dict.fromkeys(range(21), True)


def test_batches_are_capped_and_the_rest_follow():
    store = Store()
    outcomes = _behind_a_held_write(GroupCommit(store.write, max_batch=8), store, range(1, 21))
    assert [len(b) for b in store.batches] == [1, 8, 8, 4]
    assert sorted(r for b in store.batches for r in b) == list(range(21))
    assert outcomes == dict.fromkeys(range(21), True)


def test_a_failed_write_fails_every_row_in_it_and_the_next_batch_still_goes():
    store = Store(fail_on={3})
    group = GroupCommit(store.write)
    outcomes = _behind_a_held_write(group, store, range(1, 6))
    assert outcomes[0] is True
    assert all(isinstance(outcomes[r], ConnectionError) for r in range(1, 6))
    group.submit(7)  # nothing is left stuck: the next caller leads a fresh write
    assert store.batches == [[0], [7]]


def test_many_threads_lose_nothing_and_never_write_a_row_twice():
    store, outcomes = Store(), {}
    group = GroupCommit(store.write)
    threads = _submit_all(group, store, range(400), outcomes)
    for t in threads:
        t.join(20)
    rows = [r for b in store.batches for r in b]
    assert sorted(rows) == list(range(400))
    assert outcomes == dict.fromkeys(range(400), True)


def test_a_lone_failure_is_raised_to_its_caller():
    store = Store(fail_on={1})
    with pytest.raises(ConnectionError):
        GroupCommit(store.write).submit(1)
