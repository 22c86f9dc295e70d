"""Check-in escalations: a concerning answer reaches the tutor's manager, once.

Event path: the tracker emits `tutormax.survey.concerning` and the deployment's
trigger (prefect.yaml) runs this flow with that survey_id. Sweep path: the same
deployment's schedule runs it without one, catching any event that was lost.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow

from flows.pipeline import plan_and_send, run_name
from tasks.plan_alerts import INTERVENTION_NOTIFICATION
from tasks.plan_checkins import plan_checkin_escalations


@flow(name="checkin-escalations", flow_run_name=run_name)
def checkin_escalations(survey_id: int | None = None, now: datetime | None = None, dry_run: bool = False,
                        batch_size: int | None = None) -> dict[str, Any]:
    """Tell managers about concerning first-session answers: one survey, or every one not yet escalated."""
    return plan_and_send("checkin-escalations",
                         lambda run_at, dry: plan_checkin_escalations(run_at, survey_id, dry),
                         [INTERVENTION_NOTIFICATION], now, dry_run, batch_size)
