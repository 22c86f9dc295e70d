"""Rescheduling alerts: supportive notes to tutors, interventions to managers, and whether they helped."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import task
from sqlalchemy.orm import Session

from db import interventions, outbox, queries
from db.events import PRIORITY_RANK, Category, Priority
from db.session import transaction
from tasks.plan import DB_RETRIES, run_planner
from tasks.recipients import preference_skip
from tutormax.settings import get_settings


def alert_messages(rows, prefs, day: str) -> list[outbox.PlannedMessage]:
    """A supportive alert per tutor; at >= 6 in 14 days, an intervention notice to the manager too."""
    planned = []
    for row in rows:
        counts = {"reschedules_7d": int(row.reschedules_7d), "reschedules_14d": int(row.reschedules_14d)}
        planned.append(outbox.PlannedMessage(
            workflow_type=interventions.ALERT_WORKFLOW, entity_type="tutor", entity_id=row.tutor_id, step=f"alert:{day}",
            template_type="rescheduling_alert", category=Category.SYSTEM_NOTIFICATIONS, recipient_type="tutor",
            recipient_email=row.tutor_email, recipient_name=row.tutor_name, recipient_id=row.tutor_id,
            priority=PRIORITY_RANK[Priority.HIGH],
            skip_reason=preference_skip(prefs.get(row.tutor_email.lower()), Category.SYSTEM_NOTIFICATIONS),
            metadata={"tutor_name": row.tutor_name, **counts}))
        if counts["reschedules_14d"] >= interventions.INTERVENTION_THRESHOLD_14D and row.manager_email:
            planned.append(outbox.PlannedMessage(
                workflow_type=interventions.INTERVENTION_WORKFLOW, entity_type="tutor", entity_id=row.tutor_id,
                step=f"intervention:{day}", template_type="intervention_notification",
                category=Category.SYSTEM_NOTIFICATIONS, recipient_type="manager", recipient_email=row.manager_email,
                recipient_name=row.manager_name, recipient_id=row.manager_id, priority=PRIORITY_RANK[Priority.HIGH],
                skip_reason=preference_skip(prefs.get(row.manager_email.lower()), Category.SYSTEM_NOTIFICATIONS),
                metadata={"reason": "reschedules", "manager_name": row.manager_name, "tutor_name": row.tutor_name,
                          "student_name": None, "survey_rating": None, "survey_comment": None, **counts}))
    return planned


@task(name="plan-rescheduling-alerts", **DB_RETRIES)
def plan_rescheduling_alerts(now: datetime, dry_run: bool = False) -> dict[str, int]:
    """Write alerts (and manager interventions) for tutors over the thresholds and out of cooldown."""
    day = now.astimezone(get_settings().tz).date().isoformat()

    def page(session: Session, after_id: int):
        rows = interventions.due_rescheduling_alerts(session, now, after_id=after_id)
        if not rows:
            return [], None
        prefs = queries.preferences_for(session, [r.tutor_email for r in rows] + [r.manager_email for r in rows])
        return alert_messages(rows, prefs, day), rows[-1].tutor_id

    return run_planner("rescheduling alerts", page, now, dry_run)


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
