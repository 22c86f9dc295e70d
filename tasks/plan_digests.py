"""Planning digests, summaries and reports: one email per recipient per period, whatever the reruns."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import task
from sqlalchemy.orm import Session

from db import digests, outbox, queries
from db.events import PRIORITY_RANK, Category, Priority
from tasks.plan import DB_RETRIES, run_planner
from tasks.recipients import for_student, preference_skip
from tutormax.periods import Period, month_before, previous_month, previous_week
from tutormax.settings import get_settings

WEEKLY, MANAGER, MONTHLY, PERFORMANCE = "weekly_digest", "manager_digest", "monthly_summary", "performance_report"
LOW = PRIORITY_RANK[Priority.LOW]
SESSIONS_LISTED = 10


def _sessions(entries: list[dict[str, Any]], tz) -> list[dict[str, Any]]:
    return [{"date": e["start"].astimezone(tz).date().isoformat(), "counterpart": e["counterpart"],
             "subject": e["subject"], "minutes": e["minutes"]} for e in entries[:SESSIONS_LISTED]]


def _period_meta(period: Period) -> dict[str, str]:
    return {"period_start": period.first_day.isoformat(), "period_end": period.last_day.isoformat(),
            "period_label": period.label}


def _tutor_message(workflow: str, template: str, category: Category, row, period: Period, prefs, meta: dict[str, Any]):
    return outbox.PlannedMessage(
        workflow_type=workflow, entity_type="tutor", entity_id=row.id, step=period.key, template_type=template,
        category=category, recipient_type="tutor", recipient_email=row.email, recipient_name=row.name,
        recipient_id=row.id, priority=LOW, skip_reason=preference_skip(prefs.get(row.email.lower()), category),
        metadata={"tutor_name": row.name, **_period_meta(period), **meta})


def _student_message(workflow: str, template: str, category: Category, row, period: Period, prefs, today,
                     meta: dict[str, Any], parent_template: str | None = None):
    """COPPA: about a child under 13, the consenting parent gets the parent template, or nobody does."""
    recipient = for_student(student_name=row.name, student_email=row.email, birth_date=row.birth_date,
                            parent_name=row.parent_name, parent_email=row.parent_email,
                            parent_consent=row.parent_consent, today=today)
    skip = recipient.skip_reason or preference_skip(prefs.get((recipient.email or "").lower()), category)
    return outbox.PlannedMessage(
        workflow_type=workflow, entity_type="student", entity_id=row.id, step=period.key,
        template_type=parent_template if recipient.is_parent and parent_template else template, category=category,
        recipient_type=recipient.type, recipient_email=recipient.email, recipient_name=recipient.name,
        recipient_id=row.id, priority=LOW, skip_reason=skip,
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
def plan_weekly_digests(now: datetime, dry_run: bool = False) -> dict[str, int]:
    """Last week for every active tutor, and for every active student (or a child's parent)."""
    tz = get_settings().tz
    period = previous_week(now, tz)
    today = now.astimezone(tz).date()

    def tutors(session: Session, after_id: int):
        rows = digests.active_tutors(session, period.start, period.end, WEEKLY, period.key, after_id)
        if not rows:
            return [], None
        week = _tutor_period(session, [r.id for r in rows], period, tz)
        prefs = queries.preferences_for(session, [r.email for r in rows])
        return [_tutor_message(WEEKLY, WEEKLY, Category.WEEKLY_DIGESTS, r, period, prefs,
                               {"audience": "tutor", **week[r.id]}) for r in rows], rows[-1].id

    def students(session: Session, after_id: int):
        rows = digests.active_students(session, period.start, period.end, WEEKLY, period.key, after_id)
        if not rows:
            return [], None
        ids = [r.id for r in rows]
        stats = digests.session_stats(session, "student_id", ids, period.start, period.end)
        ratings = digests.rating_stats(session, "student_id", ids, period.start, period.end)
        prefs = queries.preferences_for(session, [r.email for r in rows] + [r.parent_email for r in rows])
        planned = [_student_message(
            WEEKLY, WEEKLY, Category.WEEKLY_DIGESTS, r, period, prefs, today,
            {"audience": "student", "kind": "weekly_digest", "sessions_completed": stats[r.id]["sessions_completed"],
             "no_shows": stats[r.id]["no_shows"], "reschedules": 0,
             "average_rating": ratings[r.id]["average_rating"], "feedback_count": ratings[r.id]["feedback_count"],
             "highlights": [], "sessions": _sessions(stats[r.id]["sessions"], tz)},
            parent_template="parent_notification") for r in rows]
        return planned, rows[-1].id

    counts = run_planner("weekly digests (tutors)", tutors, now, dry_run)
    for key, value in run_planner("weekly digests (students)", students, now, dry_run).items():
        counts[key] += value
    return counts


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
def plan_manager_digests(now: datetime, dry_run: bool = False) -> dict[str, int]:
    """Each manager's tutors last week: activity, flags and escalated concerns."""
    tz = get_settings().tz
    period = previous_week(now, tz)

    def page(session: Session, after_id: int):
        rows = digests.managers_page(session, MANAGER, period.key, after_id)
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
                workflow_type=MANAGER, entity_type="manager", entity_id=manager.id, step=period.key,
                template_type=MANAGER, category=Category.WEEKLY_DIGESTS, recipient_type="manager",
                recipient_email=manager.email, recipient_name=manager.name, recipient_id=manager.id, priority=LOW,
                skip_reason=preference_skip(prefs.get(manager.email.lower()), Category.WEEKLY_DIGESTS),
                metadata={"manager_name": manager.name, **_period_meta(period), "tutors": tutors,
                          "escalations": escalations}))
        return planned, rows[-1].id

    return run_planner("manager digests", page, now, dry_run)


