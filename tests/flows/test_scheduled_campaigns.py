"""scheduled-campaigns with deliver-outbox and a real SMTP server: start, plan, send, pause, resume, cancel, A/B, guard.

listmonk's users report duplicates and skipped recipients around pause and resume: here every
recipient is counted at the SMTP server, exactly once, across pauses, retries and resumes.
"""

from __future__ import annotations

import email
from collections import Counter
from datetime import timedelta
from email import policy

from sqlalchemy import select

from db import campaigns
from db.models import EmailCampaign, EmailMessage, EmailTrackingEvent, Tutor
from db.session import transaction
from flows.deliver_outbox import deliver_outbox
from flows.scheduled_campaigns import scheduled_campaigns
from tasks import campaign_control
from tasks.campaign_control import ABTest, CampaignForm, Content
from tasks.deliver import deliver_batch

BODY = Content(subject="Winter break hours", preheader="Shorter days",
               body_markdown="# Winter break\n\nSupport is open **9 to 3**. [Calendar](https://example.com/cal)")


def _tutors(url, n: int) -> list[str]:
    with transaction(url) as s:
        s.add_all(Tutor(id=i, name=f"Tutor {i}", email=f"tutor{i}@example.com") for i in range(1, n + 1))
    return [f"tutor{i}@example.com" for i in range(1, n + 1)]


def _create(now, **overrides) -> str:
    form = CampaignForm(**{"name": "Winter hours", "segment": "all-tutors", "content": BODY, "at": now, **overrides})
    return campaign_control.create(form, actor="ops", now=now).campaign_id


def _status(url, cid) -> str:
    with transaction(url) as s:
        return s.get(EmailCampaign, cid).status


def _arrivals(smtp_server) -> Counter[str]:
    return Counter(recipients[0] for recipients, _ in smtp_server.received)


def test_a_campaign_goes_from_scheduled_to_completed_through_the_queue(run_flow, smtp_server, db_url, now):
    addresses = _tutors(db_url, 12)
    later = _create(now + timedelta(hours=1))
    cid = _create(now)
    first = run_flow(scheduled_campaigns, now=now)
    assert first.result["active"] == [cid] and _status(db_url, later) == "scheduled"
    assert first.result["planned"] == [{"campaign_id": cid, "pages": 1, "queued": 12, "skipped": 0,
                                        "already_planned": 0, "stopped": None}]
    assert f"| {cid} | 1 | 12 | 0 | 0 |  |" in first.summary and first.name.startswith("scheduled-campaigns ")
    assert smtp_server.received == []  # planning sends nothing: the queue does
    sent = deliver_outbox(now=now)
    assert sent["sent"] == 12 and _arrivals(smtp_server) == Counter(addresses)
    message = email.message_from_bytes(smtp_server.received[0][1], policy=policy.default)
    assert message["Subject"] == "Winter break hours"
    assert "Support is open 9 to 3" in message.get_body(("plain",)).get_content()
    assert _status(db_url, cid) == "sending"
    done = run_flow(scheduled_campaigns, now=now + timedelta(minutes=15))
    assert done.result["completed"] == [cid] and f"- {cid} completed." in done.summary
    assert _status(db_url, cid) == "completed"
    with transaction(db_url) as s:
        assert campaigns.counts(s, s.get(EmailCampaign, cid))["sent"] == 12
    run_flow(scheduled_campaigns, now=now + timedelta(minutes=30))  # a completed campaign is left alone
    assert len(smtp_server.received) == 12


