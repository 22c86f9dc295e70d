"""Retention: old tracking events go, in batches; the tracker's journal is ingested first."""

from __future__ import annotations

from datetime import datetime, timedelta

from prefect import task

from db import tracking
from db.session import transaction
from tasks.plan import DB_RETRIES
from tutormax.journal import Journal
from tutormax.logs import run_logger
from tutormax.settings import var_dir

BATCH = 5000


@task(name="ingest-tracker-journal", **DB_RETRIES)
def ingest_journal() -> dict[str, int]:
    """Move events the tracker journaled during a database outage into the database, once."""
    return Journal(var_dir() / "journal").ingest()


@task(name="delete-old-tracking-events", **DB_RETRIES)
def delete_old_events(now: datetime, days_to_keep: int, dry_run: bool = False) -> dict[str, int]:
    """Delete tracking events older than days_to_keep, BATCH rows per transaction."""
    if days_to_keep < 1:
        raise ValueError("days_to_keep must be at least 1")
    cutoff = now - timedelta(days=days_to_keep)
    deleted = batches = 0
    while True:
        with transaction() as session:
            count = tracking.delete_events_before(session, cutoff, BATCH)
            if dry_run:
                session.rollback()
        deleted += count
        batches += 1
        if count < BATCH or dry_run:
            break
    run_logger().info("deleted %d tracking events older than %s in %d batches", deleted, cutoff.isoformat(), batches)
    return {"deleted": deleted, "batches": batches, "cutoff": cutoff.isoformat()}
