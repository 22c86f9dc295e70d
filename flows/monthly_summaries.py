"""Monthly summaries: the 1st at 09:00, each active student's last month (a child's goes to the parent)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from prefect import flow

from tasks.deliver import deliver_due
from tasks.plan_digests import plan_monthly_summaries
from tasks.summary import finish
from tutormax.clock import resolve_now
from tutormax.settings import get_settings


@flow(name="monthly-summaries")
def monthly_summaries(now: datetime | None = None, dry_run: bool = False, batch_size: int | None = None) -> dict[str, Any]:
    """Send each active student last month's summary, once per month."""
    now = resolve_now(now)
    run_at = now or datetime.now(timezone.utc)
    planned = plan_monthly_summaries(run_at, dry_run)
    delivery = None if dry_run else deliver_due(now, batch_size or get_settings().batch_size, ["monthly_summary"])
    return finish("monthly-summaries", run_at, planned, delivery, dry_run)
