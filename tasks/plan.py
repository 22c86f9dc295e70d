"""Planning tasks: pick who is due with a named query and write the outbox in one transaction."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from prefect import task

from db import outbox, queries
from db.events import PRIORITY_RANK, Category, Priority
from db.session import transaction
from tasks.recipients import for_student, preference_skip
from tasks.retry import DATABASE_DOWN, retry_on
from tutormax.logs import run_logger
from tutormax.settings import get_settings


def feedback_reminder_messages(rows, prefs, today) -> list[outbox.PlannedMessage]:
    """One planned reminder per due session, with its recipient resolved and checked."""
    planned = []
    for row in rows:
        recipient = for_student(
            student_name=row.student_name, student_email=row.student_email, birth_date=row.birth_date,
            parent_name=row.parent_name, parent_email=row.parent_email, parent_consent=row.parent_consent, today=today,
        )
        skip = recipient.skip_reason or preference_skip(
            prefs.get((recipient.email or "").lower()), Category.FEEDBACK_REMINDERS
        )
        planned.append(
            outbox.PlannedMessage(
                workflow_type=queries.FEEDBACK_REMINDER_WORKFLOW,
                entity_type="session",
                entity_id=row.session_id,
                step="reminder",
                template_type="feedback_reminder",
                category=Category.FEEDBACK_REMINDERS,
                recipient_type=recipient.type,
                recipient_email=recipient.email,
                recipient_name=recipient.name,
                recipient_id=row.student_id,
                priority=PRIORITY_RANK[Priority.MEDIUM],
                skip_reason=skip,
                metadata={
                    "session_id": row.session_id,
                    "student_name": row.student_name,
                    "tutor_name": row.tutor_name,
                    "subject_name": row.subject_name,
                    "session_ended_at": row.ended_at.isoformat(),
                    "is_parent": recipient.is_parent,
                },
            )
        )
    return planned


@task(name="plan-feedback-reminders", retries=2, retry_delay_seconds=[10, 60], retry_condition_fn=retry_on(*DATABASE_DOWN))
def plan_feedback_reminders(now: datetime, dry_run: bool = False) -> dict[str, int]:
    """Write one outbox row per due session (insert-or-ignore); dry_run only counts."""
    logger = run_logger()
    totals = outbox.PlanCounts()
    today = now.astimezone(get_settings().tz).date()
    after_id = 0
    while True:
        # one transaction per page: a crash leaves whole pages planned, never half a reason
        with transaction() as session:
            rows = queries.due_feedback_reminders(session, now, after_id=after_id)
            if not rows:
                break
            after_id = rows[-1].session_id
            prefs = queries.preferences_for(session, [r.student_email for r in rows] + [r.parent_email for r in rows])
            planned = feedback_reminder_messages(rows, prefs, today)
            if dry_run:
                totals.queued += sum(1 for p in planned if not p.skip_reason)
                totals.skipped += sum(1 for p in planned if p.skip_reason)
                session.rollback()
                continue
            counts = outbox.plan(session, planned, now)
        totals.queued += counts.queued
        totals.skipped += counts.skipped
        totals.already_planned += counts.already_planned
    logger.info("planned feedback reminders: %s", asdict(totals))
    return asdict(totals)
