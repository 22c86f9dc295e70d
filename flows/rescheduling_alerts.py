"""Rescheduling alerts: daily at 10:00, a supportive note to tutors who reschedule often."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from prefect import flow

from flows.pipeline import plan_and_send, run_name
from tasks.plan_alerts import (
    INTERVENTION_NOTIFICATION,
    RESCHEDULING_ALERT,
    measure_intervention_effect,
    plan_rescheduling_alerts,
)
from tasks.summary import publish_effect
from tutormax.clock import resolve_now


@flow(name="rescheduling-alerts", flow_run_name=run_name)
def rescheduling_alerts(now: datetime | None = None, dry_run: bool = False, batch_size: int | None = None) -> dict[str, Any]:
    """Alert tutors with >= 3 reschedules in 7 days (managers at >= 6 in 14), and measure earlier alerts' effect."""
    summary = plan_and_send("rescheduling-alerts", plan_rescheduling_alerts,
                            [RESCHEDULING_ALERT, INTERVENTION_NOTIFICATION], now, dry_run, batch_size)
    measured = measure_intervention_effect(resolve_now(now) or datetime.now(timezone.utc), dry_run)
    return {**summary, "interventions_measured": publish_effect(measured)}
