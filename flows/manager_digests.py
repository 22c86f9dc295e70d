"""Manager digests: Monday 08:00, each manager's tutors last week with flags and escalations."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from prefect import flow

from tasks.deliver import deliver_due
from tasks.plan_digests import plan_manager_digests
from tasks.summary import finish
from tutormax.clock import resolve_now
from tutormax.settings import get_settings


@flow(name="manager-digests")
def manager_digests(now: datetime | None = None, dry_run: bool = False, batch_size: int | None = None) -> dict[str, Any]:
    """Send each manager last week's view of their tutors, once per week."""
    now = resolve_now(now)
    run_at = now or datetime.now(timezone.utc)
    planned = plan_manager_digests(run_at, dry_run)
    delivery = None if dry_run else deliver_due(now, batch_size or get_settings().batch_size, ["manager_digest"])
    return finish("manager-digests", run_at, planned, delivery, dry_run)
