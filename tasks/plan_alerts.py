"""Rescheduling alerts: supportive notes to tutors, interventions to managers, and whether they helped."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import task
from sqlalchemy.orm import Session

from db import interventions, outbox, queries
from db.events import Category, Priority
from db.session import transaction
from tasks.email_types import email_type
from tasks.plan import DB_RETRIES, run_planner
from tasks.recipients import preference_skip
from tutormax.links import Links
from tutormax.settings import get_settings


def _alert_context(meta: dict[str, Any], links: Links, message_id: int, now: datetime) -> dict[str, Any]:
    return {"tutor_name": meta["tutor_name"], "reschedules_7d": meta["reschedules_7d"],
            "reschedules_14d": meta["reschedules_14d"], "scheduling_help_url": f"{links.base}/help#scheduling",
            "support_url": f"{links.base}/help"}


def _intervention_context(meta: dict[str, Any], links: Links, message_id: int, now: datetime) -> dict[str, Any]:
    keys = ("manager_name", "tutor_name", "reason", "reschedules_7d", "reschedules_14d", "survey_rating",
            "survey_comment", "student_name")
    return {k: meta.get(k) for k in keys}


RESCHEDULING_ALERT = email_type(
    "rescheduling_alert", category=Category.SYSTEM_NOTIFICATIONS, priority=Priority.HIGH, critical=True,
    context=_alert_context,
    sample=("Ana Rivera", {"tutor_name": "Ana Rivera", "reschedules_7d": 3, "reschedules_14d": 4}))
# a tutor's manager, about a pattern of reschedules (here) or a concerning check-in answer (tasks.plan_checkins)
INTERVENTION_NOTIFICATION = email_type(
    "intervention_notification", category=Category.SYSTEM_NOTIFICATIONS, priority=Priority.HIGH, critical=True,
    context=_intervention_context,
    sample=("Sam Lee", {"reason": "reschedules", "manager_name": "Sam Lee", "tutor_name": "Ana Rivera",
                        "student_name": None, "survey_rating": None, "survey_comment": None, "reschedules_7d": 4,
                        "reschedules_14d": 7}))


def alert_messages(rows, prefs, day: str) -> list[outbox.PlannedMessage]:
    """A supportive alert per tutor; at >= 6 in 14 days, an intervention notice to the manager too."""
    planned = []
    for row in rows:
        counts = {"reschedules_7d": int(row.reschedules_7d), "reschedules_14d": int(row.reschedules_14d)}
        planned.append(outbox.PlannedMessage(
            workflow_type=interventions.ALERT_WORKFLOW, entity_type="tutor", entity_id=row.tutor_id, step=f"alert:{day}",
            template_type=RESCHEDULING_ALERT.name, category=RESCHEDULING_ALERT.category, recipient_type="tutor",
            recipient_email=row.tutor_email, recipient_name=row.tutor_name, recipient_id=row.tutor_id,
            priority=RESCHEDULING_ALERT.rank,
            skip_reason=preference_skip(prefs.get(row.tutor_email.lower()), RESCHEDULING_ALERT.category),
            metadata={"tutor_name": row.tutor_name, **counts}))
        if counts["reschedules_14d"] >= interventions.INTERVENTION_THRESHOLD_14D and row.manager_email:
            planned.append(outbox.PlannedMessage(
                workflow_type=interventions.INTERVENTION_WORKFLOW, entity_type="tutor", entity_id=row.tutor_id,
                step=f"intervention:{day}", template_type=INTERVENTION_NOTIFICATION.name,
                category=INTERVENTION_NOTIFICATION.category, recipient_type="manager", recipient_email=row.manager_email,
                recipient_name=row.manager_name, recipient_id=row.manager_id, priority=INTERVENTION_NOTIFICATION.rank,
                skip_reason=preference_skip(prefs.get(row.manager_email.lower()), INTERVENTION_NOTIFICATION.category),
                metadata={"reason": "reschedules", "manager_name": row.manager_name, "tutor_name": row.tutor_name,
                          "student_name": None, "survey_rating": None, "survey_comment": None, **counts}))
    return planned


@task(name="plan-rescheduling-alerts", **DB_RETRIES)
def plan_rescheduling_alerts(now: datetime, dry_run: bool = False) -> dict[str, Any]:
    """Write alerts (and manager interventions) for tutors over the thresholds and out of cooldown."""
    day = now.astimezone(get_settings().tz).date().isoformat()

    def page(session: Session, after_id: int):
        rows = interventions.due_rescheduling_alerts(session, now, after_id=after_id)
        if not rows:
            return [], None
        prefs = queries.preferences_for(session, [r.tutor_email for r in rows] + [r.manager_email for r in rows])
        return alert_messages(rows, prefs, day), rows[-1].tutor_id

    local = now.astimezone(get_settings().tz)
    return {**run_planner("rescheduling alerts", page, now, dry_run),
            "covers": f"tutors' reschedules in the 7 and 14 days to {local:%a %Y-%m-%d %H:%M %Z}"}


def _rate(reschedules: int, sessions: int) -> float | None:
    return round(reschedules / sessions, 4) if sessions else None


@task(name="measure-intervention-effect", **DB_RETRIES)
def measure_intervention_effect(now: datetime, dry_run: bool = False) -> list[dict[str, Any]]:
    """For alerts 14+ days old: the reschedule rate in the 14 days after against the 14 days before."""
    window = interventions.EFFECT_WINDOW
    measured = []
    with transaction() as session:
        for state in interventions.alerts_awaiting_effect(session, now):
            at = state.created_at
            before = interventions.reschedule_rate(session, state.entity_id, at - window, at)
            after = interventions.reschedule_rate(session, state.entity_id, at, at + window)
            effect = {"alert_at": at.isoformat(), "before_reschedules": before[0], "before_sessions": before[1],
                      "after_reschedules": after[0], "after_sessions": after[1],
                      "before_rate": _rate(*before), "after_rate": _rate(*after)}
            if not dry_run:
                interventions.store_effect(session, state.workflow_id, effect, now)
            measured.append({"tutor_id": state.entity_id, **effect})
        if dry_run:
            session.rollback()
    return measured
