"""An SMTP server that answers 4xx and 5xx at random and hangs up in the middle of DATA: nothing lost, nothing twice."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from db.models import EmailMessage
from db.session import transaction
from tasks.deliver import ServerDown, deliver_batch

# (stage, chance, answer): each RCPT and each message's content is answered by the first that the dice pick
CHAOS = (
    ("rcpt", 0.08, "451 4.2.1 Mailbox temporarily unavailable"),
    ("rcpt", 0.03, "550 5.1.1 No such user"),
    ("rcpt", 0.02, "554 5.7.1 Blocked by policy"),
    ("data", 0.06, "452 4.3.1 Insufficient system storage"),
    ("data", 0.02, "554 5.6.0 Message content rejected"),
    ("data", 0.10, "drop"),  # hang up after the content, before the answer: the server keeps nothing
)


class Dice:
    """Seeded faults for FaultyHandler.chaos; counts what it gave. Some addresses are hung up on a few times instead."""

    def __init__(self, seed: int, hang_ups: dict[str, int]) -> None:
        self.rng = random.Random(seed)
        self.given: Counter[str] = Counter()
        self.hang_ups = hang_ups

    def __call__(self, stage: str, address: str) -> str | None:
        if address in self.hang_ups:  # no dice for these: hung up on so many times, then accepted
            if stage == "data" and self.hang_ups[address]:
                self.hang_ups[address] -= 1
                return "drop"
            return None
        roll = self.rng.random()
        for where, chance, answer in CHAOS:
            if where != stage:
                continue
            if roll < chance:
                self.given[answer] += 1
                return answer
            roll -= chance
        return None


def _unfinished(url) -> int:
    with transaction(url) as s:
        return s.scalar(select(func.count()).where(EmailMessage.status.in_(["queued", "deferred", "sending"])))


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "lockstep"])
def test_random_refusals_and_mid_data_drops_lose_nothing_and_send_nothing_twice(
        smtp_server, fill, db_url, now, audit, pipelining):
    """200 messages through a server that refuses or hangs up at random; runs until nothing is left to try.

    Deferred retries come due as `now` moves on; a batch stopped by a server in trouble (ServerDown)
    is run again, as Prefect's task retry would.
    """
    smtp_server.pipelining = pipelining
    # four hang-ups in a row on one message: more than the client reconnects for, so that message waits
    dice = Dice(seed=18 + pipelining, hang_ups={"r100@example.com": 4})
    smtp_server.chaos = dice
    never = ["never1@example.com", "never2@example.com", "never3@example.com"]
    fill([f"r{i}@example.com" for i in range(197)] + never)
    for address in never:
        smtp_server.faults[address] = "defer"  # 4xx every time: failed once out of retries

    t, stopped, rounds = now, 0, 0
    while _unfinished(db_url) and rounds < 30:
        rounds += 1
        try:
            deliver_batch.fn(now=t, limit=500)
        except ServerDown:
            stopped += 1
            continue
        t += timedelta(minutes=5)  # past the longest backoff (240 s): every deferred message is due again
    assert _unfinished(db_url) == 0, f"still unfinished after {rounds} rounds"

    result = audit(db_url, smtp_server)
    assert result.resent == {}, f"sent twice (the server kept nothing it hung up on): {result.resent}"
    assert result.copies == result.statuses["sent"]
    # the faults were all given, and each left its mark
    assert set(dice.given) == {answer for _, _, answer in CHAOS}, dice.given
    assert len(smtp_server.dropped) >= 10, smtp_server.dropped
    with transaction(db_url) as s:
        retried_then_sent = s.scalar(select(func.count()).where(EmailMessage.status == "sent",
                                                                EmailMessage.retry_count > 0))
        gave_up = set(s.scalars(select(EmailMessage.recipient_email).where(
            EmailMessage.failure_reason.like("gave up after 3 retries%"))))
        bounced = s.scalar(select(func.count()).where(EmailMessage.bounce_type == "hard"))
    assert retried_then_sent > 0
    assert bounced > 0
    assert set(never) <= gave_up
    with transaction(db_url) as s:
        hung_up_on = s.scalars(select(EmailMessage).where(EmailMessage.recipient_email == "r100@example.com")).one()
    assert (hung_up_on.status, hung_up_on.retry_count) == ("sent", 1)  # deferred by the hang-ups, then sent
    assert 150 <= result.statuses["sent"] < 200, (result.statuses, stopped)


def test_a_message_the_server_always_hangs_up_on_does_not_hold_up_the_queue(smtp_server, fill, db_url, now, audit):
    """One message whose content makes the server hang up, every time (a crashing content filter): it ends
    failed with a reason within a few runs, and the messages planned after it are sent."""
    fill([f"r{i}@example.com" for i in range(5)])
    smtp_server.faults["r1@example.com"] = "drop"
    t = now
    for _ in range(10):  # ten runs, ten minutes apart
        try:
            deliver_batch.fn(now=t, limit=500)
        except ServerDown:
            pass
        t += timedelta(minutes=10)
    result = audit(db_url, smtp_server)
    assert result.statuses == {"sent": 4, "failed": 1}
