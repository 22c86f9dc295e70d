"""Manager digests: Monday 08:00, each manager's tutors last week with flags and escalations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow

from flows.pipeline import plan_and_send, run_name
from tasks.plan_digests import MANAGER, plan_manager_digests


@flow(name="manager-digests", flow_run_name=run_name)
def manager_digests(now: datetime | None = None, dry_run: bool = False, batch_size: int | None = None) -> dict[str, Any]:
    """Send each manager last week's view of their tutors, once per week."""
    return plan_and_send("manager-digests", plan_manager_digests, [MANAGER], now, dry_run, batch_size)
