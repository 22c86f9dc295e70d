"""Campaigns in the database: create, move through the lifecycle (checked and recorded), count from the messages."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, case, exists, func, select, update
from sqlalchemy.orm import Session

from db.analytics import human_engagement
from db.events import (
    PRIORITY_RANK,
    BounceType,
    CampaignStatus,
    CampaignType,
    EventType,
    MessageStatus,
    SkipReason,
)
from db.models import EmailCampaign, EmailCampaignTransition, EmailMessage, EmailTrackingEvent
from db.session import is_postgres

S = CampaignStatus
# what may follow what; scheduled -> scheduled is a new time, paused -> scheduled a resume before the start
TRANSITIONS: dict[str, set[str]] = {
    S.DRAFT: {S.SCHEDULED, S.CANCELLED},
    S.SCHEDULED: {S.SCHEDULED, S.SENDING, S.PAUSED, S.CANCELLED},
    S.SENDING: {S.PAUSED, S.COMPLETED, S.CANCELLED},
    S.PAUSED: {S.SCHEDULED, S.SENDING, S.CANCELLED},
    S.COMPLETED: set(),
    S.CANCELLED: set(),
}
_VERBS = {S.SCHEDULED: "scheduled", S.SENDING: "started", S.PAUSED: "paused", S.COMPLETED: "completed",
          S.CANCELLED: "cancelled"}
_UNSENT = (MessageStatus.QUEUED, MessageStatus.DEFERRED, MessageStatus.HELD)
_UNFINISHED = (*_UNSENT, MessageStatus.SENDING)
GUARD_ACTOR = "reputation-guard"


class CampaignError(ValueError):
    """An operator's request that cannot be done: no such campaign, or not from its status; the message says why."""


def newest(session: Session, limit: int = 500) -> Sequence[EmailCampaign]:
    """Campaigns, newest first."""
    return session.scalars(select(EmailCampaign).order_by(EmailCampaign.created_at.desc()).limit(limit)).all()


def by_id(session: Session, campaign_id: str) -> EmailCampaign | None:
    return session.get(EmailCampaign, campaign_id)


def locked(session: Session, campaign_id: str) -> EmailCampaign:
    """The campaign, its row locked until the transaction ends (PostgreSQL; SQLite has one writer anyway)."""
    campaign = session.get(EmailCampaign, campaign_id, with_for_update=is_postgres(session), populate_existing=True)
    if campaign is None:
        raise CampaignError(f"no campaign {campaign_id!r} (tutormax campaign list shows them)")
    return campaign


def content(session: Session, campaign_id: str) -> dict[str, dict[str, str]]:
    """A campaign's words per variant: {"a": {"subject", "preheader", "body_markdown"}, "b": ...}; {} if none."""
    return session.scalar(select(EmailCampaign.content).where(EmailCampaign.campaign_id == campaign_id)) or {}


def new_id(name: str) -> str:
    """A readable id: the name's first words as a slug and a random suffix ("spring-hours-3f9a1c")."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].rstrip("-") or "campaign"
    return f"{slug}-{secrets.token_hex(3)}"


def add(session: Session, campaign: EmailCampaign, *, actor: str, at: datetime) -> EmailCampaign:
    """Store a new campaign (a draft) with its first transition."""
    campaign.status = S.DRAFT
    campaign.created_by, campaign.created_at, campaign.updated_at = actor, at, at
    session.add(campaign)
    session.flush()
    session.add(EmailCampaignTransition(campaign_id=campaign.campaign_id, from_status=None, to_status=S.DRAFT,
                                        actor=actor, at=at))
    return campaign


def transition(session: Session, campaign: EmailCampaign, to: str, *, actor: str, at: datetime,
               reason: str | None = None) -> None:
    """Move a (locked) campaign to a new status if its lifecycle allows it, and record who and when."""
    if to not in TRANSITIONS.get(campaign.status, set()):
        raise CampaignError(f"campaign {campaign.campaign_id} is {campaign.status}: it cannot be {_VERBS.get(to, to)}"
                            + (" (it is final)" if not TRANSITIONS.get(campaign.status) else ""))
    session.add(EmailCampaignTransition(campaign_id=campaign.campaign_id, from_status=campaign.status, to_status=to,
                                        actor=actor, reason=reason, at=at))
    campaign.status = to
    campaign.updated_at = at


def transitions(session: Session, campaign_id: str) -> Sequence[EmailCampaignTransition]:
    """A campaign's history, oldest first."""
    t = EmailCampaignTransition
    return session.scalars(select(t).where(t.campaign_id == campaign_id).order_by(t.id)).all()


