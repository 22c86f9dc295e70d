"""The send-rate limit: its arithmetic, its Prefect limit, strict mode, two runners sharing it, priority under it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from tasks import send_rate
from tasks.send_rate import LIMIT_NAME, SendRate
from tutormax.settings import PROJECT_ROOT, get_settings


@pytest.mark.parametrize(("per_minute", "chunk", "burst"), [(125, 2, 4), (3000, 20, 40), (30, 1, 2), (2, 1, 1),
                                                           (600, 10, 20), (100_000, 20, 40)])
def test_any_minute_holds_at_most_the_limit(per_minute, chunk, burst):
    rate = SendRate(per_minute)
    assert (rate.chunk, rate.burst) == (chunk, burst)
    # the server lets a window of 60 s hold burst + 60 * decay; a chunk granted just before the
    # window may still arrive in it: all three together are the limit (one a minute at the least)
    assert rate.burst + 60 * rate.decay + rate.chunk == pytest.approx(max(per_minute, burst + chunk + 1))
    assert rate.decay > 0 and rate.chunk <= rate.burst


def _limit():
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(LIMIT_NAME)


def _delete_limit():
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.delete_global_concurrency_limit_by_name(LIMIT_NAME)
        except ObjectNotFound:
            pass


def test_apply_creates_updates_and_deactivates_the_limit(prefect_harness):
    _delete_limit()
    assert send_rate.apply(125).startswith(f"{LIMIT_NAME}: 125 messages a minute (burst 4")
    created = _limit()
    assert (created.limit, created.active) == (4, True)
    assert created.slot_decay_per_second == pytest.approx(119 / 60)
    send_rate.apply(3000)
    assert (_limit().limit, _limit().slot_decay_per_second) == (40, pytest.approx(2940 / 60))
    assert send_rate.apply(None) == f"SMTP_RATE_LIMIT is not set: the limit {LIMIT_NAME} is deactivated"
    assert _limit().active is False
    _delete_limit()
    assert send_rate.apply(None) == "SMTP_RATE_LIMIT is not set: no send-rate limit"


def test_a_missing_limit_in_strict_mode_is_an_error_that_names_it(prefect_harness, smtp_server, enqueue, db_url, now,
                                                                  monkeypatch):
    from tasks.deliver import deliver_batch
    from tasks.send_rate import RateLimitError

    _delete_limit()
    monkeypatch.setenv("SMTP_RATE_LIMIT", "600")
    get_settings.cache_clear()
    mid = enqueue("waiting@example.com")
    with pytest.raises(RateLimitError, match=f"'{LIMIT_NAME}' cannot be taken from .*tutormax limits apply"):
        deliver_batch.fn(now=now)
    assert smtp_server.received == []  # nothing went unthrottled
    from db.models import EmailMessage
    from db.session import transaction

    with transaction(db_url) as s:
        assert s.get(EmailMessage, mid).status == "queued"


def test_critical_mail_waits_for_one_chunk_at_most_behind_a_backlog(prefect_harness, smtp_server, enqueue, db_url,
                                                                    now, monkeypatch):
    from flows.deliver_outbox import deliver_outbox

    monkeypatch.setenv("SMTP_RATE_LIMIT", "1200")  # 20 a chunk, 20 a second
    get_settings.cache_clear()
    send_rate.apply(1200)
    chunk = SendRate(1200).chunk
    for i in range(400):
        enqueue(f"digest{i}@example.com", template_type="weekly_digest")
    runner = threading.Thread(target=deliver_outbox, kwargs={"now": now, "budget_seconds": 6.0})
    runner.start()
    waited = time.monotonic()
    while len(smtp_server.received) < 2 * chunk and time.monotonic() - waited < 60:
        time.sleep(0.01)
    ahead = len(smtp_server.received)
    enqueue("manager@example.com", template_type="intervention_notification", priority=0)
    runner.join()
    order = [r[0][0] for r in smtp_server.received]
    assert "manager@example.com" in order
    # it goes first in the next chunk: after the rest of the chunk being sent when it was queued
    assert order.index("manager@example.com") <= ahead + chunk
    _delete_limit()


def test_mail_that_becomes_due_while_a_runner_waits_for_slots_goes_in_the_next_chunk(smtp_server, enqueue, db_url,
                                                                                    now, monkeypatch):
    """Slots are taken before the claim, so a wait for slots never holds a chunk claimed before it."""
    from tasks import deliver

    monkeypatch.setenv("SMTP_RATE_LIMIT", "600")  # 10 a chunk
    get_settings.cache_clear()
    for i in range(25):
        enqueue(f"digest{i}@example.com", template_type="weekly_digest")
    waits = []

    def acquire(rate, messages):  # the limit binds: while this runner waits, an escalation is planned
        waits.append(messages)
        if len(waits) == 2:
            enqueue("manager@example.com", template_type="intervention_notification", priority=0)

    monkeypatch.setattr(deliver.send_rate, "acquire", acquire)
    deliver.deliver_batch.fn(now=now, limit=30)
    order = [r[0][0] for r in smtp_server.received]
    assert waits[:3] == [10, 10, 10] and order.index("manager@example.com") == 10  # first of the second chunk
    assert len(order) == 26


RUNNER = """
import sys
from flows.deliver_outbox import deliver_outbox
deliver_outbox(budget_seconds=float(sys.argv[1]))
"""


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_runners_never_exceed_the_limit_in_any_minute(prefect_harness, smtp_server, enqueue, db_url, tmp_path):
    """Two deliver-outbox processes at once against one test SMTP server, for a little over a minute.

    It tests the limit the runners share on the Prefect server, and takes a minute: it runs once, on
    PostgreSQL, where runners on several hosts share a queue (the claims on both databases are tested
    by tests/db/test_outbox.py).
    """
    from prefect.settings import PREFECT_API_URL

    per_minute = 240
    for i in range(400):  # more than two minutes' worth: the limit binds throughout
        enqueue(f"r{i}@example.com", template_type="weekly_digest")
    env = {**os.environ, "SMTP_RATE_LIMIT": str(per_minute), "DATABASE_URL": db_url,
           "PREFECT_API_URL": PREFECT_API_URL.value(), "TUTORMAX_VAR_DIR": str(tmp_path), "PREFECT_LOGGING_LEVEL": "WARNING"}
    runners = [subprocess.Popen([sys.executable, "-c", RUNNER, "64"], cwd=PROJECT_ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    for runner in runners:
        assert runner.wait(timeout=180) == 0, runner.stderr.read().decode()[-3000:]
    times = sorted(smtp_server.times)
    assert times[-1] - times[0] >= 60  # a full minute of sending was measured
    busiest = max(sum(1 for t in times[i:] if t < start + 60) for i, start in enumerate(times))
    assert busiest <= per_minute, busiest
    # and the limit was used, not merely respected: the busiest minute sent close to it
    assert busiest >= 0.85 * per_minute, busiest
    _delete_limit()
