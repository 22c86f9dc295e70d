"""Feedback invitations: every 15 minutes, to students (or parents) whose session just ended."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from prefect import flow

from db import queries
from db.events import Category, Priority
from flows.feedback_reminders import SAMPLE_SESSION, session_feedback_context
from flows.pipeline import plan_and_send, run_name
from tasks.email_types import email_type
from tasks.plan import one_per_row
from tasks.recipients import STUDENT

FEEDBACK_INVITATION = email_type(
    "feedback_invitation", category=Category.FEEDBACK_REMINDERS, priority=Priority.HIGH,
    context=session_feedback_context, sample=("Mia O'Brien", SAMPLE_SESSION))

plan_feedback_invitations = one_per_row(
    name="feedback-invitations", query=queries.due_feedback_invitations, email=FEEDBACK_INVITATION, audience=STUDENT,
    entity_type="session", key="session_id", step="invitation", covers="sessions that ended",
    window=(timedelta(hours=-2), timedelta(0)))


@flow(name="feedback-invitations", flow_run_name=run_name)
def feedback_invitations(now: datetime | None = None, dry_run: bool = False, batch_size: int | None = None) -> dict[str, Any]:
    """Invite feedback on sessions that ended in the last two hours, once per session."""
    return plan_and_send("feedback-invitations", plan_feedback_invitations, [FEEDBACK_INVITATION], now, dry_run,
                         batch_size)
