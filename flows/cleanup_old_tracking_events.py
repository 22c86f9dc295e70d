"""Cleanup: Sunday 02:00, tracking events older than days_to_keep are deleted in batches."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from flows.pipeline import run_name
from tasks.cleanup import delete_old_events, ingest_journal
from tasks.summary import heading
from tutormax.clock import resolve_now
from tutormax.settings import get_settings


@task(name="publish-cleanup-summary")
def publish_cleanup_summary(journal: dict[str, int], deleted: dict[str, Any], run_at: datetime,
                            parameters: dict[str, Any]) -> None:
    """The cleanup's summary artifact."""
    cutoff = datetime.fromisoformat(deleted["cutoff"]).astimezone(get_settings().tz)
    create_markdown_artifact(
        key="cleanup-old-tracking-events-summary",
        markdown=(heading("cleanup-old-tracking-events", run_at, parameters,
                          f"tracking events from before {cutoff:%a %Y-%m-%d %H:%M %Z}")
                  + ("Dry run: nothing was deleted or ingested.\n\n" if parameters["dry_run"] else "")
                  + "| figure | count |\n|---|---|\n"
                  f"| events deleted | {deleted['deleted']} |\n"
                  f"| delete batches | {deleted['batches']} |\n"
                  f"| journal events ingested | {journal['inserted']} |\n| journal files | {journal['files']} |\n"),
        description="tracking-event retention")


@flow(name="cleanup-old-tracking-events", flow_run_name=run_name)
def cleanup_old_tracking_events(days_to_keep: int = 90, now: datetime | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Ingest the tracker's journal, then delete tracking events older than days_to_keep."""
    run_at = resolve_now(now) or datetime.now(timezone.utc)
    journal = {"files": 0, "events": 0, "inserted": 0, "unreadable": 0, "rejected": 0} if dry_run else ingest_journal()
    deleted = delete_old_events(run_at, days_to_keep, dry_run)
    publish_cleanup_summary(journal, deleted, run_at, {"days_to_keep": days_to_keep, "dry_run": dry_run, "now": resolve_now(now)})
    return {"journal": journal, **deleted, "dry_run": dry_run}
