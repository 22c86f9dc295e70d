"""First-session check-ins: every 30 minutes, "How did it go?" to tutors 2-4 hours after a first session."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow

from flows.pipeline import plan_and_send
from tasks.plan_checkins import plan_first_session_checkins


@flow(name="first-session-checkins")
def first_session_checkins(now: datetime | None = None, dry_run: bool = False, batch_size: int | None = None) -> dict[str, Any]:
    """Ask each tutor how a first session went, once per session."""
    return plan_and_send("first-session-checkins", plan_first_session_checkins, ["first_session_checkin"], now, dry_run, batch_size)
