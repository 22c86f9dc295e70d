"""Planning digests, summaries and reports: one email per recipient per period, whatever the reruns."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from prefect import task
from sqlalchemy.orm import Session

from db import digests, outbox, queries
from db.events import Category, Priority
from tasks.email_types import SAMPLE_NOW, EmailType, email_type
from tasks.plan import DB_RETRIES, run_planner
from tasks.recipients import for_student, preference_skip
from tutormax.links import Links
from tutormax.periods import Period, month_before, previous_month, previous_week
from tutormax.settings import get_settings

SESSIONS_LISTED = 10


def _dates(meta: dict[str, Any]) -> dict[str, Any]:
    return {"period_start": date.fromisoformat(meta["period_start"]), "period_end": date.fromisoformat(meta["period_end"])}


def _session_rows(meta: dict[str, Any]) -> list[dict[str, Any]]:
    return [{**row, "date": date.fromisoformat(row["date"])} for row in meta.get("sessions", [])]


def _weekly_context(meta: dict[str, Any], links: Links, message_id: int, now: datetime) -> dict[str, Any]:
    keys = ("audience", "sessions_completed", "no_shows", "reschedules", "average_rating", "feedback_count", "highlights")
    return {**{k: meta[k] for k in keys}, **_dates(meta), "sessions": _session_rows(meta)}


def _parent_context(meta: dict[str, Any], links: Links, message_id: int, now: datetime) -> dict[str, Any]:
    keys = ("student_name", "kind", "sessions_completed", "no_shows", "average_rating")
    return {**{k: meta[k] for k in keys}, **_dates(meta), "sessions": _session_rows(meta)}


def _manager_context(meta: dict[str, Any], links: Links, message_id: int, now: datetime) -> dict[str, Any]:
    escalations = [{**e, "submitted_at": datetime.fromisoformat(e["submitted_at"])} for e in meta["escalations"]]
    return {"manager_name": meta["manager_name"], **_dates(meta), "tutors": meta["tutors"], "escalations": escalations}


def _monthly_context(meta: dict[str, Any], links: Links, message_id: int, now: datetime) -> dict[str, Any]:
    keys = ("student_name", "is_parent", "month_label", "sessions_completed", "total_minutes", "tutors", "subjects")
    return {k: meta[k] for k in keys}


def _performance_context(meta: dict[str, Any], links: Links, message_id: int, now: datetime) -> dict[str, Any]:
    return {"tutor_name": meta["tutor_name"], "month_label": meta["month_label"], "metrics": meta["metrics"]}


_SAMPLE_SESSIONS = [{"date": "2026-11-17", "counterpart": "Ms. Rivera", "subject": "Algebra", "minutes": 60},
                    {"date": "2026-11-19", "counterpart": "Ms. Rivera", "subject": "Geometry", "minutes": 45}]
_SAMPLE_WEEK = {"period_start": "2026-11-16", "period_end": "2026-11-22", "period_label": "week of November 16"}

WEEKLY = email_type(
    "weekly_digest", category=Category.WEEKLY_DIGESTS, priority=Priority.LOW, context=_weekly_context,
    sample=("Ana Rivera", {"tutor_name": "Ana Rivera", "audience": "tutor", **_SAMPLE_WEEK, "sessions_completed": 2,
                           "no_shows": 1, "reschedules": 1, "average_rating": 4.5, "feedback_count": 2,
                           "highlights": ["Clear and patient!"], "sessions": _SAMPLE_SESSIONS, "total_minutes": 105}))
# a child's weekly digest, to the consenting parent
PARENT_NOTIFICATION = email_type(
    "parent_notification", category=Category.WEEKLY_DIGESTS, priority=Priority.LOW, context=_parent_context,
    sample=("Pat O'Brien", {"student_name": "Mia", "is_parent": True, "kind": "weekly_digest", **_SAMPLE_WEEK,
                            "sessions_completed": 2, "no_shows": 0, "reschedules": 0, "average_rating": None,
                            "feedback_count": 0, "highlights": [], "sessions": _SAMPLE_SESSIONS,
                            "audience": "student"}))
MANAGER = email_type(
    "manager_digest", category=Category.WEEKLY_DIGESTS, priority=Priority.LOW, context=_manager_context,
    sample=("Sam Lee", {"manager_name": "Sam Lee", **_SAMPLE_WEEK,
                        "tutors": [{"name": "Ana Rivera", "sessions_completed": 12, "average_rating": 4.8,
                                    "reschedules": 0, "no_shows": 0, "flags": []},
                                   {"name": "Ben Cho", "sessions_completed": 7, "average_rating": 3.1,
                                    "reschedules": 4, "no_shows": 2,
                                    "flags": ["4 reschedules", "2 no-shows", "average rating 3.1"]}],
                        "escalations": [{"tutor_name": "Ben Cho", "student_name": "Leo", "rating": 2,
                                         "comment": "Student seemed lost.",
                                         "submitted_at": (SAMPLE_NOW - timedelta(days=2)).isoformat()}]}))
MONTHLY = email_type(
    "monthly_summary", category=Category.MONTHLY_SUMMARIES, priority=Priority.LOW, context=_monthly_context,
    sample=("Mia O'Brien", {"student_name": "Mia O'Brien", "is_parent": False, "month_label": "October 2026",
                            "period_start": "2026-10-01", "period_end": "2026-10-31", "sessions_completed": 8,
                            "total_minutes": 420, "tutors": ["Ana Rivera"], "subjects": ["Algebra", "Geometry"]}))
PERFORMANCE = email_type(
    "performance_report", category=Category.PERFORMANCE_REPORTS, priority=Priority.LOW, context=_performance_context,
    sample=("Ana Rivera", {"tutor_name": "Ana Rivera", "month_label": "October 2026", "period_start": "2026-10-01",
                           "period_end": "2026-10-31",
                           "metrics": [{"label": "Sessions completed", "value": "42", "previous": "38", "trend": "up",
                                        "good": True},
                                       {"label": "Average rating", "value": "4.70", "previous": "—", "trend": "new",
                                        "good": True},
                                       {"label": "No-show rate", "value": "5%", "previous": "3%", "trend": "up",
                                        "good": False}]}))


def _sessions(entries: list[dict[str, Any]], tz) -> list[dict[str, Any]]:
    return [{"date": e["start"].astimezone(tz).date().isoformat(), "counterpart": e["counterpart"],
             "subject": e["subject"], "minutes": e["minutes"]} for e in entries[:SESSIONS_LISTED]]


def _covers(period: Period) -> str:
    return f"the {period.label}, {period.first_day:%a %Y-%m-%d} to {period.last_day:%a %Y-%m-%d}"


def _period_meta(period: Period) -> dict[str, str]:
    return {"period_start": period.first_day.isoformat(), "period_end": period.last_day.isoformat(),
            "period_label": period.label}


def _tutor_message(email: EmailType, row, period: Period, prefs, meta: dict[str, Any]):
    return outbox.PlannedMessage(
        workflow_type=email.name, entity_type="tutor", entity_id=row.id, step=period.key, template_type=email.name,
        category=email.category, recipient_type="tutor", recipient_email=row.email, recipient_name=row.name,
        recipient_id=row.id, priority=email.rank, skip_reason=preference_skip(prefs.get(row.email.lower()), email.category),
        metadata={"tutor_name": row.name, **_period_meta(period), **meta})


def _student_message(email: EmailType, row, period: Period, prefs, today, meta: dict[str, Any],
                     to_parent: EmailType | None = None):
    """COPPA: about a child under 13, the consenting parent gets the parent's type of email, or nobody does."""
    recipient = for_student(student_name=row.name, student_email=row.email, birth_date=row.birth_date,
                            parent_name=row.parent_name, parent_email=row.parent_email,
                            parent_consent=row.parent_consent, today=today)
    skip = recipient.skip_reason or preference_skip(prefs.get((recipient.email or "").lower()), email.category)
    return outbox.PlannedMessage(
        workflow_type=email.name, entity_type="student", entity_id=row.id, step=period.key,
        template_type=(to_parent or email).name if recipient.is_parent else email.name, category=email.category,
        recipient_type=recipient.type, recipient_email=recipient.email, recipient_name=recipient.name,
        recipient_id=row.id, priority=email.rank, skip_reason=skip,
        metadata={"student_name": row.name, "is_parent": recipient.is_parent, **_period_meta(period), **meta})


