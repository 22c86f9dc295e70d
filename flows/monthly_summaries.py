"""Monthly summaries: the 1st at 09:00, each active student's last month (a child's goes to the parent)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow

from flows.pipeline import plan_and_send, run_name
from tasks.plan_digests import MONTHLY, plan_monthly_summaries


@flow(name="monthly-summaries", flow_run_name=run_name)
def monthly_summaries(now: datetime | None = None, dry_run: bool = False, batch_size: int | None = None) -> dict[str, Any]:
    """Send each active student last month's summary, once per month."""
    return plan_and_send("monthly-summaries", plan_monthly_summaries, [MONTHLY], now, dry_run, batch_size)
