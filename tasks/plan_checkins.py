"""Planning the manager escalations that concerning first-session check-in answers trigger."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import task
from sqlalchemy.orm import Session

from db import outbox, queries
from db.events import PRIORITY_RANK, Priority
from tasks.plan import DB_RETRIES, run_planner
from tasks.plan_alerts import INTERVENTION_NOTIFICATION
from tasks.recipients import preference_skip


def escalation_messages(rows, prefs) -> list[outbox.PlannedMessage]:
    """One intervention notice to the tutor's manager per concerning survey: never two."""
    return [
        outbox.PlannedMessage(
            workflow_type=queries.ESCALATION_WORKFLOW, entity_type="survey", entity_id=row.survey_id, step="manager",
            template_type=INTERVENTION_NOTIFICATION.name, category=INTERVENTION_NOTIFICATION.category,
            recipient_type="manager", recipient_email=row.manager_email, recipient_name=row.manager_name,
            recipient_id=row.manager_id, priority=PRIORITY_RANK[Priority.CRITICAL],  # a concern waits for nothing
            skip_reason=preference_skip(prefs.get(row.manager_email.lower()), INTERVENTION_NOTIFICATION.category),
            metadata={"reason": "first_session_concern", "manager_name": row.manager_name, "tutor_name": row.tutor_name,
                      "student_name": row.student_name, "survey_rating": row.rating, "survey_comment": row.comment,
                      "reschedules_7d": 0, "reschedules_14d": 0},
        )
        for row in rows
    ]


@task(name="plan-checkin-escalations", **DB_RETRIES)
def plan_checkin_escalations(now: datetime, survey_id: int | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Write manager escalations for concerning answers: one survey (event path) or all not yet escalated (sweep)."""

    def page(session: Session, after_id: int):
        rows = queries.unescalated_concerns(session, survey_id=survey_id, after_id=after_id)
        if not rows:
            return [], None
        prefs = queries.preferences_for(session, [r.manager_email for r in rows])
        return escalation_messages(rows, prefs), rows[-1].survey_id

    covers = f"check-in survey {survey_id}" if survey_id is not None else "every concerning check-in answer not yet escalated"
    return {**run_planner("check-in escalations", page, now, dry_run), "covers": covers}
