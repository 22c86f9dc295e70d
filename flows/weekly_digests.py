"""Weekly digests: Monday 09:00, last week for every active tutor and student (or a child's parent)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow

from flows.pipeline import plan_and_send
from tasks.plan_digests import plan_weekly_digests


@flow(name="weekly-digests")
def weekly_digests(now: datetime | None = None, dry_run: bool = False, batch_size: int | None = None) -> dict[str, Any]:
    """Send last week's digest to every active tutor and student, once per week."""
    return plan_and_send("weekly-digests", plan_weekly_digests, ["weekly_digest", "parent_notification"], now, dry_run, batch_size)
