"""Planning first-session check-ins and the manager escalations their concerning answers trigger."""

from __future__ import annotations

from datetime import datetime

from prefect import task
from sqlalchemy.orm import Session

from db import outbox, queries
from db.events import PRIORITY_RANK, Category, Priority
from tasks.plan import DB_RETRIES, run_planner
from tasks.recipients import preference_skip


def checkin_messages(rows, prefs) -> list[outbox.PlannedMessage]:
    """One "How did it go?" email to the tutor per first session."""
    return [
        outbox.PlannedMessage(
            workflow_type=queries.CHECKIN_WORKFLOW, entity_type="session", entity_id=row.session_id, step="checkin",
            template_type="first_session_checkin", category=Category.SESSION_CHECKINS, recipient_type="tutor",
            recipient_email=row.tutor_email, recipient_name=row.tutor_name, recipient_id=row.tutor_id,
            priority=PRIORITY_RANK[Priority.HIGH],
            skip_reason=preference_skip(prefs.get(row.tutor_email.lower()), Category.SESSION_CHECKINS),
            metadata={"session_id": row.session_id, "tutor_name": row.tutor_name, "student_name": row.student_name,
                      "subject_name": row.subject_name, "session_ended_at": row.ended_at.isoformat()},
        )
        for row in rows
    ]


@task(name="plan-first-session-checkins", **DB_RETRIES)
def plan_first_session_checkins(now: datetime, dry_run: bool = False) -> dict[str, int]:
    """Write one check-in per first session that ended 2-4 hours ago (insert-or-ignore)."""

    def page(session: Session, after_id: int):
        rows = queries.due_first_session_checkins(session, now, after_id=after_id)
        if not rows:
            return [], None
        return checkin_messages(rows, queries.preferences_for(session, [r.tutor_email for r in rows])), rows[-1].session_id

    return run_planner("first-session check-ins", page, now, dry_run)


def escalation_messages(rows, prefs) -> list[outbox.PlannedMessage]:
    """One intervention notice to the tutor's manager per concerning survey: never two."""
    return [
        outbox.PlannedMessage(
            workflow_type=queries.ESCALATION_WORKFLOW, entity_type="survey", entity_id=row.survey_id, step="manager",
            template_type="intervention_notification", category=Category.SYSTEM_NOTIFICATIONS, recipient_type="manager",
            recipient_email=row.manager_email, recipient_name=row.manager_name, recipient_id=row.manager_id,
            priority=PRIORITY_RANK[Priority.CRITICAL],
            skip_reason=preference_skip(prefs.get(row.manager_email.lower()), Category.SYSTEM_NOTIFICATIONS),
            metadata={"reason": "first_session_concern", "manager_name": row.manager_name, "tutor_name": row.tutor_name,
                      "student_name": row.student_name, "survey_rating": row.rating, "survey_comment": row.comment,
                      "reschedules_7d": 0, "reschedules_14d": 0},
        )
        for row in rows
    ]


@task(name="plan-checkin-escalations", **DB_RETRIES)
def plan_checkin_escalations(now: datetime, survey_id: int | None = None, dry_run: bool = False) -> dict[str, int]:
    """Write manager escalations for concerning answers: one survey (event path) or all not yet escalated (sweep)."""

    def page(session: Session, after_id: int):
        rows = queries.unescalated_concerns(session, survey_id=survey_id, after_id=after_id)
        if not rows:
            return [], None
        prefs = queries.preferences_for(session, [r.manager_email for r in rows])
        return escalation_messages(rows, prefs), rows[-1].survey_id

    return run_planner("check-in escalations", page, now, dry_run)
