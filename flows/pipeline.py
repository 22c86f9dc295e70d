"""The pipeline every sending automation runs: plan into the outbox, deliver what is due, summarize."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from tasks.deliver import deliver_due
from tasks.summary import finish
from tutormax.clock import resolve_now
from tutormax.settings import get_settings


def plan_and_send(flow_name: str, plan: Callable[[datetime, bool], dict[str, int]], template_types: list[str],
                  now: datetime | None, dry_run: bool, batch_size: int | None) -> dict[str, Any]:
    """plan(run_at, dry_run) writes the outbox; delivery sends its template types; the summary artifact ends it."""
    now = resolve_now(now)
    run_at = now or datetime.now(timezone.utc)
    planned = plan(run_at, dry_run)
    # an explicit `now` (a backfill or a test) also drives delivery's clock; otherwise delivery uses the wall clock
    delivery = None if dry_run else deliver_due(now, batch_size or get_settings().batch_size, template_types)
    return finish(flow_name, run_at, planned, delivery, dry_run)
