"""Digests, summaries and reports: periods across DST, one email per recipient per period, COPPA."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from db.models import EmailMessage
from db.session import transaction
from tasks.plan_digests import (
    performance_metrics,
    plan_manager_digests,
    plan_monthly_summaries,
    plan_performance_reports,
    plan_weekly_digests,
)

NY = ZoneInfo("America/New_York")
MONDAY = datetime(2026, 11, 2, 9, tzinfo=NY)  # the week before it ends with the autumn DST change


def _session_ending(platform, tutor, student, local_end: datetime, now, **kw) -> int:
    return platform.session(tutor, student, ended_ago=now - local_end, **kw)


def _messages(url):
    with transaction(url) as s:
        return list(s.scalars(select(EmailMessage).order_by(EmailMessage.message_id)))


def test_weekly_digest_period_across_dst(platform, db_url, now):
    tutor = platform.tutor()
    inside = platform.student(name="Inside")
    outside = platform.student(name="Outside")
    # the session starts an hour before it ends; starts count for the period
    _session_ending(platform, tutor, inside, datetime(2026, 11, 2, 0, 29, tzinfo=NY), now)   # starts Nov 1 23:29 EST
    _session_ending(platform, tutor, outside, datetime(2026, 11, 2, 1, 31, tzinfo=NY), now)  # starts Nov 2 00:31
    _session_ending(platform, tutor, outside, datetime(2026, 10, 26, 0, 59, tzinfo=NY), now)  # starts Oct 25 23:59
    plan_weekly_digests.fn(MONDAY)
    by_student = {m.message_metadata.get("student_name"): m for m in _messages(db_url) if m.recipient_type == "student"}
    assert set(by_student) == {"Inside"}
    digest = by_student["Inside"].message_metadata
    assert (digest["period_start"], digest["period_end"], digest["sessions_completed"]) == ("2026-10-26", "2026-11-01", 1)
    tutor_digest = next(m for m in _messages(db_url) if m.recipient_type == "tutor")
    assert tutor_digest.message_metadata["sessions_completed"] == 1
    assert tutor_digest.message_metadata["sessions"][0]["counterpart"] == "Inside"


def test_weekly_digest_once_per_recipient_per_week(platform, db_url, now):
    tutor = platform.tutor()
    student = platform.student()
    _session_ending(platform, tutor, student, datetime(2026, 10, 28, 17, tzinfo=NY), now)
    _session_ending(platform, tutor, student, datetime(2026, 10, 29, 17, tzinfo=NY), now, number=2)
    first = plan_weekly_digests.fn(MONDAY)
    again = plan_weekly_digests.fn(MONDAY + timedelta(hours=3))  # a rerun later the same week
    assert (first["queued"], again["queued"]) == (2, 0)
    assert Counter(m.recipient_type for m in _messages(db_url)) == {"tutor": 1, "student": 1}
    assert plan_weekly_digests.fn(MONDAY + timedelta(days=7))["queued"] == 0  # no sessions that week


def test_a_childs_weekly_report_goes_to_the_parent_with_the_parent_template(platform, db_url, now):
    tutor = platform.tutor()
    child = platform.student(age=10, parent_email="parent@example.org", parent_consent=True, email="kid@example.com")
    no_consent = platform.student(age=10, parent_email="other@example.org", parent_consent=False)
    for student in (child, no_consent):
        _session_ending(platform, tutor, student, datetime(2026, 10, 28, 17, tzinfo=NY), now)
    plan_weekly_digests.fn(MONDAY)
    about_children = [m for m in _messages(db_url) if m.recipient_type != "tutor"]
    sent = {m.recipient_id: m for m in about_children}
    assert (sent[child].template_type, sent[child].recipient_email, sent[child].status) == \
        ("parent_notification", "parent@example.org", "queued")
    assert (sent[no_consent].status, sent[no_consent].skip_reason) == ("skipped", "under_13_no_parent_consent")
    assert "kid@example.com" not in {m.recipient_email for m in _messages(db_url)}


def test_manager_digest_lists_tutors_flags_and_escalations(platform, db_url, now):
    tutor = platform.tutor("Flaky Fred")
    student = platform.student()
    session_id = _session_ending(platform, tutor, student, datetime(2026, 10, 28, 17, tzinfo=NY), now)
    for day in (27, 28, 29):
        platform.reschedule(tutor, session_id, datetime(2026, 10, day, 12, tzinfo=NY))
    assert plan_manager_digests.fn(MONDAY)["queued"] == 1
    assert plan_manager_digests.fn(MONDAY)["queued"] == 0
    (digest,) = [m for m in _messages(db_url) if m.template_type == "manager_digest"]
    (row,) = digest.message_metadata["tutors"]
    assert (row["name"], row["reschedules"], row["flags"]) == ("Flaky Fred", 3, ["3 reschedules"])


def test_monthly_summary_and_performance_report(platform, db_url, now):
    tutor = platform.tutor()
    student = platform.student()
    _session_ending(platform, tutor, student, datetime(2026, 10, 14, 17, tzinfo=NY), now)
    _session_ending(platform, tutor, student, datetime(2026, 9, 14, 17, tzinfo=NY), now, number=2)
    _session_ending(platform, tutor, student, datetime(2026, 9, 15, 17, tzinfo=NY), now, number=3)
    first_of_month = datetime(2026, 11, 1, 9, tzinfo=NY)
    assert plan_monthly_summaries.fn(first_of_month)["queued"] == 1
    assert plan_performance_reports.fn(first_of_month)["queued"] == 1
    assert plan_monthly_summaries.fn(first_of_month)["queued"] == plan_performance_reports.fn(first_of_month)["queued"] == 0
    summary = next(m for m in _messages(db_url) if m.template_type == "monthly_summary").message_metadata
    assert (summary["month_label"], summary["sessions_completed"], summary["total_minutes"]) == ("October 2026", 1, 60)
    report = next(m for m in _messages(db_url) if m.template_type == "performance_report").message_metadata
    sessions = next(row for row in report["metrics"] if row["label"] == "Sessions completed")
    assert (sessions["value"], sessions["previous"], sessions["trend"], sessions["good"]) == ("1", "2", "down", False)


def test_performance_trend_knows_which_direction_is_good():
    rows = {r["label"]: r for r in performance_metrics(
        {"sessions_completed": 5, "total_minutes": 300, "average_rating": 4.5, "feedback_count": 3, "no_show_rate": 0.1,
         "reschedules": 1},
        {"sessions_completed": 5, "total_minutes": 240, "average_rating": None, "feedback_count": 4, "no_show_rate": 0.2,
         "reschedules": 3})}
    assert (rows["Sessions completed"]["trend"], rows["Hours taught"]["trend"]) == ("flat", "up")
    assert rows["Average rating"]["trend"] == "new" and rows["Average rating"]["previous"] == "—"
    assert (rows["No-show rate"]["trend"], rows["No-show rate"]["good"]) == ("down", True)
    assert (rows["Reschedules"]["trend"], rows["Reschedules"]["good"]) == ("down", True)
    assert (rows["Feedback received"]["trend"], rows["Feedback received"]["good"]) == ("down", False)
