"""Feedback reminders: hourly, to students (or parents) who have not rated a session 24-48 hours on."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow

from flows.pipeline import plan_and_send
from tasks.plan import plan_feedback_reminders


@flow(name="feedback-reminders")
def feedback_reminders(now: datetime | None = None, dry_run: bool = False, batch_size: int | None = None) -> dict[str, Any]:
    """Remind whoever owes feedback on a session that ended 24-48 hours ago, once per session."""
    return plan_and_send("feedback-reminders", plan_feedback_reminders, ["feedback_reminder"], now, dry_run, batch_size)