def _tutor_period(session: Session, ids, period: Period, tz) -> dict[int, dict[str, Any]]:
    """Each tutor's figures for a week or a month: one GROUP BY per figure for the whole page of tutors."""
    stats = digests.session_stats(session, "tutor_id", ids, period.start, period.end)
    ratings = digests.rating_stats(session, "tutor_id", ids, period.start, period.end)
    reschedules = digests.reschedule_counts(session, ids, period.start, period.end)
    return {i: {"sessions_completed": stats[i]["sessions_completed"], "no_shows": stats[i]["no_shows"],
                "total_minutes": stats[i]["total_minutes"], "reschedules": reschedules[i],
                "no_show_rate": digests.no_show_rate(stats[i]), "sessions": _sessions(stats[i]["sessions"], tz),
                **ratings[i]} for i in ids}


@task(name="plan-weekly-digests", **DB_RETRIES)
def plan_weekly_digests(now: datetime, dry_run: bool = False) -> dict[str, Any]:
    """Last week for every active tutor, and for every active student (or a child's parent)."""
    tz = get_settings().tz
    period = previous_week(now, tz)
    today = now.astimezone(tz).date()

    def tutors(session: Session, after_id: int):
        rows = digests.active_tutors(session, period.start, period.end, WEEKLY.name, period.key, after_id)
        if not rows:
            return [], None
        week = _tutor_period(session, [r.id for r in rows], period, tz)
        prefs = queries.preferences_for(session, [r.email for r in rows])
        return [_tutor_message(WEEKLY, r, period, prefs,
                               {"audience": "tutor", **week[r.id]}) for r in rows], rows[-1].id

    def students(session: Session, after_id: int):
        rows = digests.active_students(session, period.start, period.end, WEEKLY.name, period.key, after_id)
        if not rows:
            return [], None
        ids = [r.id for r in rows]
        stats = digests.session_stats(session, "student_id", ids, period.start, period.end)
        ratings = digests.rating_stats(session, "student_id", ids, period.start, period.end)
        prefs = queries.preferences_for(session, [r.email for r in rows] + [r.parent_email for r in rows])
        planned = [_student_message(
            WEEKLY, r, period, prefs, today,
            {"audience": "student", "kind": "weekly_digest", "sessions_completed": stats[r.id]["sessions_completed"],
             "no_shows": stats[r.id]["no_shows"], "reschedules": 0,
             "average_rating": ratings[r.id]["average_rating"], "feedback_count": ratings[r.id]["feedback_count"],
             "highlights": [], "sessions": _sessions(stats[r.id]["sessions"], tz)},
            to_parent=PARENT_NOTIFICATION) for r in rows]
        return planned, rows[-1].id

    counts = run_planner("weekly digests (tutors)", tutors, now, dry_run)
    for key, value in run_planner("weekly digests (students)", students, now, dry_run).items():
        counts[key] += value
    return {**counts, "covers": _covers(period)}


