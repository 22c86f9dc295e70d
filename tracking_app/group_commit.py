"""Group commit: requests in flight together in one worker share one write and one commit.

Each caller still returns only after its own row is committed (or its write failed), so
"committed before the 2xx" holds; what is shared is the round trip and the commit. There is no
writer thread and no timer: the first caller to find no write in progress leads, writes every row
queued so far, wakes their callers, and hands the lead to the oldest row queued meanwhile. Rows
arriving during a write are the next batch, so batches grow with load and a lone request pays
nothing extra (the same idea as PostgreSQL's own group commit of WAL flushes).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

# write(rows) returns None when every row is written, or one exception (or None) per row
Write = Callable[[Sequence[Any]], Sequence[BaseException | None] | None]


class BatchFailed(Exception):
    """This caller's row was not written; __cause__ is what the write raised (shared by the batch)."""


class WriteAborted(BatchFailed):
    """The leader was interrupted mid-write: whether the batch was committed is unknown."""


class _Waiter:
    __slots__ = ("row", "ready", "lead", "error")

    def __init__(self, row: Any) -> None:
        self.row = row
        self.ready = threading.Event()
        self.lead = False
        self.error: BatchFailed | None = None


class GroupCommit:
    """Funnel rows from concurrent threads (or greenlets) into batched calls of write(rows)."""

    def __init__(self, write: Write, max_batch: int = 256) -> None:
        self._write = write
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Waiter] = []
        self._writing = False

    def submit(self, row: Any) -> None:
        """Return once row is written; raise BatchFailed (its cause: the write's error) if it was not."""
        me = _Waiter(row)
        with self._lock:
            self._queue.append(me)
            me.lead = not self._writing
            self._writing = True
        if not me.lead:
            try:
                me.ready.wait()
            except BaseException:
                self._abandon(me)  # a timeout or kill while waiting: never strand the queue behind us
                raise
        if me.lead:  # led from the start, or handed the lead while waiting
            self._lead()
        if me.error is not None:
            raise me.error

    def _lead(self) -> None:
        with self._lock:
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
        try:
            outcomes = self._write([w.row for w in batch])
        except Exception as exc:  # noqa: BLE001 -- each caller gets its own BatchFailed, caused by exc
            outcomes = [exc] * len(batch)
        except BaseException as exc:
            self._finish(batch, [exc] * len(batch), aborted=True)
            raise
        if outcomes is not None and len(outcomes) != len(batch):  # a broken write must not strand its callers
            outcomes = [RuntimeError(f"write reported {len(outcomes)} outcomes for {len(batch)} rows")] * len(batch)
        self._finish(batch, outcomes or [None] * len(batch))

    def _finish(self, batch: list[_Waiter], outcomes: Sequence[BaseException | None], aborted: bool = False) -> None:
        with self._lock:
            successor = self._hand_off()
        for waiter, outcome in zip(batch, outcomes, strict=True):
            if outcome is not None:
                waiter.error = (WriteAborted if aborted else BatchFailed)(str(outcome) or type(outcome).__name__)
                waiter.error.__cause__ = outcome
            waiter.lead = False
            waiter.ready.set()
        if successor is not None:
            successor.ready.set()

    def _abandon(self, me: _Waiter) -> None:
        successor = None
        with self._lock:
            if me in self._queue:  # not yet taken into a batch: leave without a trace
                self._queue.remove(me)
                if me.lead:  # the lead was handed to us: pass it on
                    successor = self._hand_off()
        if successor is not None:
            successor.ready.set()

    def _hand_off(self) -> _Waiter | None:
        """Under the lock: give the lead to the oldest queued row, or end the writing."""
        successor = self._queue[0] if self._queue else None
        self._writing = successor is not None
        if successor is not None:
            successor.lead = True
        return successor