def _messages(campaign_id: str):
    return and_(EmailMessage.campaign_id == campaign_id)


def hold(session: Session, campaign_id: str, at: datetime) -> int:
    """Take a paused campaign's unsent messages out of the queue (claimed ones finish their send)."""
    m = EmailMessage
    return session.execute(update(m).where(_messages(campaign_id), m.status.in_([MessageStatus.QUEUED,
                                                                                  MessageStatus.DEFERRED]))
                           .values(status=MessageStatus.HELD, updated_at=at),
                           execution_options={"synchronize_session": False}).rowcount


def unhold(session: Session, campaign_id: str, at: datetime) -> int:
    """Put a resumed campaign's held messages back: retried ones as deferred (their next attempt kept), the rest queued."""
    m = EmailMessage
    return session.execute(update(m).where(_messages(campaign_id), m.status == MessageStatus.HELD).values(
        status=case((m.retry_count > 0, MessageStatus.DEFERRED.value), else_=MessageStatus.QUEUED.value),
        updated_at=at), execution_options={"synchronize_session": False}).rowcount


def skip_unsent(session: Session, campaign_id: str, at: datetime) -> int:
    """A cancelled campaign's unsent messages: skipped, with the reason campaign_cancelled."""
    m = EmailMessage
    return session.execute(update(m).where(_messages(campaign_id), m.status.in_(_UNSENT)).values(
        status=MessageStatus.SKIPPED, skip_reason=SkipReason.CAMPAIGN_CANCELLED, claim_token=None, updated_at=at),
        execution_options={"synchronize_session": False}).rowcount


def due(session: Session, now: datetime) -> list[str]:
    """Campaigns the scheduler has work on: announcements scheduled by now, and those sending."""
    c = EmailCampaign
    return list(session.scalars(select(c.campaign_id).where(
        c.campaign_type == CampaignType.ANNOUNCEMENT,
        ((c.status == S.SCHEDULED) & (c.scheduled_at <= now)) | (c.status == S.SENDING))
        .order_by(c.priority, c.scheduled_at, c.campaign_id)))


def unfinished(session: Session, campaign_id: str, *, test_only: bool = False) -> bool:
    """Whether any of the campaign's messages (or its test portion's) is not final yet."""
    m = EmailMessage
    where = [_messages(campaign_id), m.status.in_(_UNFINISHED)]
    if test_only:
        where.append(m.ab_variant.is_not(None))
    return bool(session.scalar(select(exists().where(*where))))


def test_finished(session: Session, campaign_id: str) -> datetime | None:
    """When the test portion's last message became final (sent or failed), None if none did."""
    m = EmailMessage
    return session.scalar(select(func.max(func.coalesce(m.sent_at, m.failed_at))).where(
        _messages(campaign_id), m.ab_variant.is_not(None)))


def to_send(session: Session, campaign_id: str, cap: int) -> int:
    """How many of its messages are meant to go (not skipped), counted up to cap."""
    m = EmailMessage
    some = select(m.message_id).where(_messages(campaign_id), m.status != MessageStatus.SKIPPED).limit(cap).subquery()
    return int(session.scalar(select(func.count()).select_from(some)))


COUNTS = ("recipients", "planned", "queued", "held", "sent", "deferred", "failed", "bounced", "skipped",
          "delivered", "opened", "clicked", "unsubscribed", "complained")


