"""Weekly digests: Monday 09:00, last week for every active tutor and student (or a child's parent)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow

from flows.pipeline import plan_and_send, run_name
from tasks.plan_digests import PARENT_NOTIFICATION, WEEKLY, plan_weekly_digests


@flow(name="weekly-digests", flow_run_name=run_name)
def weekly_digests(now: datetime | None = None, dry_run: bool = False, batch_size: int | None = None) -> dict[str, Any]:
    """Send last week's digest to every active tutor and student, once per week."""
    return plan_and_send("weekly-digests", plan_weekly_digests, [WEEKLY, PARENT_NOTIFICATION], now, dry_run, batch_size)
