"""Check-in escalations: a concerning answer reaches the tutor's manager, once.

Event path: the tracker emits `tutormax.survey.concerning` and the deployment's
trigger (prefect.yaml) runs this flow with that survey_id. Sweep path: the same
deployment's schedule runs it without one, catching any event that was lost.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from prefect import flow

from tasks.deliver import deliver_due
from tasks.plan_checkins import plan_checkin_escalations
from tasks.summary import finish
from tutormax.clock import resolve_now
from tutormax.settings import get_settings


@flow(name="checkin-escalations")
def checkin_escalations(survey_id: int | None = None, now: datetime | None = None, dry_run: bool = False,
                        batch_size: int | None = None) -> dict[str, Any]:
    """Tell managers about concerning first-session answers: one survey, or every one not yet escalated."""
    now = resolve_now(now)
    run_at = now or datetime.now(timezone.utc)
    planned = plan_checkin_escalations(run_at, survey_id, dry_run)
    delivery = None if dry_run else deliver_due(now, batch_size or get_settings().batch_size, ["intervention_notification"])
    return finish("checkin-escalations", run_at, planned, delivery, dry_run)
