"""The scheduler's part of a campaign's life: start what is due, complete what is through."""

from __future__ import annotations

from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from db import campaigns
from db.events import CampaignStatus
from db.session import transaction
from tasks.plan import DB_RETRIES

ACTOR = "scheduled-campaigns"


@task(name="start-due-campaigns", cache_policy=NO_CACHE, **DB_RETRIES)
def start_due(now: datetime) -> list[str]:
    """Scheduled campaigns whose time has come start sending; returns every campaign with work now."""
    with transaction() as session:
        due = campaigns.due(session, now)
    for campaign_id in due:
        with transaction() as session:
            campaign = campaigns.locked(session, campaign_id)
            if campaign.status == CampaignStatus.SCHEDULED and campaign.scheduled_at <= now:
                campaigns.transition(session, campaign, CampaignStatus.SENDING, actor=ACTOR, at=now,
                                     reason=f"its time, {campaign.scheduled_at.isoformat()}, came")
                campaign.started_at = now
    return due


@task(name="complete-finished-campaigns", cache_policy=NO_CACHE, **DB_RETRIES)
def complete_finished(campaign_ids: list[str], now: datetime) -> list[str]:
    """Sending campaigns planned whole whose every message is final: completed."""
    completed = []
    for campaign_id in campaign_ids:
        with transaction() as session:
            campaign = campaigns.locked(session, campaign_id)
            if (campaign.status == CampaignStatus.SENDING and campaign.planned_at is not None
                    and not campaigns.unfinished(session, campaign_id)):
                campaigns.transition(session, campaign, CampaignStatus.COMPLETED, actor=ACTOR, at=now,
                                     reason="every message is sent, failed or skipped")
                campaign.completed_at = now
                completed.append(campaign_id)
    return completed
