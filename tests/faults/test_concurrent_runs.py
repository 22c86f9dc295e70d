"""Two delivery runs at once on one queue: every message sent once, by one of them."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta

import pytest

from tasks.deliver import deliver_batch


def _run_until_empty(now: datetime, start: threading.Barrier, totals: Counter, errors: list) -> None:
    """One runner: batches of 20 until a batch finds nothing due (each batch on its own SMTP connection)."""
    try:
        start.wait(timeout=30)
        while True:
            counts = deliver_batch.fn(now=now, limit=20)["counts"]
            totals.update(counts)
            if not counts.get("claimed"):
                return
    except Exception as exc:  # noqa: BLE001 -- reported by the test, not lost in the thread
        errors.append(exc)


@pytest.mark.parametrize("second", ["normal", "backfill"])
def test_two_delivery_runs_at_once_never_send_a_message_twice(smtp_server, fill, db_url, now, audit, second):
    """Two runners, each with its own database connections and SMTP connection, claim small batches from the
    same 300 messages at the same time until none is left.

    "backfill": the second runs as of a month ago. Its claims are leased on the wall clock like any
    other, so the first must not take them for a dead worker's expired ones and send them again.
    """
    smtp_server.stall_data = 0.002  # batches take long enough to overlap
    fill([f"r{i}@example.com" for i in range(300)])
    start = threading.Barrier(2)
    totals, errors = [Counter(), Counter()], []
    threads = [threading.Thread(target=_run_until_empty, args=(at, start, counted, errors))
               for at, counted in zip((now, now - timedelta(days=30) if second == "backfill" else now), totals,
                                      strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors

    result = audit(db_url, smtp_server)
    assert result.resent == {}, f"sent twice: {result.resent} (runners' counts {totals})"
    assert result.statuses == {"sent": 300}
    assert [t["sent"] for t in totals] == [t["claimed"] for t in totals]
    assert sum(t["sent"] for t in totals) == 300
    assert min(t["sent"] for t in totals) >= 20, totals  # both took a real share: they ran side by side
