"""Feedback reminders: hourly, to students (or parents) who have not rated a session 24-48 hours on."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from prefect import flow

from tasks.deliver import deliver_due
from tasks.plan import plan_feedback_reminders
from tasks.summary import finish
from tutormax.clock import resolve_now
from tutormax.settings import get_settings


@flow(name="feedback-reminders")
def feedback_reminders(now: datetime | None = None, dry_run: bool = False, batch_size: int | None = None) -> dict[str, Any]:
    """Remind whoever owes feedback on a session that ended 24-48 hours ago, once per session."""
    now = resolve_now(now)
    run_at = now or datetime.now(timezone.utc)
    planned = plan_feedback_reminders(run_at, dry_run)
    delivery = None if dry_run else deliver_due(now, batch_size or get_settings().batch_size, ["feedback_reminder"])
    return finish("feedback-reminders", run_at, planned, delivery, dry_run)
