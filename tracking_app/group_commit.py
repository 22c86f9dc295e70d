"""Group commit: requests in flight together in one worker share one write and one commit.

Each caller still returns only after its own row is committed (or the write failed), so
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


class _Waiter:
    __slots__ = ("row", "ready", "lead", "error")

    def __init__(self, row: Any) -> None:
        self.row = row
        self.ready = threading.Event()
        self.lead = False
        self.error: BaseException | None = None


class GroupCommit:
    """Funnel rows from concurrent threads into batched calls of write(rows)."""

    def __init__(self, write: Callable[[Sequence[Any]], None], max_batch: int = 256) -> None:
        self._write = write
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Waiter] = []
        self._writing = False

    def submit(self, row: Any) -> None:
        """Return once row is written; raise what the write raised if it failed."""
        me = _Waiter(row)
        with self._lock:
            self._queue.append(me)
            me.lead = not self._writing
            self._writing = True
        if not me.lead:
            me.ready.wait()
        if me.lead:  # led from the start, or handed the lead while waiting
            self._lead()
        if me.error is not None:
            raise me.error

    def _lead(self) -> None:
        with self._lock:
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
        error: BaseException | None = None
        try:
            self._write([w.row for w in batch])
        except BaseException as exc:  # noqa: BLE001 -- every caller in the batch gets its own copy of the failure
            error = exc
        with self._lock:
            successor = self._queue[0] if self._queue else None
            self._writing = successor is not None
        # the leader is batch[0]; it learns its outcome from error, the rest when woken
        for waiter in batch:
            waiter.error = error
            waiter.lead = False
            waiter.ready.set()
        if successor is not None:
            successor.lead = True
            successor.ready.set()