@task(name="plan-monthly-summaries", **DB_RETRIES)
def plan_monthly_summaries(now: datetime, dry_run: bool = False) -> dict[str, int]:
    """Each active student's last month (to the parent for a child under 13)."""
    tz = get_settings().tz
    period = previous_month(now, tz)
    today = now.astimezone(tz).date()

    def page(session: Session, after_id: int):
        rows = digests.active_students(session, period.start, period.end, MONTHLY, period.key, after_id)
        if not rows:
            return [], None
        stats = digests.session_stats(session, "student_id", [r.id for r in rows], period.start, period.end)
        prefs = queries.preferences_for(session, [r.email for r in rows] + [r.parent_email for r in rows])
        return [_student_message(
            MONTHLY, MONTHLY, Category.MONTHLY_SUMMARIES, r, period, prefs, today,
            {"month_label": period.label, "sessions_completed": stats[r.id]["sessions_completed"],
             "total_minutes": stats[r.id]["total_minutes"], "tutors": sorted(stats[r.id]["counterparts"]),
             "subjects": sorted(stats[r.id]["subjects"])}) for r in rows], rows[-1].id

    return run_planner("monthly summaries", page, now, dry_run)


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
def plan_performance_reports(now: datetime, dry_run: bool = False) -> dict[str, int]:
    """Each active tutor's last month, with the trend against the month before."""
    tz = get_settings().tz
    period = previous_month(now, tz)
    before = month_before(period, tz)

    def page(session: Session, after_id: int):
        rows = digests.active_tutors(session, period.start, period.end, PERFORMANCE, period.key, after_id)
        if not rows:
            return [], None
        ids = [r.id for r in rows]
        this, last = _tutor_period(session, ids, period, tz), _tutor_period(session, ids, before, tz)
        prefs = queries.preferences_for(session, [r.email for r in rows])
        return [_tutor_message(PERFORMANCE, PERFORMANCE, Category.PERFORMANCE_REPORTS, r, period, prefs,
                               {"month_label": period.label, "metrics": performance_metrics(this[r.id], last[r.id])})
                for r in rows], rows[-1].id

    return run_planner("performance reports", page, now, dry_run)
