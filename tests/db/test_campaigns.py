"""Campaign counts are read from the messages: a test compares them with the messages themselves."""

from __future__ import annotations

import random
from datetime import timedelta

from sqlalchemy import select

from db import campaigns
from db.models import EmailCampaign, EmailMessage, EmailTrackingEvent
from db.session import transaction


def test_counts_equal_what_the_messages_say(db_url, now):
    rng = random.Random(7)
    with transaction(db_url) as s:
        s.add_all([EmailCampaign(campaign_id=cid, campaign_name=cid, campaign_type="announcement",
                                 template_type="announcement", status="sending", created_at=now - timedelta(days=1))
                   for cid in ("c1", "other")])
        s.flush()
        for i in range(300):
            status = rng.choice(["queued", "held", "sending", "sent", "sent", "sent", "deferred", "failed", "skipped"])
            bounced = status in ("sent", "failed") and rng.random() < 0.1
            message = EmailMessage(
                idempotency_key=f"k{i}", campaign_id="c1" if i % 5 else "other", recipient_email=f"r{i}@example.com",
                recipient_type="tutor", template_type="announcement", category="marketing_emails", status=status,
                skip_reason="suppressed" if status == "skipped" else None, metadata={},
                bounced_at=now if bounced else None, bounce_type="hard" if bounced else None,
                unsubscribed_at=now if status == "sent" and rng.random() < 0.05 else None)
            s.add(message)
            s.flush()
            if status == "sent":
                for _ in range(rng.choice([0, 0, 1, 2])):
                    s.add(EmailTrackingEvent(message_id=message.message_id, event_type=rng.choice(["opened", "clicked"]),
                                             is_machine=rng.random() < 0.3, event_time=now + timedelta(hours=1)))
                if rng.random() < 0.03:
                    s.add(EmailTrackingEvent(message_id=message.message_id, event_type="complained", event_time=now))
    with transaction(db_url) as s:
        counted = campaigns.counts(s, s.get(EmailCampaign, "c1"))
        messages = s.scalars(select(EmailMessage).where(EmailMessage.campaign_id == "c1")).all()
        events = s.execute(select(EmailTrackingEvent.message_id, EmailTrackingEvent.event_type,
                                  EmailTrackingEvent.is_machine)).all()
        by_status = [m.status for m in messages]
        human = {(mid, kind) for mid, kind, machine in events if not machine}
        ids = {m.message_id for m in messages}
        expected = {
            "recipients": len(messages),
            "planned": sum(st != "skipped" for st in by_status),
            "queued": sum(st in ("queued", "sending") for st in by_status),
            "held": by_status.count("held"), "sent": by_status.count("sent"), "deferred": by_status.count("deferred"),
            "failed": by_status.count("failed"), "skipped": by_status.count("skipped"),
            "bounced": sum(m.bounced_at is not None for m in messages),
            "delivered": sum(m.status == "sent" and m.bounced_at is None for m in messages),
            "opened": len({mid for mid, kind in human if mid in ids and kind != "complained"}),  # a click opens too
            "clicked": len({mid for mid, kind in human if mid in ids and kind == "clicked"}),
            "unsubscribed": sum(m.unsubscribed_at is not None for m in messages),
            "complained": len({mid for mid, kind, _ in events if kind == "complained" and mid in ids}),
        }
    assert counted == expected
    assert counted["sent"] > 50 and counted["opened"] > 10 and counted["complained"] >= 1  # the sample exercises each


def test_first_deliveries_are_the_first_attempted_in_send_order(db_url, now):
    with transaction(db_url) as s:
        s.add(EmailCampaign(campaign_id="c1", campaign_name="c1", campaign_type="announcement",
                            template_type="announcement", status="sending"))
        s.flush()
        for i, (status, hard) in enumerate([("skipped", False), ("sent", False), ("failed", True), ("queued", False),
                                            ("sent", False), ("failed", True), ("sent", False)]):
            s.add(EmailMessage(idempotency_key=f"k{i}", campaign_id="c1", recipient_type="tutor",
                               template_type="announcement", category="marketing_emails", status=status, metadata={},
                               bounced_at=now if hard else None, bounce_type="hard" if hard else None))
    with transaction(db_url) as s:
        assert campaigns.first_deliveries(s, "c1", 3) == campaigns.FirstDeliveries(3, 1, 0)
        assert campaigns.first_deliveries(s, "c1", 100) == campaigns.FirstDeliveries(5, 2, 0)
        assert campaigns.to_send(s, "c1", 100) == 6 and campaigns.to_send(s, "c1", 4) == 4
