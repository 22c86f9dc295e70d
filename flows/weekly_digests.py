"""Weekly digests: Monday 09:00, last week for every active tutor and student (or a child's parent)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from prefect import flow

from tasks.deliver import deliver_due
from tasks.plan_digests import plan_weekly_digests
from tasks.summary import finish
from tutormax.clock import resolve_now
from tutormax.settings import get_settings


@flow(name="weekly-digests")
def weekly_digests(now: datetime | None = None, dry_run: bool = False, batch_size: int | None = None) -> dict[str, Any]:
    """Send last week's digest to every active tutor and student, once per week."""
    now = resolve_now(now)
    run_at = now or datetime.now(timezone.utc)
    planned = plan_weekly_digests(run_at, dry_run)
    delivery = None if dry_run else deliver_due(now, batch_size or get_settings().batch_size, ["weekly_digest", "parent_notification"])
    return finish("weekly-digests", run_at, planned, delivery, dry_run)
