"""Rescheduling alerts: daily at 10:00, a supportive note to tutors who reschedule often."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from prefect import flow

from tasks.deliver import deliver_due
from tasks.plan_alerts import measure_intervention_effect, plan_rescheduling_alerts
from tasks.summary import finish, publish_effect
from tutormax.clock import resolve_now
from tutormax.settings import get_settings


@flow(name="rescheduling-alerts")
def rescheduling_alerts(now: datetime | None = None, dry_run: bool = False, batch_size: int | None = None) -> dict[str, Any]:
    """Alert tutors with >= 3 reschedules in 7 days (managers at >= 6 in 14), and measure earlier alerts' effect."""
    now = resolve_now(now)
    run_at = now or datetime.now(timezone.utc)
    planned = plan_rescheduling_alerts(run_at, dry_run)
    delivery = None if dry_run else deliver_due(now, batch_size or get_settings().batch_size,
                                                ["rescheduling_alert", "intervention_notification"])
    effect = publish_effect(measure_intervention_effect(run_at, dry_run))
    return {**finish("rescheduling-alerts", run_at, planned, delivery, dry_run), "interventions_measured": effect}
