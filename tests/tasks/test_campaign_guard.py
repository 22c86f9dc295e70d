"""The reputation guard: over 5 % hard bounces or 0.3 % complaints in the first deliveries pauses a campaign."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from db import campaigns
from db.campaigns import FirstDeliveries
from db.models import EmailCampaign, EmailMessage, EmailTrackingEvent
from db.session import transaction
from tasks import campaign_control
from tasks.campaign_control import CampaignForm, Content
from tasks.campaign_guard import check, guard_reputation, judge


@pytest.mark.parametrize(("first", "window", "paused"), [
    (FirstDeliveries(1000, 50, 0), 1000, None),          # exactly 5 %: not above
    (FirstDeliveries(1000, 51, 0), 1000, "hard-bounce rate above 5.0%: 51 of its first 1000 deliveries"),
    (FirstDeliveries(1000, 0, 3), 1000, None),           # 0.3 %: not above
    (FirstDeliveries(1000, 0, 4), 1000, "complaint rate above 0.3%: 4 of its first 1000 deliveries"),
    (FirstDeliveries(100, 50, 0), 1000, None),           # half bounced so far, but 950 more may yet go well
    (FirstDeliveries(120, 51, 0), 1000, "hard-bounce rate above 5.0%: 51 of its first 120 deliveries "
                                        "(more than 5.0% of 1000 already)"),
    (FirstDeliveries(200, 11, 0), 200, "hard-bounce rate above 5.0%: 11 of its first 200 deliveries"),
    (FirstDeliveries(0, 0, 0), 1000, None),
])
def test_judge(first, window, paused):
    assert judge(first, window) == paused


def _sending_campaign(url, now, n_sent: int, hard: int = 0, complaints: int = 0) -> str:
    cid = campaign_control.create(CampaignForm(name="News", segment="all-tutors", at=now,
                                               content=Content(subject="News", body_markdown="x")),
                                  actor="ops", now=now).campaign_id
    with transaction(url) as s:
        c = campaigns.locked(s, cid)
        campaigns.transition(s, c, "sending", actor="test", at=now)
        c.started_at, c.planned_at = now, now
        for i in range(n_sent + 5):
            bounced = i < hard
            message = EmailMessage(
                idempotency_key=f"{cid}:{i}", campaign_id=cid, recipient_email=f"r{i}@example.com",
                recipient_type="tutor", template_type="announcement", category="marketing_emails",
                status="failed" if bounced else "sent" if i < n_sent else "queued", metadata={},
                bounced_at=now if bounced else None, bounce_type="hard" if bounced else None)
            s.add(message)
            s.flush()
            if hard <= i < hard + complaints:
                s.add(EmailTrackingEvent(message_id=message.message_id, event_type="complained",
                                         event_time=now + timedelta(hours=1)))
    return cid


def test_a_campaign_of_few_is_judged_on_all_its_deliveries(db_url, now):
    # 45 to send, 40 sent: 2 hard bounces may still end at 2 in 45 (4.4 %); 3 cannot end under 5 %
    cid = _sending_campaign(db_url, now, n_sent=40, hard=2)
    with transaction(db_url) as s:
        assert check(s, s.get(EmailCampaign, cid)) is None
    cid = _sending_campaign(db_url, now, n_sent=40, hard=3)
    with transaction(db_url) as s:
        assert check(s, s.get(EmailCampaign, cid)) == ("hard-bounce rate above 5.0%: 3 of its first 40 deliveries "
                                                       "(more than 5.0% of 45 already)")


def test_the_guard_pauses_holds_and_says_why_once(db_url, now, caplog):
    cid = _sending_campaign(db_url, now, n_sent=300, complaints=4)
    healthy = _sending_campaign(db_url, now, n_sent=300)
    paused = guard_reputation.fn(now)
    assert paused == [{"campaign_id": cid, "held": 5, "reason": "complaint rate above 0.3%: 4 of its first 300 "
                                                                "deliveries (more than 0.3% of 305 already)"}]
    with transaction(db_url) as s:
        assert s.get(EmailCampaign, cid).status == "paused" and s.get(EmailCampaign, healthy).status == "sending"
        assert s.scalar(select(EmailMessage.status).where(EmailMessage.campaign_id == cid,
                                                          EmailMessage.status == "held").limit(1)) == "held"
        assert campaigns.transitions(s, cid)[-1].actor == "reputation-guard"
    assert "paused by the reputation guard: complaint rate above 0.3%" in caplog.text
    assert guard_reputation.fn(now) == []  # paused already
    campaign_control.resume(cid, actor="ops", now=now, override_guard=True)
    assert guard_reputation.fn(now) == []  # the operator looked and chose to send
