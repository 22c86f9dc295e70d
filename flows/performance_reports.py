"""Performance reports: monthly, each tutor's metrics with the trend against the month before."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow

from flows.pipeline import plan_and_send, run_name
from tasks.plan_digests import PERFORMANCE, plan_performance_reports


@flow(name="performance-reports", flow_run_name=run_name)
def performance_reports(now: datetime | None = None, dry_run: bool = False, batch_size: int | None = None) -> dict[str, Any]:
    """Send each active tutor last month's performance report, once per month."""
    return plan_and_send("performance-reports", plan_performance_reports, [PERFORMANCE], now, dry_run, batch_size)
