"""Analytics: every metric against a hand-computed fixture, zero denominators, files and artifacts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from sqlalchemy import update

from db import outbox, tracking
from db.models import EmailCampaign, EmailMessage
from db.session import transaction
from tasks.analytics import build_report, write_report

NOW = datetime(2026, 11, 20, 15, tzinfo=timezone.utc)
START, END = NOW - timedelta(days=7), NOW + timedelta(days=1)


def _message(url, key, template_type, status, email=None, **values) -> int:
    planned = outbox.PlannedMessage(
        workflow_type=template_type, entity_type="x", entity_id=key, step="s", template_type=template_type,
        category="feedback_reminders", recipient_type="student", recipient_email=email or f"r{key}@example.com",
        recipient_name="R", recipient_id=key)
    with transaction(url) as s:
        outbox.plan(s, [planned], NOW - timedelta(hours=5))
    with transaction(url) as s:
        mid = s.query(EmailMessage.message_id).filter(EmailMessage.idempotency_key == planned.idempotency_key).scalar()
        s.execute(update(EmailMessage).where(EmailMessage.message_id == mid).values(
            status=status, sent_at=NOW - timedelta(hours=4) if status == "sent" else None, **values))
    return mid


def _event(url, mid, kind, machine=False, after=timedelta(hours=1), device="desktop"):
    with transaction(url) as s:
        tracking.record_event(s, {"message_id": mid, "event_type": kind, "event_time": NOW - timedelta(hours=4) + after,
                                  "is_machine": machine, "device": device, "browser": "Chrome 120", "os": "Windows 10",
                                  "created_at": NOW, "event_data": {}})


@pytest.fixture
def fixture_data(db_url):
    m1 = _message(db_url, 1, "feedback_reminder", "sent")
    _event(db_url, m1, "opened", after=timedelta(minutes=30), device="mobile")
    _event(db_url, m1, "clicked", after=timedelta(minutes=31))
    m2 = _message(db_url, 2, "feedback_reminder", "sent")
    _event(db_url, m2, "opened", machine=True, after=timedelta(seconds=1))   # Apple MPP
    _message(db_url, 3, "feedback_reminder", "failed", bounced_at=NOW, bounce_type="hard")
    m4 = _message(db_url, 4, "feedback_reminder", "sent")
    _event(db_url, m4, "unsubscribed")
    alert = _message(db_url, 5, "rescheduling_alert", "sent")
    _event(db_url, alert, "opened", after=timedelta(hours=30))
    _message(db_url, 6, "weekly_digest", "skipped", skip_reason="unsubscribed_all")
    _message(db_url, 7, "monthly_summary", "failed", bounce_type="blocked", failure_reason="550 5.7.1 blocked")
    return db_url


def test_every_metric_by_hand(fixture_data):
    with transaction(fixture_data) as s:
        report = build_report(s, START, END)
    o = report.overall
    # 4 sent + 1 bounced + 1 blocked = 6 attempted; the skipped digest is no attempt
    assert (o["messages"], o["attempted"], o["delivered"], o["bounced"], o["blocked"], o["skipped"]) == (7, 6, 4, 1, 1, 1)
    assert o["delivery_rate"] == pytest.approx(4 / 6) and o["bounce_rate"] == pytest.approx(1 / 6)
    assert o["block_rate"] == pytest.approx(1 / 6)
    assert o["open_rate_human"] == pytest.approx(2 / 4)   # m1 and the alert; the MPP open is a machine's
    assert o["open_rate_all"] == pytest.approx(3 / 4)
    assert o["click_through_rate"] == pytest.approx(1 / 4)
    assert o["click_to_open_rate"] == pytest.approx(1 / 2)
    assert o["unsubscribe_rate"] == pytest.approx(1 / 4)
    assert o["complaint_rate"] == 0.0
    by_type = report.by_template.set_index("template_type")
    assert by_type.loc["feedback_reminder", "open_rate_human"] == pytest.approx(1 / 3)
    assert pd.isna(by_type.loc["weekly_digest", "delivery_rate"])  # zero denominator: no rate, no crash
    tto = dict(zip(report.time_to_open["bucket"].astype(str), report.time_to_open["messages"]))
    assert tto == {"under 1 hour": 2, "1-3 days": 1}
    devices = report.clients.groupby("device")["opens"].sum().to_dict()
    assert devices == {"mobile": 1, "desktop": 1}
    success = report.success.set_index("metric")
    assert success.loc["Email delivery rate", "status"] == "fail"              # 80% < 95%
    assert success.loc["Open rate, critical alerts (human)", "status"] == "pass"  # 1 of 1 alert opened by a person
    assert success.loc["Feedback completion after reminders", "value"] == 0.0   # 3 reminded sessions, none rated
    assert success.loc["Tutor engagement with check-ins", "status"] == "no data"
    assert success.loc["Template rendering time (p50)", "status"] == "pass"


def test_empty_range_gives_no_data_not_errors(db_url):
    with transaction(db_url) as s:
        report = build_report(s, START, END)
    assert report.overall == dict.fromkeys(
        ("delivery_rate", "bounce_rate", "block_rate", "open_rate_human", "open_rate_all", "click_through_rate",
         "click_to_open_rate", "unsubscribe_rate", "complaint_rate"))
    # only the rendering time is measured without messages
    assert dict(zip(report.success["metric"], report.success["status"])) == {
        "Email delivery rate": "no data", "Open rate, critical alerts (human)": "no data",
        "Click-through rate (human)": "no data", "Feedback completion after reminders": "no data",
        "Tutor engagement with check-ins": "no data", "Template rendering time (p50)": "pass"}


def test_report_files(fixture_data, tmp_path):
    with transaction(fixture_data) as s:
        report = build_report(s, START, END)
    path = write_report(report, tmp_path / "r")
    text = path.read_text()
    assert text.count("data:image/png;base64,") == 3 and "Success metrics" in text
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [
        "ab_tests.csv", "by_campaign.csv", "by_day.csv", "by_template.csv", "by_version_variant.csv", "clients.csv",
        "report.html", "success_metrics.csv", "time_to_open.csv"]
    assert pd.read_csv(tmp_path / "r" / "by_template.csv")["delivered"].sum() == 4


def test_ab_campaign_verdict_in_the_report(db_url):
    with transaction(db_url) as s:
        s.add(EmailCampaign(campaign_id="camp_ab", campaign_name="Reminder subject test", campaign_type="automation_ab",
                            template_type="feedback_reminder", ab_test_enabled=True, status="active"))
    for i in range(150):
        for variant, clicks in (("a", 40), ("b", 70)):
            mid = _message(db_url, 1000 * (variant == "b") + i + 10, "feedback_reminder", "sent",
                           campaign_id="camp_ab", ab_variant=variant)
            if i < clicks:
                _event(db_url, mid, "clicked")
    with transaction(db_url) as s:
        report = build_report(s, START, END)
    (test,) = report.ab_tests
    assert test["variants"]["a"]["clicks"] == 40 and test["variants"]["b"]["clicks"] == 70
    assert test["result"]["winner"] == "b" and test["result"]["significant"]