def _flags(week: dict[str, Any]) -> list[str]:
    flags = []
    if week["reschedules"] >= 3:
        flags.append(f"{week['reschedules']} reschedules")
    if week["no_shows"] >= 2:
        flags.append(f"{week['no_shows']} no-shows")
    if week["average_rating"] is not None and week["average_rating"] < 3.5:
        flags.append(f"average rating {week['average_rating']:.1f}")
    return flags


@task(name="plan-manager-digests", **DB_RETRIES)
def plan_manager_digests(now: datetime, dry_run: bool = False) -> dict[str, Any]:
    """Each manager's tutors last week: activity, flags and escalated concerns."""
    tz = get_settings().tz
    period = previous_week(now, tz)

    def page(session: Session, after_id: int):
        rows = digests.managers_page(session, MANAGER.name, period.key, after_id)
        if not rows:
            return [], None
        teams = digests.tutor_ids_of(session, [r.id for r in rows])
        all_tutors = [t.id for team in teams.values() for t in team]
        week = _tutor_period(session, all_tutors, period, tz)
        concerns = digests.concerns_for(session, all_tutors, period.start, period.end)
        prefs = queries.preferences_for(session, [r.email for r in rows])
        planned = []
        for manager in rows:
            team = teams.get(manager.id, [])
            tutors = [{"name": t.name, "sessions_completed": week[t.id]["sessions_completed"],
                       "average_rating": week[t.id]["average_rating"], "reschedules": week[t.id]["reschedules"],
                       "no_shows": week[t.id]["no_shows"], "flags": _flags(week[t.id])} for t in team]
            team_ids = {t.id for t in team}
            escalations = [{"tutor_name": c.tutor_name, "student_name": c.student_name or "", "rating": c.rating,
                            "comment": c.comment, "submitted_at": c.submitted_at.isoformat()}
                           for c in concerns if c.tutor_id in team_ids]
            planned.append(outbox.PlannedMessage(
                workflow_type=MANAGER.name, entity_type="manager", entity_id=manager.id, step=period.key,
                template_type=MANAGER.name, category=MANAGER.category, recipient_type="manager",
                recipient_email=manager.email, recipient_name=manager.name, recipient_id=manager.id,
                priority=MANAGER.rank, skip_reason=preference_skip(prefs.get(manager.email.lower()), MANAGER.category),
                metadata={"manager_name": manager.name, **_period_meta(period), "tutors": tutors,
                          "escalations": escalations}))
        return planned, rows[-1].id

    return {**run_planner("manager digests", page, now, dry_run), "covers": _covers(period)}