def _count_columns(h) -> tuple[Any, ...]:
    m = EmailMessage

    def where(condition):
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    return (func.count().label("recipients"),
            where(m.status != MessageStatus.SKIPPED).label("planned"),
            where(m.status.in_([MessageStatus.QUEUED, MessageStatus.SENDING])).label("queued"),
            where(m.status == MessageStatus.HELD).label("held"),
            where(m.status == MessageStatus.SENT).label("sent"),
            where(m.status == MessageStatus.DEFERRED).label("deferred"),
            where(m.status == MessageStatus.FAILED).label("failed"),
            where(m.bounced_at.is_not(None)).label("bounced"),
            where(m.status == MessageStatus.SKIPPED).label("skipped"),
            where((m.status == MessageStatus.SENT) & m.bounced_at.is_(None)).label("delivered"),
            func.coalesce(func.sum(h.c.human_opened), 0).label("opened"),
            func.coalesce(func.sum(h.c.human_clicked), 0).label("clicked"),
            where(m.unsubscribed_at.is_not(None)).label("unsubscribed"),
            func.coalesce(func.sum(h.c.complained), 0).label("complained"))


def counts(session: Session, campaign: EmailCampaign) -> dict[str, int]:
    """What its messages say: recipients (everyone planned, the excluded too), planned (to be sent), sent,
    deferred, failed, bounced, skipped, opened (by a person), clicked, unsubscribed, complained."""
    return counts_of(session, [campaign])[campaign.campaign_id]


def counts_of(session: Session, chosen: Sequence[EmailCampaign]) -> dict[str, dict[str, int]]:
    """counts() of many campaigns in one query, by campaign id (a campaign without messages counts zeros)."""
    m = EmailMessage
    ids = [c.campaign_id for c in chosen]
    found = {cid: dict.fromkeys(COUNTS, 0) for cid in ids}
    if not ids:
        return found
    h = human_engagement(None, campaign_ids=ids)
    rows = session.execute(select(m.campaign_id, *_count_columns(h)).select_from(m)
                           .outerjoin(h, h.c.message_id == m.message_id)
                           .where(m.campaign_id.in_(ids)).group_by(m.campaign_id))
    for row in rows:
        found[row.campaign_id] = {name: int(row._mapping[name]) for name in COUNTS}
    return found


def skip_reasons(session: Session, campaign_id: str) -> dict[str, int]:
    """How many of its recipients were excluded, by reason."""
    m = EmailMessage
    rows = session.execute(select(m.skip_reason, func.count()).where(
        _messages(campaign_id), m.status == MessageStatus.SKIPPED).group_by(m.skip_reason))
    return {reason or "unknown": count for reason, count in rows}


@dataclass(frozen=True)
class Variant:
    """A variant of a campaign's test portion: what the A/B statistics read."""

    variant: str
    sent: int
    delivered: int
    human_opens: int
    clicks: int


def test_portion(session: Session, campaign: EmailCampaign) -> dict[str, Variant]:
    """Per variant of the test portion (the messages with a variant): attempted, delivered, human opens, clicks."""
    m = EmailMessage
    h = human_engagement(None, campaign_ids=[campaign.campaign_id])
    rows = session.execute(
        select(m.ab_variant,
               func.sum(case((m.status.in_([MessageStatus.SENT, MessageStatus.FAILED]), 1), else_=0)),
               func.sum(case(((m.status == MessageStatus.SENT) & m.bounced_at.is_(None), 1), else_=0)),
               func.coalesce(func.sum(h.c.human_opened), 0), func.coalesce(func.sum(h.c.human_clicked), 0))
        .select_from(m).outerjoin(h, h.c.message_id == m.message_id)
        .where(_messages(campaign.campaign_id), m.ab_variant.is_not(None)).group_by(m.ab_variant))
    return {v: Variant(v, int(sent or 0), int(delivered or 0), int(opens), int(clicks))
            for v, sent, delivered, opens, clicks in rows}


