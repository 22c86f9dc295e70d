"""Every automation on a generated platform under Prefect: it finds work once, and a rerun sends nothing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select

from db.demo_data import PlatformSize, generate_platform
from db.models import EmailMessage
from db.session import transaction
from flows.registry import load_all_flows
from tutormax.demo import demo_times

NOW = datetime(2026, 11, 27, 15, tzinfo=timezone.utc)
SMALL = PlatformSize(managers=2, tutors=12, students=120, sessions=1500, days=60)


def run_times(url: str) -> dict[str, datetime]:
    return {**demo_times(url, NOW), "checkin-escalations": NOW, "cleanup-old-tracking-events": NOW}


def test_every_automation_is_idempotent(prefect_harness, smtp_server, db_url):
    generate_platform(db_url, size=SMALL, now=NOW)
    first, second, flows = {}, {}, load_all_flows()
    for name, at in run_times(db_url).items():
        first[name] = flows[name](now=at)
        second[name] = flows[name](now=at + timedelta(minutes=5))
    for name in ("feedback-invitations", "feedback-reminders", "first-session-checkins", "rescheduling-alerts",
                 "weekly-digests", "manager-digests", "monthly-summaries", "performance-reports"):
        assert first[name]["sent"] > 0, name
        assert (second[name]["planned"], second[name]["sent"]) == (0, 0), name
    with transaction(db_url) as s:
        messages = s.scalar(select(func.count()).select_from(EmailMessage).where(EmailMessage.status == "sent"))
    assert messages == len(smtp_server.received) == sum(r["sent"] for r in first.values() if "sent" in r)
    assert second["cleanup-old-tracking-events"]["deleted"] == 0
