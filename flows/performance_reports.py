"""Performance reports: monthly, each tutor's metrics with the trend against the month before."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow

from flows.pipeline import plan_and_send
from tasks.plan_digests import plan_performance_reports


@flow(name="performance-reports")
def performance_reports(now: datetime | None = None, dry_run: bool = False, batch_size: int | None = None) -> dict[str, Any]:
    """Send each active tutor last month's performance report, once per month."""
    return plan_and_send("performance-reports", plan_performance_reports, ["performance_report"], now, dry_run, batch_size)
