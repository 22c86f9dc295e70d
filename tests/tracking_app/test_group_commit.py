"""Group commit: concurrent submitters share writes, and each returns only after its own row is written."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from tracking_app import group_commit
from tracking_app.group_commit import BatchFailed, GroupCommit, WriteAborted


class Interrupted(BaseException):
    """Stands in for gevent.Timeout or a kill: not an Exception."""


class Store:
    """A write function whose first call can be held open, so others queue behind it."""

    def __init__(self, fail_on: set[int] = frozenset(), bad_rows: set[int] = frozenset(),
                 interrupt_on: set[int] = frozenset()) -> None:
        self.batches: list[list[int]] = []
        self.written: set[int] = set()
        self.fail_on, self.bad_rows, self.interrupt_on = fail_on, bad_rows, interrupt_on
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def write(self, rows):
        self.entered.set()
        self.release.wait(10)
        if self.interrupt_on & set(rows):
            raise Interrupted
        if self.fail_on & set(rows):
            raise ConnectionError("database went away")
        good = [r for r in rows if r not in self.bad_rows]
        self.batches.append(good)
        self.written.update(good)
        # per-row outcomes, as OpenRecorder reports a row that cannot be stored
        return [ValueError(f"bad row {r}") if r in self.bad_rows else None for r in rows] if len(good) < len(rows) else None


_local = threading.local()


class InterruptibleEvent(threading.Event):
    """threading.Event whose wait is interrupted, before or after it is woken, for threads that ask."""

    def wait(self, timeout=None):
        when = getattr(_local, "interrupt", None)
        if when == "before":
            time.sleep(0.05)
            raise Interrupted
        woken = super().wait(timeout)
        if when == "after":
            raise Interrupted
        return woken


def _submit_all(group: GroupCommit, store: Store, rows, outcomes: dict, interrupt=None) -> list[threading.Thread]:
    def run(row):
        _local.interrupt = interrupt
        try:
            group.submit(row)
            outcomes[row] = row in store.written  # written before submit returned?
        except WriteAborted as exc:
            outcomes[row] = exc
        except BatchFailed as exc:
            outcomes[row] = exc.__cause__
        except Interrupted as exc:
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
        time.sleep(0.005)
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
    assert len({id(outcomes[r]) for r in range(1, 6)}) == 1  # one cause, each caller its own BatchFailed
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


def test_a_lone_failure_is_raised_to_its_caller_with_its_cause():
    store = Store(fail_on={1})
    with pytest.raises(BatchFailed) as failed:
        GroupCommit(store.write).submit(1)
    assert isinstance(failed.value.__cause__, ConnectionError)


def test_a_row_the_write_refuses_fails_alone():
    store = Store(bad_rows={3})
    outcomes = _behind_a_held_write(GroupCommit(store.write), store, range(1, 6))
    assert isinstance(outcomes.pop(3), ValueError)
    assert outcomes == dict.fromkeys([0, 1, 2, 4, 5], True)


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_waiter_interrupted_before_or_after_its_turn_strands_nobody(monkeypatch, when):
    """"after": woken with the lead handed to it, it is interrupted before it can lead."""
    monkeypatch.setattr(group_commit, "threading", SimpleNamespace(Event=InterruptibleEvent, Lock=threading.Lock))
    store, outcomes = Store(), {}
    group = GroupCommit(store.write)
    store.release.clear()
    first = _submit_all(group, store, [0], outcomes)
    assert store.entered.wait(5)
    quitter = _submit_all(group, store, [1], outcomes, interrupt=when)
    while len(group._queue) < 1:
        time.sleep(0.005)
    if when == "before":
        quitter[0].join(5)  # gone before anyone handed it anything
    patient = _submit_all(group, store, [2], outcomes)
    while 2 not in [w.row for w in group._queue]:
        time.sleep(0.005)
    store.release.set()
    for t in first + quitter + patient:
        t.join(10)
    assert isinstance(outcomes[1], Interrupted) and (outcomes[0], outcomes[2]) == (True, True)
    assert store.batches == [[0], [2]]  # the quitter's row was never written
    group.submit(3)
    assert store.batches[-1] == [3] and not group._writing and group._queue == []


def test_a_leader_interrupted_mid_write_aborts_its_batch_and_the_next_one_goes():
    store = Store(interrupt_on={3})
    group = GroupCommit(store.write)
    outcomes = _behind_a_held_write(group, store, range(1, 6))
    assert outcomes[0] is True
    assert sorted(type(outcomes[r]).__name__ for r in range(1, 6)) == ["Interrupted"] + ["WriteAborted"] * 4
    group.submit(7)
    assert store.batches == [[0], [7]]
