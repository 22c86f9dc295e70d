"""Process bounces: every 15 minutes, the bounce mailbox's DSNs and complaints, recorded once and acted on."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from flows.pipeline import run_name
from tasks.bounces import lift_expired, process_mailbox
from tasks.summary import heading
from tutormax.clock import resolve_now

# the counts the summary shows, in order, with what they mean
FIGURES = (("reports", "reports read"), ("hard", "hard bounces"), ("soft", "soft bounces"),
           ("delayed", "delay notices (the relay still tries)"), ("complaint", "complaints"),
           ("auto_reply", "auto-replies (ignored)"), ("unknown", "unknown (kept)"),
           ("suppressed", "addresses suppressed"), ("already_recorded", "already recorded"),
           ("refused", "refused by the database (left unread)"))


@task(name="publish-bounce-summary")
def publish_bounce_summary(result: dict[str, Any], lifted: int, run_at: datetime, parameters: dict[str, Any]) -> None:
    """What this run read and did, as a keyed artifact."""
    counts = result["counts"]
    where = result["mailbox"] or "no bounce mailbox is configured (BOUNCE_MAILDIR or BOUNCE_IMAP_HOST)"
    rows = "\n".join(f"| {label} | {counts.get(key, 0)} |" for key, label in FIGURES)
    create_markdown_artifact(key="process-bounces-summary", description="process-bounces run summary", markdown=(
        heading("process-bounces", run_at, parameters, f"the bounce mailbox: {where}")
        + f"| figure | count |\n|---|---|\n{rows}\n| expired suppressions lifted | {lifted} |\n"))


@flow(name="process-bounces", flow_run_name=run_name)
def process_bounces(now: datetime | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Read the bounce mailbox: DSNs and complaints recorded once, suppressions by the rules, auto-replies ignored."""
    resolved = resolve_now(now)
    run_at = resolved or datetime.now(timezone.utc)
    lifted = 0 if dry_run else lift_expired(run_at)
    result = process_mailbox(run_at, dry_run)
    publish_bounce_summary(result, lifted, run_at, {"dry_run": dry_run, "now": resolved})
    return {**{key: result["counts"].get(key, 0) for key, _ in FIGURES}, "lifted": lifted, "mailbox": result["mailbox"]}
