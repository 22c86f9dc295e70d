"""The pipeline every sending automation runs: plan into the outbox, deliver what is due, summarize."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from tasks.deliver import apply_send_rate, deliver_due
from tasks.email_types import EmailType
from tasks.summary import finish
from tutormax.clock import resolve_now
from tutormax.settings import get_settings


def run_name() -> str:
    """A flow_run_name saying what and when: "weekly-digests 2026-11-30 09:00 EST", "(dry run)" when it is one.

    When is the `now` parameter (a backfill), else the time the run was scheduled for, in TIMEZONE.
    """
    from prefect.runtime import flow_run

    parameters = flow_run.parameters
    at = resolve_now(parameters.get("now")) or flow_run.scheduled_start_time or datetime.now(timezone.utc)
    dry = " (dry run)" if parameters.get("dry_run") else ""
    return f"{flow_run.flow_name} {at.astimezone(get_settings().tz):%Y-%m-%d %H:%M %Z}{dry}"


def plan_and_send(flow_name: str, plan: Callable[[datetime, bool], dict[str, Any]], types: list[EmailType],
                  now: datetime | None, dry_run: bool, batch_size: int | None) -> dict[str, Any]:
    """plan(run_at, dry_run) writes the outbox; delivery sends these types at once; the summary artifact ends it."""
    now = resolve_now(now)
    run_at = now or datetime.now(timezone.utc)
    planned = plan(run_at, dry_run)
    delivery = None
    if not dry_run:
        apply_send_rate()
        # the run's own mail goes at once; anything else due is deliver-outbox's, within the minute.
        # An explicit `now` (a backfill or a test) also drives delivery's clock, else the wall clock does
        delivery = deliver_due(now, batch_size or get_settings().batch_size, [t.name for t in types])
    return finish(flow_name, run_at, planned, delivery, dry_run, explicit_now=now is not None)
