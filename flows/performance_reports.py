"""Performance reports: monthly, each tutor's metrics with the trend against the month before."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from prefect import flow

from tasks.deliver import deliver_due
from tasks.plan_digests import plan_performance_reports
from tasks.summary import finish
from tutormax.clock import resolve_now
from tutormax.settings import get_settings


@flow(name="performance-reports")
def performance_reports(now: datetime | None = None, dry_run: bool = False, batch_size: int | None = None) -> dict[str, Any]:
    """Send each active tutor last month's performance report, once per month."""
    now = resolve_now(now)
    run_at = now or datetime.now(timezone.utc)
    planned = plan_performance_reports(run_at, dry_run)
    delivery = None if dry_run else deliver_due(now, batch_size or get_settings().batch_size, ["performance_report"])
    return finish("performance-reports", run_at, planned, delivery, dry_run)
