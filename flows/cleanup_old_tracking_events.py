"""Cleanup: Sunday 02:00, tracking events older than days_to_keep are deleted in batches."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from tasks.cleanup import delete_old_events, ingest_journal
from tutormax.clock import resolve_now


@task(name="publish-cleanup-summary")
def publish_cleanup_summary(journal: dict[str, int], deleted: dict[str, Any], dry_run: bool) -> None:
    """The cleanup's summary artifact."""
    create_markdown_artifact(
        key="cleanup-old-tracking-events-summary",
        markdown=(f"# Cleanup{' (dry run: nothing deleted)' if dry_run else ''}\n\n| figure | count |\n|---|---|\n"
                  f"| events deleted (older than {deleted['cutoff'][:10]}) | {deleted['deleted']} |\n"
                  f"| delete batches | {deleted['batches']} |\n"
                  f"| journal events ingested | {journal['inserted']} |\n| journal files | {journal['files']} |\n"),
        description="tracking-event retention")


@flow(name="cleanup-old-tracking-events")
def cleanup_old_tracking_events(days_to_keep: int = 90, now: datetime | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Ingest the tracker's journal, then delete tracking events older than days_to_keep."""
    run_at = resolve_now(now) or datetime.now(timezone.utc)
    journal = {"files": 0, "events": 0, "inserted": 0, "unreadable": 0, "rejected": 0} if dry_run else ingest_journal()
    deleted = delete_old_events(run_at, days_to_keep, dry_run)
    publish_cleanup_summary(journal, deleted, dry_run)
    return {"journal": journal, **deleted, "dry_run": dry_run}
