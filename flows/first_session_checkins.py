"""First-session check-ins: every 30 minutes, "How did it go?" to tutors 2-4 hours after a first session."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from prefect import flow

from tasks.deliver import deliver_due
from tasks.plan_checkins import plan_first_session_checkins
from tasks.summary import finish
from tutormax.clock import resolve_now
from tutormax.settings import get_settings


@flow(name="first-session-checkins")
def first_session_checkins(now: datetime | None = None, dry_run: bool = False, batch_size: int | None = None) -> dict[str, Any]:
    """Ask each tutor how a first session went, once per session."""
    now = resolve_now(now)
    run_at = now or datetime.now(timezone.utc)
    planned = plan_first_session_checkins(run_at, dry_run)
    delivery = None if dry_run else deliver_due(now, batch_size or get_settings().batch_size, ["first_session_checkin"])
    return finish("first-session-checkins", run_at, planned, delivery, dry_run)
