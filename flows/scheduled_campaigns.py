"""Scheduled campaigns: every 15 minutes, start what is due, guard reputations, pick A/B winners, plan, complete."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from db import campaigns
from db.session import transaction
from flows.pipeline import run_name
from tasks.campaign_guard import guard_reputation, publish_guard_pauses
from tasks.campaign_schedule import complete_finished, start_due
from tasks.campaign_winner import pick_winner, verdict_markdown
from tasks.plan_campaigns import PAGE, plan_campaign, preview
from tasks.summary import heading
from tutormax.clock import resolve_now


@task(name="preview-due-campaigns")
def preview_due(now: datetime) -> list[dict[str, Any]]:
    """A dry run: who each due campaign would go to now, and who is excluded; nothing is written."""
    with transaction() as session:
        due = campaigns.due(session, now)
    return [preview(campaign_id, now) for campaign_id in due]


@task(name="publish-campaign-summary")
def publish_campaign_summary(run_at: datetime, parameters: dict[str, Any], planned: list[dict[str, Any]],
                             paused: list[dict[str, Any]], decided: dict[str, dict[str, Any]],
                             completed: list[str], previews: list[dict[str, Any]]) -> None:
    """What this run did to each campaign, as a keyed artifact; a verdict or a guard's pause also gets its own."""
    lines = []
    if previews:
        lines += ["| campaign | segment | recipients | excluded |", "|---|---|---|---|"]
        lines += [f"| {p['campaign_id']} | {p['segment']} | {p['recipients']:,} | "
                  f"{', '.join(f'{k}: {v:,}' for k, v in p['excluded'].items()) or 'none'} |" for p in previews]
    if planned:
        lines += ["| campaign | pages | queued | skipped | already planned | stopped |", "|---|---|---|---|---|---|"]
        lines += [f"| {p['campaign_id']} | {p['pages']} | {p.get('queued', 0):,} | {p.get('skipped', 0):,} | "
                  f"{p.get('already_planned', 0):,} | {p['stopped'] or ''} |" for p in planned]
    lines += [f"- **{p['campaign_id']} paused by the reputation guard**: {p['reason']} ({p['held']:,} held)."
              for p in paused]
    lines += [f"- {campaign_id}: A/B decided: {v['reason']}" for campaign_id, v in decided.items()]
    lines += [f"- {campaign_id} completed." for campaign_id in completed]
    create_markdown_artifact(key="scheduled-campaigns-summary", description="scheduled-campaigns run summary",
                             markdown=heading("scheduled-campaigns", run_at, parameters, "campaigns due by then")
                             + ("\n".join(lines) or "No campaign was due.") + "\n")
    publish_guard_pauses(paused)
    with transaction() as session:
        for campaign_id in decided:
            campaign = campaigns.by_id(session, campaign_id)
            create_markdown_artifact(key=f"campaign-{campaign_id}-ab-verdict", description="A/B verdict",
                                     markdown=f"# {campaign.campaign_name}: A/B verdict\n\n{verdict_markdown(campaign)}")


@flow(name="scheduled-campaigns", flow_run_name=run_name)
def scheduled_campaigns(now: datetime | None = None, dry_run: bool = False, page_size: int = PAGE) -> dict[str, Any]:
    """Start due campaigns, pause any whose first deliveries hurt the sender, decide A/B tests, plan, complete."""
    resolved = resolve_now(now)
    run_at = resolved or datetime.now(timezone.utc)
    parameters = {"dry_run": dry_run, "now": resolved}
    if dry_run:
        previews = preview_due(run_at)
        publish_campaign_summary(run_at, parameters, [], [], {}, [], previews)
        return {"previews": previews}
    active = start_due(run_at)
    paused = guard_reputation(run_at)
    decided = {cid: verdict for cid in active if (verdict := pick_winner(cid, run_at)) is not None}
    planned = [plan_campaign(cid, run_at, page_size) for cid in active]
    completed = complete_finished(active, run_at)
    publish_campaign_summary(run_at, parameters, planned, paused, decided, completed, [])
    return {"active": active, "planned": planned, "paused": paused, "decided": decided, "completed": completed}
