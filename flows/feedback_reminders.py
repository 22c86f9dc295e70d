"""Feedback reminders: hourly, to students (or parents) who have not rated a session 24-48 hours on."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from prefect import flow

from db import queries
from db.events import Category, Priority
from flows.pipeline import plan_and_send, run_name
from tasks.email_types import SAMPLE_NOW, email_type
from tasks.plan import one_per_row
from tasks.recipients import STUDENT
from tutormax.links import Links


def session_feedback_context(meta: dict[str, Any], links: Links, message_id: int, now: datetime) -> dict[str, Any]:
    """A feedback request's variables: the session, and the link that rates it."""
    ended = datetime.fromisoformat(meta["session_ended_at"])
    return {"student_name": meta["student_name"], "tutor_name": meta["tutor_name"],
            "subject_name": meta["subject_name"], "session_date": ended, "is_parent": bool(meta["is_parent"]),
            "hours_since_session": max(0, int((now - ended).total_seconds() // 3600)),
            "feedback_url": links.feedback(message_id)}


SAMPLE_SESSION = {"session_id": 1, "student_id": 7, "student_name": "Mia O'Brien", "tutor_name": "Ana Rivera",
                  "subject_name": "Algebra", "session_ended_at": (SAMPLE_NOW - timedelta(hours=26)).isoformat(),
                  "is_parent": False}

FEEDBACK_REMINDER = email_type(
    "feedback_reminder", category=Category.FEEDBACK_REMINDERS, priority=Priority.MEDIUM,
    context=session_feedback_context, sample=("Mia O'Brien", SAMPLE_SESSION))

plan_feedback_reminders = one_per_row(
    name="feedback-reminders", query=queries.due_feedback_reminders, email=FEEDBACK_REMINDER, audience=STUDENT,
    entity_type="session", key="session_id", step="reminder", covers="sessions that ended",
    window=(timedelta(hours=-48), timedelta(hours=-24)))


@flow(name="feedback-reminders", flow_run_name=run_name)
def feedback_reminders(now: datetime | None = None, dry_run: bool = False, batch_size: int | None = None) -> dict[str, Any]:
    """Remind whoever owes feedback on a session that ended 24-48 hours ago, once per session."""
    return plan_and_send("feedback-reminders", plan_feedback_reminders, [FEEDBACK_REMINDER], now, dry_run, batch_size)
