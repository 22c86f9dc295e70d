"""Planning tasks: pick who is due with a named query and write the outbox in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Row
from sqlalchemy.orm import Session

from db import outbox, queries
from db.session import transaction
from tasks.abtest import assign_variant
from tasks.email_types import EmailType
from tasks.recipients import STUDENT, Audience, preference_skip
from tasks.retry import DATABASE_DOWN, retry_on
from tutormax.logs import run_logger
from tutormax.settings import get_settings

PlanPage = Callable[[Session, int], tuple[list[outbox.PlannedMessage], int | None]]


def run_planner(name: str, page: PlanPage, now: datetime, dry_run: bool) -> dict[str, int]:
    """Plan page by page (keyset cursor), one transaction a page; dry_run counts without writing."""
    totals = outbox.PlanCounts()
    cursor: int | None = 0
    while cursor is not None:
        # one transaction per page: a crash leaves whole pages planned, never half a reason
        with transaction() as session:
            planned, cursor = page(session, cursor)
            if dry_run:
                totals.queued += sum(1 for p in planned if not p.skip_reason)
                totals.skipped += sum(1 for p in planned if p.skip_reason)
                session.rollback()
                continue
            counts = outbox.plan(session, assign_variants(session, planned), now)
        totals.queued += counts.queued
        totals.skipped += counts.skipped
        totals.already_planned += counts.already_planned
    run_logger().info("planned %s: %s", name, asdict(totals))
    return asdict(totals)


def assign_variants(session: Session, planned: list[outbox.PlannedMessage]) -> list[outbox.PlannedMessage]:
    """Put each message of a template under an active A/B test into its campaign and a variant.

    The variant is a keyed hash of the recipient and the campaign against the weights: a rerun,
    or the same recipient next week, lands in the same variant.
    """
    campaigns = queries.active_ab_campaigns(session)
    if not campaigns:
        return planned
    secret = get_settings().secret_bytes()
    for message in planned:
        campaign = campaigns.get(message.template_type)
        if campaign is None or message.skip_reason:
            continue
        weights = {"a": campaign.ab_variant_a_weight, "b": campaign.ab_variant_b_weight}
        key = (message.recipient_email or str(message.recipient_id)).lower()
        message.campaign_id = campaign.campaign_id
        message.template_version = campaign.template_version
        message.ab_variant = assign_variant(key, campaign.campaign_id, weights, secret)
    return planned


def local_day(now: datetime):
    """The date in TIMEZONE at this instant."""
    return now.astimezone(get_settings().tz).date()


def _json_safe(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def row_messages(session: Session, rows: Sequence[Row], email: EmailType, *, workflow: str, entity_type: str,
                 key: str, step: str, audience: Audience, today: date) -> list[outbox.PlannedMessage]:
    """One email of this type per row, to the row's recipient; the row's other columns are its metadata."""
    recipients = [audience.resolve(row, today) for row in rows]
    prefs = queries.preferences_for(session, [r.email for r in recipients if r.email])
    planned = []
    for row, recipient in zip(rows, recipients):
        skip = recipient.skip_reason or preference_skip(prefs.get((recipient.email or "").lower()), email.category)
        metadata = {k: _json_safe(v) for k, v in row._mapping.items() if k not in audience.private}
        if audience is STUDENT:
            metadata["is_parent"] = recipient.is_parent
        planned.append(outbox.PlannedMessage(
            workflow_type=workflow, entity_type=entity_type, entity_id=getattr(row, key), step=step,
            template_type=email.name, category=email.category, recipient_type=recipient.type,
            recipient_email=recipient.email, recipient_name=recipient.name, recipient_id=recipient.id,
            priority=email.rank, skip_reason=skip, metadata=metadata))
    return planned


DB_RETRIES = {"retries": 2, "retry_delay_seconds": [10, 60], "retry_condition_fn": retry_on(*DATABASE_DOWN)}

DueQuery = Callable[..., Sequence[Row]]


def one_per_row(*, name: str, query: DueQuery, email: EmailType, audience: Audience, entity_type: str, key: str,
                step: str, window: tuple[timedelta, timedelta], covers: str, workflow: str | None = None) -> Task:
    """A planning task that writes one email per row the named query finds due, once per row, ever.

    The query is called as query(session, earliest, latest, after_id=...), where [earliest, latest]
    is `window` (two offsets from the run's now: negative in the past) and both ends are inclusive;
    it pages on the column `key`. Its rows
    carry `key` and the audience's columns (tasks.recipients); every other column is kept as the
    message's metadata, for the template. The workflow (default: the type's name), the row's key and
    `step` make the idempotency key: a rerun, or a row found again by an overlapping window, plans
    nothing twice. `covers` says what the window is of ("sessions that ended"), for the run summary.
    """
    workflow = workflow or email.name

    def plan(now: datetime, dry_run: bool = False) -> dict[str, Any]:
        earliest, latest, today = now + window[0], now + window[1], local_day(now)

        def page(session: Session, after_id: int):
            rows = query(session, earliest, latest, after_id=after_id)
            if not rows:
                return [], None
            return row_messages(session, rows, email, workflow=workflow, entity_type=entity_type, key=key,
                                step=step, audience=audience, today=today), getattr(rows[-1], key)

        tz = get_settings().tz
        return {**run_planner(name, page, now, dry_run),
                "covers": f"{covers} {earliest.astimezone(tz):%a %Y-%m-%d %H:%M} to "
                          f"{latest.astimezone(tz):%a %Y-%m-%d %H:%M %Z}"}

    # a name of its own per automation: Prefect keys tasks by their function's name
    plan.__name__ = plan.__qualname__ = f"plan_{name.replace('-', '_')}"
    description = f"Plan one {email.name} per row {query.__name__} finds due, once per row."
    return task(plan, name=f"plan-{name}", description=description, cache_policy=NO_CACHE, **DB_RETRIES)
