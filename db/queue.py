"""The outbox seen as a mail queue: what waits, what is oldest, when the next retry is, which claims look stuck."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.events import CampaignStatus, MessageStatus
from db.models import EmailCampaign, EmailMessage

UNFINISHED = (MessageStatus.QUEUED, MessageStatus.DEFERRED, MessageStatus.SENDING)


@dataclass(frozen=True)
class QueueState:
    """The queue at one moment (only unfinished messages: sent, failed and skipped ones are history)."""

    at: datetime
    counts: list[tuple[str, str, int, int]]  # status, template type, priority rank, messages
    due: int                                 # messages a runner would claim now
    oldest_due: tuple[int, str, datetime] | None  # message id, template type, planned at
    next_retry: datetime | None              # the earliest deferred message's next attempt after now
    stuck: list[tuple[int, str, datetime]]   # claims older than the lease: message id, type, claimed at
    held: list[tuple[str, int]]              # paused campaigns and how many of their messages they hold


def state(session: Session, now: datetime, wall_clock: datetime, lease: timedelta) -> QueueState:
    """The queue as of now (due, retries) and the wall clock (claims and their lease)."""
    m, c = EmailMessage, EmailCampaign
    counts = session.execute(
        select(m.status, m.template_type, m.priority, func.count())
        .where(m.status.in_(UNFINISHED))
        .group_by(m.status, m.template_type, m.priority)
        .order_by(m.priority, m.template_type, m.status)).all()
    # status IN (...) first: it lets the planner read only the partial index of unfinished messages
    unfinished = m.status.in_(UNFINISHED)
    due = unfinished & ((m.status == MessageStatus.QUEUED)
                        | ((m.status == MessageStatus.DEFERRED) & (m.next_attempt_at <= now)))
    # ids grow with planning time: the lowest due id is the oldest due message
    oldest = session.execute(select(m.message_id, m.template_type, m.created_at).where(due)
                             .order_by(m.message_id).limit(1)).first()
    return QueueState(
        at=now,
        counts=[(status, template, int(priority), int(n)) for status, template, priority, n in counts],
        due=session.scalar(select(func.count()).select_from(m).where(due)) or 0,
        oldest_due=tuple(oldest) if oldest else None,
        next_retry=session.scalar(select(func.min(m.next_attempt_at))
                                  .where(m.status == MessageStatus.DEFERRED, m.next_attempt_at > now)),
        stuck=[tuple(row) for row in session.execute(
            select(m.message_id, m.template_type, m.claimed_at)
            .where(m.status == MessageStatus.SENDING, m.claimed_at < wall_clock - lease)
            .order_by(m.claimed_at).limit(20))],
        # through the paused campaigns (a few) and the campaign index, not a scan of every message
        held=[(cid, int(n)) for cid, n in session.execute(
            select(c.campaign_id, func.count()).join(m, m.campaign_id == c.campaign_id)
            .where(c.status == CampaignStatus.PAUSED, m.status == MessageStatus.HELD)
            .group_by(c.campaign_id).order_by(c.campaign_id))],
    )