@dataclass(frozen=True)
class FirstDeliveries:
    """The reputation guard's window: a campaign's first attempted deliveries and what came of them."""

    attempted: int
    hard_bounced: int
    complained: int


def first_deliveries(session: Session, campaign_id: str, limit: int, *, test_only: bool = False) -> FirstDeliveries:
    """The first `limit` attempted deliveries in send order (message id: the queue's order within a priority)."""
    m, e = EmailMessage, EmailTrackingEvent
    where = [_messages(campaign_id), m.status.in_([MessageStatus.SENT, MessageStatus.FAILED])]
    if test_only:
        where.append(m.ab_variant.is_not(None))
    window = (select(m.message_id, m.bounced_at, m.bounce_type).where(*where).order_by(m.message_id).limit(limit)
              .subquery())
    complained = exists().where(e.message_id == window.c.message_id, e.event_type == EventType.COMPLAINED)
    row = session.execute(select(
        func.count(),
        func.coalesce(func.sum(case((window.c.bounced_at.is_not(None) & (window.c.bounce_type == BounceType.HARD), 1),
                                    else_=0)), 0),
        func.coalesce(func.sum(case((complained, 1), else_=0)), 0)).select_from(window)).one()
    return FirstDeliveries(int(row[0]), int(row[1]), int(row[2]))


def describe(session: Session, campaign: EmailCampaign, counted: dict[str, int] | None = None, *,
             full: bool = True) -> dict[str, Any]:
    """What `campaign show --json` prints and the API returns: the campaign, its counts, its A/B verdict; in full,
    who was excluded and why, and its history."""
    names = {rank: p.value for p, rank in PRIORITY_RANK.items()}
    iso = lambda at: at.isoformat() if at else None  # noqa: E731
    shown = {
        "campaign_id": campaign.campaign_id, "campaign_name": campaign.campaign_name, "type": campaign.campaign_type,
        "status": campaign.status, "segment": campaign.segment, "segment_value": campaign.segment_value,
        "category": campaign.category, "priority": names.get(campaign.priority, campaign.priority),
        "scheduled_at": iso(campaign.scheduled_at), "started_at": iso(campaign.started_at),
        "completed_at": iso(campaign.completed_at), "paused_reason": campaign.paused_reason,
        "counts": counted if counted is not None else counts(session, campaign),
        "subjects": {v: c.get("subject") for v, c in (campaign.content or {}).items()},
        "ab_test": None if not campaign.ab_test_enabled else {
            "fraction": campaign.ab_test_fraction,
            "weights": {"a": campaign.ab_variant_a_weight, "b": campaign.ab_variant_b_weight},
            "winner_after_seconds": campaign.winner_after_seconds, "winner_metric": campaign.winner_metric,
            "fallback": campaign.winner_fallback, "winner": campaign.ab_winner, "verdict": campaign.ab_verdict},
    }
    if full:
        shown["excluded"] = skip_reasons(session, campaign.campaign_id)
        shown["transitions"] = [{"from": t.from_status, "to": t.to_status, "by": t.actor, "at": t.at.isoformat(),
                                 "reason": t.reason} for t in transitions(session, campaign.campaign_id)]
    return shown


def messages_page(session: Session, campaign_id: str, after: int, limit: int) -> Sequence[Row]:
    """A page of a campaign's messages in id order, after the message id `after`."""
    m = EmailMessage
    return session.execute(
        select(m.message_id, m.recipient_type, m.template_type, m.template_version, m.ab_variant, m.status, m.sent_at,
               m.opened_at, m.first_clicked_at, m.open_count, m.click_count)
        .where(m.campaign_id == campaign_id, m.message_id > after).order_by(m.message_id).limit(limit)).all()


def ab_tests(session: Session) -> Sequence[EmailCampaign]:
    """Campaigns that split their messages between variants."""
    return session.scalars(select(EmailCampaign).where(EmailCampaign.ab_test_enabled.is_(True))).all()
