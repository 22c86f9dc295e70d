"""The reputation guard: a campaign whose first deliveries bounce or draw complaints too often is paused.

Mailbox providers judge a sender by its bounce and complaint rates (Gmail's and Yahoo's 2024 rules:
complaints under 0.3 %, always); a list with many dead or unwilling addresses costs every later
email its inbox. The window is a campaign's first 1,000 attempted deliveries (all of them, when it
has fewer), and an A/B campaign's whole test portion before the rest is sent. A window still filling
is judged as soon as its outcome is certain: 51 hard bounces among the first 1,000 exceed 5 % however
the rest go. Complaints arrive for days, so the guard keeps looking while the campaign sends.
An operator who has looked may resume over it (tutormax campaign resume --override-guard).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from sqlalchemy import select

from db import campaigns
from db.events import CampaignStatus
from db.models import EmailCampaign
from db.session import transaction
from tasks.plan import DB_RETRIES
from tutormax.logs import run_logger

WINDOW = 1000
HARD_BOUNCE_LIMIT = 0.05
COMPLAINT_LIMIT = 0.003


def judge(first: campaigns.FirstDeliveries, window: int) -> str | None:
    """Why this window must pause the campaign, or None: rates over the window once it is full, counts before."""
    if first.attempted == 0:
        return None
    full = first.attempted >= window
    size = first.attempted if full else window
    for count, limit, what in ((first.hard_bounced, HARD_BOUNCE_LIMIT, "hard-bounce"),
                               (first.complained, COMPLAINT_LIMIT, "complaint")):
        if count > limit * size:
            of = (f"{count} of its first {first.attempted} deliveries" if full
                  else f"{count} of its first {first.attempted} deliveries (more than {limit:.1%} of {window} already)")
            return f"{what} rate above {limit:.1%}: {of}"
    return None


def check(session, campaign: EmailCampaign) -> str | None:
    """The guard's reason to pause this campaign now, or None."""
    if campaign.guard_override or campaign.status != CampaignStatus.SENDING:
        return None
    # a campaign planned whole with fewer than WINDOW to send is judged on all of them
    window = max(1, campaigns.to_send(session, campaign.campaign_id, WINDOW)) if campaign.planned_at else WINDOW
    reason = judge(campaigns.first_deliveries(session, campaign.campaign_id, window), window)
    if reason is None and campaign.ab_test_enabled and campaign.test_finished_at is not None:
        portion = campaigns.first_deliveries(session, campaign.campaign_id, 10**9, test_only=True)
        reason = judge(portion, max(1, portion.attempted))
        reason = reason and f"test portion: {reason}"
    return reason


@task(name="guard-reputation", cache_policy=NO_CACHE, **DB_RETRIES)
def guard_reputation(now: datetime) -> list[dict[str, Any]]:
    """Pause every sending campaign whose first deliveries bounce or draw complaints past the limits."""
    from tasks.campaign_control import pause

    paused = []
    with transaction() as session:
        sending = list(session.scalars(select(EmailCampaign).where(EmailCampaign.status == CampaignStatus.SENDING,
                                                                   EmailCampaign.guard_override.is_(False))))
        reasons = {c.campaign_id: check(session, c) for c in sending}
    for campaign_id, reason in reasons.items():
        if reason is None:
            continue
        try:
            held = pause(campaign_id, actor=campaigns.GUARD_ACTOR, now=now, reason=reason)
        except campaigns.CampaignError:
            continue  # an operator paused or cancelled it meanwhile
        run_logger().warning("campaign %s paused by the reputation guard: %s; %d message(s) held", campaign_id,
                             reason, held)
        paused.append({"campaign_id": campaign_id, "reason": reason, "held": held})
    return paused


def publish_guard_pauses(paused: list[dict[str, Any]]) -> None:
    """An artifact per campaign the guard paused, saying why and what the operator does next."""
    for p in paused:
        create_markdown_artifact(key=f"campaign-{p['campaign_id']}-guard", description="reputation guard",
                                 markdown=f"# {p['campaign_id']} paused by the reputation guard\n\n{p['reason']}.\n\n"
                                 f"{p['held']:,} unsent message(s) held. Look at its bounces and complaints "
                                 "(`tutormax campaign show`), then cancel it, or resume it with --override-guard.\n")
