"""Feedback invitations: every 15 minutes, to students (or parents) whose session just ended."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow

from flows.pipeline import plan_and_send
from tasks.plan import plan_feedback_invitations


@flow(name="feedback-invitations")
def feedback_invitations(now: datetime | None = None, dry_run: bool = False, batch_size: int | None = None) -> dict[str, Any]:
    """Invite feedback on sessions that ended in the last two hours, once per session."""
    return plan_and_send("feedback-invitations", plan_feedback_invitations, ["feedback_invitation"], now, dry_run, batch_size)
