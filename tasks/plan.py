"""Planning tasks: pick who is due with a named query and write the outbox in one transaction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime

from prefect import task
from sqlalchemy.orm import Session

from db import outbox, queries
from db.events import PRIORITY_RANK, Category, Priority
from db.session import transaction
from tasks.abtest import assign_variant
from tasks.recipients import for_student, preference_skip
from tasks.retry import DATABASE_DOWN, retry_on
from tutormax.logs import run_logger
from tutormax.settings import get_settings

PlanPage = Callable[[Session, int], tuple[list[outbox.PlannedMessage], int | None]]


def run_planner(name: str, page: PlanPage, now: datetime, dry_run: bool) -> dict[str, int]:
    """Plan page by page (keyset cursor), one transaction a page; dry_run counts without writing."""
    totals = outbox.PlanCounts()
    cursor: int | None = 0
    while cursor is not None:
        # one transaction per page: a crash leaves whole pages planned, never half a reason
        with transaction() as session:
            planned, cursor = page(session, cursor)
            if dry_run:
                totals.queued += sum(1 for p in planned if not p.skip_reason)
                totals.skipped += sum(1 for p in planned if p.skip_reason)
                session.rollback()
                continue
            counts = outbox.plan(session, assign_variants(session, planned), now)
        totals.queued += counts.queued
        totals.skipped += counts.skipped
        totals.already_planned += counts.already_planned
    run_logger().info("planned %s: %s", name, asdict(totals))
    return asdict(totals)


def assign_variants(session: Session, planned: list[outbox.PlannedMessage]) -> list[outbox.PlannedMessage]:
    """Put each message of a template under an active A/B test into its campaign and a variant.

    The variant is a keyed hash of the recipient and the campaign against the weights: a rerun,
    or the same recipient next week, lands in the same variant.
    """
    campaigns = queries.active_ab_campaigns(session)
    if not campaigns:
        return planned
    secret = get_settings().secret_bytes()
    for message in planned:
        campaign = campaigns.get(message.template_type)
        if campaign is None or message.skip_reason:
            continue
        weights = {"a": campaign.ab_variant_a_weight, "b": campaign.ab_variant_b_weight}
        key = (message.recipient_email or str(message.recipient_id)).lower()
        message.campaign_id = campaign.campaign_id
        message.template_version = campaign.template_version
        message.ab_variant = assign_variant(key, campaign.campaign_id, weights, secret)
    return planned


def _today(now: datetime):
    return now.astimezone(get_settings().tz).date()


def session_feedback_messages(rows, prefs, today, workflow: str, template_type: str, step: str,
                              priority: Priority) -> list[outbox.PlannedMessage]:
    """One planned feedback email per session, to the student or (under 13) the consenting parent."""
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
                workflow_type=workflow, entity_type="session", entity_id=row.session_id, step=step,
                template_type=template_type, category=Category.FEEDBACK_REMINDERS,
                recipient_type=recipient.type, recipient_email=recipient.email, recipient_name=recipient.name,
                recipient_id=row.student_id, priority=PRIORITY_RANK[priority], skip_reason=skip,
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


def _session_feedback_page(query, workflow: str, template_type: str, step: str, priority: Priority, now: datetime):
    def page(session: Session, after_id: int):
        rows = query(session, now, after_id=after_id)
        if not rows:
            return [], None
        prefs = queries.preferences_for(session, [r.student_email for r in rows] + [r.parent_email for r in rows])
        planned = session_feedback_messages(rows, prefs, _today(now), workflow, template_type, step, priority)
        return planned, rows[-1].session_id

    return page


DB_RETRIES = {"retries": 2, "retry_delay_seconds": [10, 60], "retry_condition_fn": retry_on(*DATABASE_DOWN)}


@task(name="plan-feedback-reminders", **DB_RETRIES)
def plan_feedback_reminders(now: datetime, dry_run: bool = False) -> dict[str, int]:
    """Write one reminder per session 24-48 hours old without feedback (insert-or-ignore)."""
    page = _session_feedback_page(queries.due_feedback_reminders, queries.FEEDBACK_REMINDER_WORKFLOW,
                                  "feedback_reminder", "reminder", Priority.MEDIUM, now)
    return run_planner("feedback reminders", page, now, dry_run)


@task(name="plan-feedback-invitations", **DB_RETRIES)
def plan_feedback_invitations(now: datetime, dry_run: bool = False) -> dict[str, int]:
    """Write one invitation per session that ended in the last two hours (insert-or-ignore)."""
    page = _session_feedback_page(queries.due_feedback_invitations, queries.FEEDBACK_INVITATION_WORKFLOW,
                                  "feedback_invitation", "invitation", Priority.HIGH, now)
    return run_planner("feedback invitations", page, now, dry_run)