@task(name="plan-monthly-summaries", **DB_RETRIES)
def plan_monthly_summaries(now: datetime, dry_run: bool = False) -> dict[str, Any]:
    """Each active student's last month (to the parent for a child under 13)."""
    tz = get_settings().tz
    period = previous_month(now, tz)
    today = now.astimezone(tz).date()

    def page(session: Session, after_id: int):
        rows = digests.active_students(session, period.start, period.end, MONTHLY.name, period.key, after_id)
        if not rows:
            return [], None
        stats = digests.session_stats(session, "student_id", [r.id for r in rows], period.start, period.end)
        prefs = queries.preferences_for(session, [r.email for r in rows] + [r.parent_email for r in rows])
        return [_student_message(
            MONTHLY, r, period, prefs, today,
            {"month_label": period.label, "sessions_completed": stats[r.id]["sessions_completed"],
             "total_minutes": stats[r.id]["total_minutes"], "tutors": sorted(stats[r.id]["counterparts"]),
             "subjects": sorted(stats[r.id]["subjects"])}) for r in rows], rows[-1].id

    return {**run_planner("monthly summaries", page, now, dry_run), "covers": _covers(period)}


def _trend(current: float | None, previous: float | None, higher_is_better: bool) -> tuple[str, bool]:
    if previous is None or current is None:
        return "new", True
    if abs(current - previous) < 1e-9:
        return "flat", True
    up = current > previous
    return ("up" if up else "down"), up == higher_is_better


def performance_metrics(this: dict[str, Any], last: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's rows: value, previous value and whether the change is good news."""
    def fmt(value, kind):
        if value is None:
            return "—"
        return {"int": f"{value:,.0f}", "hours": f"{value / 60:.1f} h", "rating": f"{value:.2f}",
                "pct": f"{value * 100:.0f}%"}[kind]

    rows = []
    for label, key, kind, better_up in (("Sessions completed", "sessions_completed", "int", True),
                                        ("Hours taught", "total_minutes", "hours", True),
                                        ("Average rating", "average_rating", "rating", True),
                                        ("Feedback received", "feedback_count", "int", True),
                                        ("No-show rate", "no_show_rate", "pct", False),
                                        ("Reschedules", "reschedules", "int", False)):
        trend, good = _trend(this.get(key), last.get(key), better_up)
        rows.append({"label": label, "value": fmt(this.get(key), kind), "previous": fmt(last.get(key), kind),
                     "trend": trend, "good": good})
    return rows


@task(name="plan-performance-reports", **DB_RETRIES)
def plan_performance_reports(now: datetime, dry_run: bool = False) -> dict[str, Any]:
    """Each active tutor's last month, with the trend against the month before."""
    tz = get_settings().tz
    period = previous_month(now, tz)
    before = month_before(period, tz)

    def page(session: Session, after_id: int):
        rows = digests.active_tutors(session, period.start, period.end, PERFORMANCE.name, period.key, after_id)
        if not rows:
            return [], None
        ids = [r.id for r in rows]
        this, last = _tutor_period(session, ids, period, tz), _tutor_period(session, ids, before, tz)
        prefs = queries.preferences_for(session, [r.email for r in rows])
        return [_tutor_message(PERFORMANCE, r, period, prefs,
                               {"month_label": period.label, "metrics": performance_metrics(this[r.id], last[r.id])})
                for r in rows], rows[-1].id

    return {**run_planner("performance reports", page, now, dry_run), "covers": _covers(period)}
