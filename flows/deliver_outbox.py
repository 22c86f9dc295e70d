"""The outbox's queue runner: every minute, whatever is due, of any type, by priority then age."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from flows.pipeline import run_name
from tasks.campaign_guard import guard_reputation, publish_guard_pauses
from tasks.deliver import DeliveryReport, apply_send_rate, deliver_due, read_queue
from tasks.summary import FIGURES, heading, queue_lines, summarize
from tutormax.clock import resolve_now
from tutormax.settings import get_settings


@task(name="publish-outbox-summary")
def publish_outbox_summary(summary: dict[str, Any], queue_text: list[str], parameters: dict[str, Any]) -> None:
    """What the run sent and the queue it left, as a keyed artifact."""
    rows = "\n".join(f"| {name.replace('_', ' ')} | {summary[name]} |" for name in FIGURES if name in summary)
    stopped = (f"Delivery stopped: {summary['delivery_error']}. Unsent messages stay queued for the next run.\n\n"
               if summary["delivery_error"] else "")
    if summary["paused_campaigns"]:
        stopped += f"Paused by the reputation guard: {', '.join(summary['paused_campaigns'])}.\n\n"
    create_markdown_artifact(
        key="deliver-outbox-summary", description="deliver-outbox run summary and the queue after it",
        markdown=(heading("deliver-outbox", datetime.fromisoformat(summary["now"]), parameters,
                          "every due message of any type") + stopped
                  + f"| figure | count |\n|---|---|\n{rows}\n\n" + "\n".join(queue_text) + "\n"))


@flow(name="deliver-outbox", flow_run_name=run_name)
def deliver_outbox(now: datetime | None = None, budget_seconds: float = 50.0, batch_size: int | None = None,
                   dry_run: bool = False) -> dict[str, Any]:
    """Send every due message of any type: planned, deferred retries whose time has come, expired claims."""
    if budget_seconds <= 0:
        raise ValueError("budget_seconds must be positive")
    settings = get_settings()
    now = resolve_now(now)
    run_at = now or datetime.now(timezone.utc)
    delivery, paused = None, []
    if not dry_run:
        apply_send_rate()
        paused = guard_reputation(run_at)  # a campaign whose first deliveries bounce stops before more leave
        publish_guard_pauses(paused)
        delivery = deliver_due(now, batch_size or settings.batch_size, None, budget_seconds)
    queue = read_queue(run_at)
    summary = summarize("deliver-outbox", run_at, {}, delivery or DeliveryReport(), dry_run, explicit_now=now is not None)
    summary["due_after"] = queue.due
    summary["paused_campaigns"] = [p["campaign_id"] for p in paused]
    publish_outbox_summary(summary, queue_lines(queue, settings.tz),
                           {"dry_run": dry_run, "budget_seconds": budget_seconds, "now": now})
    if delivery and delivery.error:
        raise RuntimeError(f"delivery stopped: {delivery.error}")
    return summary
