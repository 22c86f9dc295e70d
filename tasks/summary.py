"""The summary artifact every flow ends with."""

from __future__ import annotations

import statistics
from datetime import datetime
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact

from db.queue import QueueState
from tasks.deliver import DeliveryReport
from tutormax.settings import get_settings

FIGURES = ("planned", "sent", "deferred", "failed", "bounced", "blocked", "skipped", "withdrawn", "already_planned")


def summarize(flow_name: str, now: datetime, planned: dict[str, Any], delivery: DeliveryReport | None,
              dry_run: bool, explicit_now: bool = False) -> dict[str, Any]:
    """One dict of counts for the run: what was planned and what delivery did with it."""
    counts = delivery.counts if delivery else {}
    render_ms = sorted(delivery.render_ms) if delivery else []
    return {
        "flow": flow_name,
        "now": now.isoformat(),
        "explicit_now": explicit_now,
        "covers": planned.get("covers"),
        "dry_run": dry_run,
        "planned": planned.get("queued", 0),
        "skipped": planned.get("skipped", 0),
        "already_planned": planned.get("already_planned", 0),
        "sent": counts.get("sent", 0),
        "deferred": counts.get("deferred", 0),
        "failed": counts.get("failed", 0),
        "bounced": counts.get("bounced", 0),
        # refused for policy or reputation (5.7.x): failed, and the address kept
        "blocked": counts.get("blocked", 0),
        # planned, then found unwanted at send time (an opt-out or feedback since); skipped, not sent
        "withdrawn": counts.get("withdrawn", 0),
        "render_ms_p50": round(statistics.median(render_ms), 3) if render_ms else None,
        "delivery_error": delivery.error if delivery else None,
    }


def heading(flow_name: str, now: datetime, parameters: dict[str, Any], covers: str | None = None) -> str:
    """An artifact's head: the run in local time, what it covered and the parameters it ran with."""
    tz = get_settings().tz
    local = now.astimezone(tz)
    shown = ", ".join(f"`{k}={v.astimezone(tz):%Y-%m-%d %H:%M %Z}`" if isinstance(v, datetime) else f"`{k}={v}`"
                      for k, v in parameters.items())
    return (f"# {flow_name}, {local:%a %Y-%m-%d %H:%M %Z}\n\n" + (f"Covers {covers}.\n\n" if covers else "")
            + f"Parameters: {shown}.\n\n")


@task(name="publish-summary")
def publish_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """Write the run's counts as a keyed markdown artifact (it versions on the Artifacts page)."""
    rows = "\n".join(f"| {name.replace('_', ' ')} | {summary[name]} |" for name in FIGURES)
    now = datetime.fromisoformat(summary["now"])
    parameters = {"dry_run": summary["dry_run"], "now": now if summary["explicit_now"] else None}
    notes = []
    if summary["dry_run"]:
        notes.append("Dry run: nothing was written or sent.")
    if summary["delivery_error"]:
        notes.append(f"Delivery stopped: {summary['delivery_error']}. Unsent messages stay queued for the next run.")
    if summary["render_ms_p50"] is not None:
        notes.append(f"Render p50: {summary['render_ms_p50']} ms.")
    markdown = (heading(summary["flow"], now, parameters, summary["covers"])
                + f"| figure | count |\n|---|---|\n{rows}\n\n" + "\n\n".join(notes))
    create_markdown_artifact(key=f"{summary['flow']}-summary", markdown=markdown, description=f"{summary['flow']} run summary")
    return summary


def finish(flow_name: str, now: datetime, planned: dict[str, Any], delivery: DeliveryReport | None,
           dry_run: bool, explicit_now: bool = False) -> dict[str, Any]:
    """Publish the run's summary artifact; a stopped delivery then fails the run so operators see it."""
    summary = publish_summary(summarize(flow_name, now, planned, delivery, dry_run, explicit_now))
    if delivery and delivery.error:
        raise RuntimeError(f"delivery stopped: {delivery.error}")
    return summary


@task(name="publish-intervention-effect")
def publish_effect(measured: list[dict[str, Any]]) -> int:
    """A table artifact: each alert's reschedule rate before and after, and the average change."""
    from prefect.artifacts import create_table_artifact

    if not measured:
        return 0
    rows = [{"tutor_id": m["tutor_id"], "alert_at": m["alert_at"][:10], "before_rate": m["before_rate"],
             "after_rate": m["after_rate"],
             "change": None if m["before_rate"] is None or m["after_rate"] is None
             else round(m["after_rate"] - m["before_rate"], 4)} for m in measured]
    changes = [r["change"] for r in rows if r["change"] is not None]
    average = round(sum(changes) / len(changes), 4) if changes else None
    create_table_artifact(key="rescheduling-intervention-effect", table=rows,
                          description=f"Reschedule rate (reschedules per scheduled session) in the 14 days after "
                                      f"each alert against the 14 days before; average change {average}")
    return len(rows)


def queue_lines(queue: QueueState, tz) -> list[str]:
    """The queue in words, for `tutormax queue` and deliver-outbox's artifact (markdown reads them as a list)."""
    from db.events import PRIORITY_RANK

    names = {rank: priority.value for priority, rank in PRIORITY_RANK.items()}
    local = lambda at: f"{at.astimezone(tz):%a %Y-%m-%d %H:%M:%S %Z}"  # noqa: E731
    lines = [f"Queue at {local(queue.at)}: {queue.due:,} due now, "
             f"{sum(n for *_, n in queue.counts):,} unfinished in all."]
    if queue.oldest_due:
        mid, template, planned = queue.oldest_due
        lines.append(f"Oldest due: message {mid} ({template}), planned {local(planned)}.")
    if queue.next_retry:
        lines.append(f"Next retry: {local(queue.next_retry)}.")
    if queue.stuck:
        lines.append(f"Claims past their lease (a runner died mid-batch; the next runner takes them): {len(queue.stuck)}, "
                     "the oldest " + ", ".join(f"message {mid} ({template}) claimed {local(at)}"
                                               for mid, template, at in queue.stuck[:3]) + ".")
    if queue.held:
        lines.append("Held by paused campaigns (`tutormax campaign resume ID` sends them): "
                     + ", ".join(f"{campaign} {n:,}" for campaign, n in queue.held) + ".")
    lines.append("")
    lines.append("| priority | template type | status | messages |")
    lines.append("|---|---|---|---|")
    lines += [f"| {names.get(rank, rank)} | {template} | {status} | {n:,} |" for status, template, rank, n in queue.counts]
    return lines
