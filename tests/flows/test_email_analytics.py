"""Email analytics under Prefect: the last 30 local days by default or the dates asked for, into artifacts and files."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

import flows.email_analytics as module
from db import tracking
from db.models import EmailMessage
from db.session import transaction
from flows.email_analytics import email_analytics

RENDERING = "Template rendering time (p50)"  # measured in the run: its value changes from run to run
SUCCESS = {"Email delivery rate": ("66.7%", "> 95%", "fail"),
           "Open rate, critical alerts (human)": ("no data", "> 70%", "no data"),
           "Click-through rate (human)": ("50.0%", "> 40%", "pass"),
           "Feedback completion after reminders": ("0.0%", "> 60%", "fail"),
           "Tutor engagement with check-ins": ("no data", "> 40%", "no data"),
           "Spam complaint rate": ("0.00%", "< 0.1% (never 0.3%)", "pass")}


def _success(result: dict) -> dict:
    """The success metrics as (value, target, status), the rendering time's status apart."""
    metrics = result.pop("success")
    assert (metrics[RENDERING]["target"], metrics[RENDERING]["status"]) == ("< 50 ms", "pass")
    return {name: (m["value"], m["target"], m["status"]) for name, m in metrics.items() if name != RENDERING}


@pytest.fixture
def messages(db_url, enqueue, now, tmp_path, monkeypatch):
    """Made today (Fri 2026-11-20): one opened and clicked, one sent and left alone, one bounced; and one made and
    sent 30 days ago. Reports go under tmp_path/reports, which it returns."""
    monkeypatch.setattr(module, "PROJECT_ROOT", tmp_path)
    opened, quiet, bounced, old = (enqueue(f"{name}@example.com") for name in ("opened", "quiet", "bounced", "old"))
    sent = update(EmailMessage).values(status="sent", sent_at=now - timedelta(hours=4))
    with transaction(db_url) as s:
        s.execute(sent.where(EmailMessage.message_id.in_([opened, quiet])))
        s.execute(update(EmailMessage).where(EmailMessage.message_id == bounced)
                  .values(status="failed", bounce_type="hard", bounced_at=now))
        s.execute(update(EmailMessage).where(EmailMessage.message_id == old).values(
            status="sent", created_at=now - timedelta(days=30), sent_at=now - timedelta(days=30, hours=-1)))
        for kind in ("opened", "clicked"):
            tracking.record_event(s, {"message_id": opened, "event_type": kind, "event_time": now - timedelta(hours=3),
                                      "is_machine": False, "device": "desktop", "browser": "Chrome 120",
                                      "os": "Windows 10", "created_at": now - timedelta(hours=3), "event_data": {}})
    return tmp_path / "reports"


def test_the_last_30_days_by_default(run_flow, messages, now):
    run = run_flow(email_analytics, now=now + timedelta(days=1))
    report = Path(run.result.pop("report"))
    assert report.is_file() and report.parents[1] == messages
    # today's three messages; the one made 30 days ago (Wed 2026-10-21) is a day before the window
    assert _success(run.result) == SUCCESS
    assert run.result == {"messages": 3, "delivery_rate": 2 / 3, "open_rate_human": 0.5, "open_rate_all": 0.5,
                          "click_through_rate": 0.5, "click_to_open_rate": 1.0, "ab_tests": {}}
    assert run.name == "email-analytics 2026-11-21 10:00 EST"
    assert report.parent.name == "email-analytics_2026-10-22_2026-11-20"  # the last day, not the day after
    assert run.heading == (
        "# email-analytics, Sat 2026-11-21 10:00 EST\n\n"
        "Covers messages created Thu 2026-10-22 to Fri 2026-11-20 (America/New_York days).\n\n"
        "Parameters: `start=None`, `end=None`, `days=30`, `now=2026-11-21 10:00 EST`.\n\n"
        "3 messages. Delivery 66.7%, human opens 50.0% (all 50.0%), clicks 50.0%, click-to-open 100.0%, "
        "unsubscribes 0.0%, bounces 33.3%.")


def test_the_dates_asked_for(run_flow, messages, now):
    run = run_flow(email_analytics, start=date(2026, 10, 21), end=date(2026, 10, 21), now=now)
    run.result.pop("report")
    assert _success(run.result) == {**SUCCESS, "Email delivery rate": ("100.0%", "> 95%", "pass"),
                                    "Click-through rate (human)": ("0.0%", "> 40%", "fail"),
                                    "Feedback completion after reminders": ("0.0%", "> 60%", "fail")}
    assert run.result == {"messages": 1, "delivery_rate": 1.0, "open_rate_human": 0.0, "open_rate_all": 0.0,
                          "click_through_rate": 0.0, "click_to_open_rate": None, "ab_tests": {}}
    assert run.name == "email-analytics 2026-11-20 10:00 EST"


def test_a_start_after_the_end_is_refused(run_flow, messages, now):
    with pytest.raises(ValueError, match="^start 2026-11-20 is after end 2026-11-19$"):
        run_flow(email_analytics, start=date(2026, 11, 20), end=date(2026, 11, 19), now=now)
