"""Planning a campaign: its segment, page by page, into the outbox once per recipient; an A/B test in two phases.

Every recipient is keyed by campaign and address (a parent with two children, or a tutor who is
also a parent, gets one message), so a rerun, an overlapping run or a crash halfway adds nobody
twice; each page commits with the campaign's cursor under the campaign's row lock, so a run picks
up after the last page any run planned, and misses nobody. An A/B test's audience is split by a
keyed hash into the test portion, planned first and split between the variants by their weights,
and the rest, planned with the winner once there is one (tasks.campaign_winner).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy.orm import Session

from db import campaigns, outbox, queries, segments
from db.events import CampaignStatus, Category
from db.models import EmailCampaign
from db.session import transaction
from tasks.abtest import assign_variant
from tasks.plan import DB_RETRIES, local_day
from tasks.recipients import AUDIENCES, preference_skip
from tutormax.logs import run_logger
from tutormax.settings import get_settings

PAGE = 5000
TEST, REST, ALL, DONE = "test", "rest", "all", "done"


def first_phase(campaign: EmailCampaign) -> str:
    return TEST if campaign.ab_test_enabled else ALL


def portion(campaign: EmailCampaign, who: str, secret: bytes) -> str:
    """TEST or REST for an A/B campaign's recipient (a keyed hash: the same every run), ALL without a test."""
    if not campaign.ab_test_enabled:
        return ALL
    fraction = campaign.ab_test_fraction or 0.0
    return assign_variant(who, f"{campaign.campaign_id}.portion", {TEST: fraction, REST: 1 - fraction}, secret)


def variant_for(campaign: EmailCampaign, who: str, phase: str, secret: bytes) -> str:
    """What this recipient is sent: a or b by the weights in the test, the winner after it, a without a test."""
    if phase == TEST:
        weights = {"a": campaign.ab_variant_a_weight, "b": campaign.ab_variant_b_weight}
        return assign_variant(who, campaign.campaign_id, weights, secret)
    if phase == REST:
        if not campaign.ab_winner:
            raise ValueError(f"campaign {campaign.campaign_id}: the rest is planned only once there is a winner")
        return campaign.ab_winner
    return "a"


def page_messages(session: Session, campaign: EmailCampaign, part: segments.Part, rows, phase: str | None,
                  now: datetime, secret: bytes) -> list[tuple[str, outbox.PlannedMessage]]:
    """A page of the segment's rows as (portion, message) for this phase (every portion's when phase is None)."""
    audience = AUDIENCES[part.audience]
    today = local_day(now)
    recipients = [audience.resolve(row, today) for row in rows]
    prefs = queries.preferences_for(session, [r.email for r in recipients if r.email])
    category = Category(campaign.category)
    cid = campaign.campaign_id
    metadata: dict[str | None, dict[str, Any]] = {}  # one per variant, shared by its messages
    found = []
    for recipient in recipients:
        address = recipient.email.lower() if recipient.email else None
        who = address or f"{recipient.type}:{recipient.id}"
        share = portion(campaign, who, secret) if campaign.ab_test_enabled else ALL
        if phase is not None and share != phase:
            continue
        variant = variant_for(campaign, who, share, secret) if share != REST or campaign.ab_winner else None
        skip = recipient.skip_reason or (preference_skip(prefs[address], category) if address in prefs else None)
        found.append((share, outbox.PlannedMessage(
            workflow_type=None, entity_type=None, entity_id=None, step=None,
            key=f"campaign:{cid}:{hashlib.sha256(who.encode()).hexdigest()[:24]}",
            template_type=campaign.template_type, template_version=campaign.template_version,
            category=campaign.category, recipient_type=recipient.type, recipient_email=recipient.email,
            recipient_name=recipient.name, recipient_id=recipient.id, campaign_id=cid,
            ab_variant=variant if share == TEST else None, priority=campaign.priority, skip_reason=skip,
            metadata=metadata.get(variant) or metadata.setdefault(variant, {"campaign_id": cid, "variant": variant}))))
    return found


@dataclass
class Planned:
    """What planning one campaign did this run."""

    campaign_id: str
    pages: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    stopped: str | None = None  # why it stopped before the end: paused, cancelled, waiting for a winner


def _scope(campaign: EmailCampaign, now: datetime) -> segments.Scope:
    return segments.Scope(campaign.campaign_id, campaign.segment_value, now)


@dataclass
class Page:
    """One page read ahead: the cursor it starts from, the messages, the cursor after it."""

    start: dict[str, Any]
    after: dict[str, Any]
    messages: list[outbox.PlannedMessage]
    more: bool  # another page may follow now
    stopped: str | None = None


def _initial_state(campaign: EmailCampaign) -> dict[str, Any]:
    return dict(campaign.plan_state or {}) or {"phase": first_phase(campaign), "part": 0, "after": 0}


