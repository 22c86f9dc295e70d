"""Feedback invitations: every 15 minutes, to students (or parents) whose session just ended."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from prefect import flow

from tasks.deliver import deliver_due
from tasks.plan import plan_feedback_invitations
from tasks.summary import finish
from tutormax.clock import resolve_now
from tutormax.settings import get_settings


@flow(name="feedback-invitations")
def feedback_invitations(now: datetime | None = None, dry_run: bool = False, batch_size: int | None = None) -> dict[str, Any]:
    """Invite feedback on sessions that ended in the last two hours, once per session."""
    now = resolve_now(now)
    run_at = now or datetime.now(timezone.utc)
    planned = plan_feedback_invitations(run_at, dry_run)
    delivery = None if dry_run else deliver_due(now, batch_size or get_settings().batch_size, ["feedback_invitation"])
    return finish("feedback-invitations", run_at, planned, delivery, dry_run)