def test_pause_and_resume_send_everyone_exactly_once(run_flow, smtp_server, db_url, now):
    """listmonk's bug reports: recipients doubled or dropped around a pause. A retry is pending across it too."""
    addresses = _tutors(db_url, 60)
    smtp_server.faults["tutor7@example.com"] = "defer"  # deferred before the pause, retried after the resume
    cid = _create(now)
    run_flow(scheduled_campaigns, now=now)
    deliver_batch.fn(now=now, limit=20)  # a runner got 20 out (one deferred), then the operator pauses
    assert len(smtp_server.received) == 19
    held = campaign_control.pause(cid, actor="ops", now=now, reason="wrong date in the body")
    assert held == 41  # 40 never tried, 1 deferred
    del smtp_server.faults["tutor7@example.com"]
    paused = deliver_outbox(now=now + timedelta(minutes=5))  # the retry's time has come: still nothing leaves
    assert paused["sent"] == 0 and len(smtp_server.received) == 19
    run_flow(scheduled_campaigns, now=now + timedelta(minutes=15))
    assert _status(db_url, cid) == "paused"
    campaign_control.resume(cid, actor="ops", now=now + timedelta(minutes=20))
    deliver_outbox(now=now + timedelta(minutes=20))
    assert _arrivals(smtp_server) == Counter(addresses)  # all 60, each once
    run_flow(scheduled_campaigns, now=now + timedelta(minutes=30))
    assert _status(db_url, cid) == "completed"
    with transaction(db_url) as s:
        history = [(t.from_status, t.to_status) for t in campaigns.transitions(s, cid)]
    assert history == [(None, "draft"), ("draft", "scheduled"), ("scheduled", "sending"), ("sending", "paused"),
                       ("paused", "sending"), ("sending", "completed")]


def test_cancel_skips_the_rest_and_nothing_more_leaves(run_flow, smtp_server, db_url, now):
    _tutors(db_url, 30)
    cid = _create(now)
    run_flow(scheduled_campaigns, now=now)
    deliver_batch.fn(now=now, limit=10)
    assert campaign_control.cancel(cid, actor="ops", now=now, reason="sent to the wrong list") == 20
    deliver_outbox(now=now + timedelta(minutes=1))
    run_flow(scheduled_campaigns, now=now + timedelta(minutes=15))
    assert len(smtp_server.received) == 10 and _status(db_url, cid) == "cancelled"
    with transaction(db_url) as s:
        statuses = Counter(s.execute(select(EmailMessage.status, EmailMessage.skip_reason).where(
            EmailMessage.campaign_id == cid)).all())
    assert statuses == {("sent", None): 10, ("skipped", "campaign_cancelled"): 20}


def test_a_campaign_waits_behind_alerts_at_low_priority(run_flow, smtp_server, db_url, enqueue, now):
    _tutors(db_url, 5)
    _create(now)
    run_flow(scheduled_campaigns, now=now)
    enqueue("alert@example.com", priority=1)  # planned after the campaign, a high-priority alert
    deliver_batch.fn(now=now, limit=1)
    assert [r[0][0] for r in smtp_server.received] == ["alert@example.com"]


def _click(url, cid, variant, share):
    """People click a share of a variant's test messages."""
    with transaction(url) as s:
        ids = s.scalars(select(EmailMessage.message_id).where(EmailMessage.campaign_id == cid,
                                                              EmailMessage.ab_variant == variant)
                        .order_by(EmailMessage.message_id)).all()
        for mid in ids[:int(len(ids) * share)]:
            s.add(EmailTrackingEvent(message_id=mid, event_type="clicked", is_machine=False))