def read_page(campaign_id: str, now: datetime, page_size: int, state: dict[str, Any] | None) -> Page | None:
    """Read the page at a cursor (the stored one when None) and what planning it would write; None: nothing to do."""
    secret = get_settings().secret_bytes()
    with transaction() as session:
        campaign = campaigns.by_id(session, campaign_id)
        if campaign is None:
            return None
        state = dict(state) if state is not None else _initial_state(campaign)
        if campaign.status != CampaignStatus.SENDING:  # the write says why, under the lock
            return Page(state, state, [], more=False)
        if state["phase"] == DONE:
            return None
        if state["phase"] == REST and not campaign.ab_winner:
            return Page(state, state, [], more=False, stopped="waiting for the A/B winner")
        parts = segments.get(campaign.segment).parts
        part = parts[state["part"]]
        rows = part.query(session, _scope(campaign, now), state["after"], page_size)
        messages = [m for _, m in page_messages(session, campaign, part, rows, state["phase"], now, secret)]
        session.rollback()  # read only
    after = dict(state, after=rows[-1].key) if rows else dict(state)
    if len(rows) < page_size:  # this part is through: the next part, phase, or the end
        after.update(part=state["part"] + 1, after=0)
        if after["part"] == len(parts):
            after.update(phase=REST if state["phase"] == TEST else DONE, part=0)
    return Page(state, after, messages, more=after["phase"] != DONE)


def write_page(campaign_id: str, page: Page, now: datetime, result: Planned) -> bool:
    """Plan a page read ahead, under the campaign's row lock, if the campaign still sends from its cursor."""
    with transaction() as session:
        campaign = campaigns.locked(session, campaign_id)
        if campaign.status != CampaignStatus.SENDING:
            result.stopped = campaign.status
            return False
        if _initial_state(campaign) != page.start:
            return False  # an overlapping run planned this page first: it goes on from there
        if page.messages:
            counts = outbox.plan(session, page.messages, now)
            result.counts.update({"queued": counts.queued, "skipped": counts.skipped,
                                  "already_planned": counts.already_planned})
            result.pages += 1
        campaign.plan_state = page.after
        if page.after["phase"] == DONE:
            campaign.planned_at = now
    result.stopped = result.stopped or page.stopped
    return page.more


@task(name="plan-campaign", cache_policy=NO_CACHE, **DB_RETRIES)
def plan_campaign(campaign_id: str, now: datetime, page_size: int = PAGE) -> dict[str, Any]:
    """Plan a sending campaign's audience into the outbox, page by page, as far as it can go now."""
    # the next page is read and made while the last one is written: the database's work and ours overlap
    result = Planned(campaign_id)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="plan-writer") as writer:
        page = read_page(campaign_id, now, page_size, None)
        while page is not None:
            written = writer.submit(write_page, campaign_id, page, now, result)
            following = read_page(campaign_id, now, page_size, page.after) if page.more else None
            page = following if written.result() else None
    run_logger().info("campaign %s: planned %d page(s) %s%s", campaign_id, result.pages, dict(result.counts),
                      f"; stopped: {result.stopped}" if result.stopped else "")
    return {"campaign_id": campaign_id, "pages": result.pages, **result.counts, "stopped": result.stopped}


def preview(campaign_id: str, now: datetime, page_size: int = PAGE) -> dict[str, Any]:
    """Who would get it now, without writing: recipients, how many it goes to, and who is excluded and why."""
    secret = get_settings().secret_bytes()
    seen: set[int] = set()
    excluded: Counter[str] = Counter()
    shares: Counter[str] = Counter()
    total = duplicates = 0
    with transaction() as session:
        campaign = campaigns.locked(session, campaign_id)
        scope = _scope(campaign, now)
        for part in segments.get(campaign.segment).parts:
            after = 0
            while rows := part.query(session, scope, after, page_size):
                after = rows[-1].key
                for share, message in page_messages(session, campaign, part, rows, None, now, secret):
                    total += 1
                    # a 64-bit digest per recipient: a million of them is tens of megabytes, not the addresses
                    digest = int.from_bytes(hashlib.blake2b(message.idempotency_key.encode(), digest_size=8).digest())
                    if digest in seen:
                        duplicates += 1
                        continue
                    seen.add(digest)
                    if message.skip_reason:
                        excluded[message.skip_reason] += 1
                    else:
                        shares[share] += 1
        unknown = segments.unknown_members(session, campaign_id) if campaign.segment == "csv" else {}
        segment, value = campaign.segment, campaign.segment_value
        session.rollback()
    return {"campaign_id": campaign_id, "segment": segment, "segment_value": value, "found": total, "same_address_twice": duplicates, "recipients": sum(shares.values()),
            "excluded": dict(excluded.most_common()), "portions": dict(shares), "unknown_ids": unknown}