def test_an_ab_test_sends_its_portion_waits_then_sends_the_winner_to_the_rest(run_flow, smtp_server, db_url, now):
    _tutors(db_url, 600)
    ab = ABTest(b=Content(subject="Shorter hours this winter", body_markdown="Hours: **9 to 3**."), fraction=0.5,
                winner_after="4h")
    cid = _create(now, ab_test=ab)
    run_flow(scheduled_campaigns, now=now)
    deliver_outbox(now=now)
    test_portion = len(smtp_server.received)
    assert 240 <= test_portion <= 360
    subjects = Counter(email.message_from_bytes(raw, policy=policy.default)["Subject"]
                       for _, raw in smtp_server.received)
    assert set(subjects) == {"Winter break hours", "Shorter hours this winter"}
    _click(db_url, cid, "a", 0.10)
    _click(db_url, cid, "b", 0.30)
    # the wait starts once the test is sent: 1 hour in, a look; so clear a lead stops the wait early
    early = run_flow(scheduled_campaigns, now=now + timedelta(hours=1))
    verdict = early.result["decided"][cid]
    assert (verdict["winner"], verdict["method"], verdict["looks"]) == ("b", "sequential", 1)
    assert f"- {cid}: A/B decided: b wins: sequential p=" in early.summary
    deliver_outbox(now=now + timedelta(hours=1))
    rest = smtp_server.received[test_portion:]
    assert len(rest) == 600 - test_portion
    assert {email.message_from_bytes(raw, policy=policy.default)["Subject"] for _, raw in rest} == {
        "Shorter hours this winter"}
    assert _arrivals(smtp_server) == Counter(f"tutor{i}@example.com" for i in range(1, 601))
    with transaction(db_url) as s:
        c = s.get(EmailCampaign, cid)
        assert c.ab_winner == "b" and c.ab_verdict["variants"]["b"]["clicks"] > c.ab_verdict["variants"]["a"]["clicks"]
    run_flow(scheduled_campaigns, now=now + timedelta(hours=2))
    assert _status(db_url, cid) == "completed"


def test_no_significant_winner_after_the_wait_sends_the_control(run_flow, smtp_server, db_url, now):
    _tutors(db_url, 300)
    ab = ABTest(b=Content(subject="B subject", body_markdown="b"), fraction=0.5, winner_after="2h")
    cid = _create(now, ab_test=ab)
    run_flow(scheduled_campaigns, now=now)
    deliver_outbox(now=now)
    _click(db_url, cid, "a", 0.2)
    _click(db_url, cid, "b", 0.2)
    assert run_flow(scheduled_campaigns, now=now + timedelta(hours=1)).result["decided"] == {}
    final = run_flow(scheduled_campaigns, now=now + timedelta(hours=2)).result["decided"][cid]
    assert (final["winner"], final["sent_to_rest"], final["fallback_used"]) == (None, "a", True)
    deliver_outbox(now=now + timedelta(hours=2))
    with transaction(db_url) as s:
        rest = s.execute(select(EmailMessage.message_metadata).where(EmailMessage.campaign_id == cid,
                                                                    EmailMessage.ab_variant.is_(None))).scalars().all()
    assert rest and {m["variant"] for m in rest} == {"a"}


def test_the_guard_pauses_a_campaign_whose_first_deliveries_bounce(run_flow, smtp_server, db_url, now, caplog):
    addresses = _tutors(db_url, 200)
    for address in addresses[:20]:  # a stale list: one in ten does not exist
        smtp_server.faults[address] = "bounce"
    cid = _create(now)
    run_flow(scheduled_campaigns, now=now)
    deliver_batch.fn(now=now, limit=100)
    run = run_flow(scheduled_campaigns, now=now + timedelta(minutes=15))
    (paused,) = run.result["paused"]
    assert paused["campaign_id"] == cid and paused["held"] == 100
    assert paused["reason"] == ("hard-bounce rate above 5.0%: 20 of its first 100 deliveries "
                                "(more than 5.0% of 200 already)")
    assert f"**{cid} paused by the reputation guard**" in run.summary
    assert "paused by the reputation guard: hard-bounce rate above 5.0%" in caplog.text
    assert _status(db_url, cid) == "paused"
    deliver_outbox(now=now + timedelta(minutes=16))
    assert len(smtp_server.received) == 80  # nothing more of it left


def test_deliver_outbox_runs_the_guard_every_minute_before_it_sends(run_flow, smtp_server, db_url, now):
    addresses = _tutors(db_url, 200)
    for address in addresses[:20]:
        smtp_server.faults[address] = "bounce"
    cid = _create(now)
    run_flow(scheduled_campaigns, now=now)
    deliver_batch.fn(now=now, limit=100)
    run = run_flow(deliver_outbox, now=now + timedelta(minutes=1))  # not waiting for the next scheduled-campaigns
    assert run.result["paused_campaigns"] == [cid] and run.result["sent"] == 0
    assert f"Paused by the reputation guard: {cid}." in run.summary
    assert _status(db_url, cid) == "paused" and len(smtp_server.received) == 80
