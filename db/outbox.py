"""The outbox: plan messages under unique keys, claim them for delivery, record outcomes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.events import EventType, MessageStatus, WorkflowStatus
from db.models import EmailMessage, EmailPreference, EmailTrackingEvent, EmailWorkflowState
from db.session import is_postgres

# A claim older than this is taken to be from a worker that died mid-batch.
CLAIM_LEASE = timedelta(minutes=15)
MAX_RETRIES = 3
FIRST_RETRY_DELAY = timedelta(seconds=60)


@dataclass
class PlannedMessage:
    """One email for one reason, before it exists in the database."""

    workflow_type: str
    entity_type: str
    entity_id: int
    step: str
    template_type: str
    category: str
    recipient_type: str
    recipient_email: str | None
    recipient_name: str | None
    recipient_id: int | None
    template_version: str = "v1"
    ab_variant: str | None = None
    priority: int = 2
    skip_reason: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def idempotency_key(self) -> str:
        return f"{self.workflow_type}:{self.entity_type}:{self.entity_id}:{self.step}"


@dataclass
class PlanCounts:
    queued: int = 0
    skipped: int = 0
    already_planned: int = 0


def _insert(session: Session, model):
    return (postgresql.insert if is_postgres(session) else sqlite.insert)(model)


def plan(session: Session, planned: Sequence[PlannedMessage], now: datetime) -> PlanCounts:
    """Insert messages and workflow state; a reason planned before is a no-op (insert-or-ignore)."""
    counts = PlanCounts()
    if not planned:
        return counts
    rows = [
        {
            "idempotency_key": p.idempotency_key,
            "recipient_email": p.recipient_email,
            "recipient_name": p.recipient_name,
            "recipient_id": p.recipient_id,
            "recipient_type": p.recipient_type,
            "template_type": p.template_type,
            "template_version": p.template_version,
            "ab_variant": p.ab_variant,
            "category": p.category,
            "status": MessageStatus.SKIPPED if p.skip_reason else MessageStatus.QUEUED,
            "skip_reason": p.skip_reason,
            "priority": p.priority,
            "scheduled_at": now,
            "message_metadata": p.metadata,
            "retry_count": 0,
            "open_count": 0,
            "click_count": 0,
            "created_at": now,
            "updated_at": now,
        }
        for p in planned
    ]
    stmt = (
        _insert(session, EmailMessage)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(EmailMessage.message_id, EmailMessage.idempotency_key)
    )
    inserted = {key: mid for mid, key in session.execute(stmt, rows).all()}
    states = []
    for p in planned:
        message_id = inserted.get(p.idempotency_key)
        if message_id is None:
            counts.already_planned += 1
            continue
        if p.skip_reason:
            counts.skipped += 1
        else:
            counts.queued += 1
        states.append(
            {
                "workflow_type": p.workflow_type,
                "entity_type": p.entity_type,
                "entity_id": p.entity_id,
                "step": p.step,
                "status": WorkflowStatus.CANCELLED if p.skip_reason else WorkflowStatus.TRIGGERED,
                "trigger_at": now,
                "triggered_at": now,
                "message_id": message_id,
                "context_data": {"skip_reason": p.skip_reason} if p.skip_reason else {},
                "created_at": now,
                "updated_at": now,
            }
        )
    if states:
        session.execute(
            _insert(session, EmailWorkflowState).on_conflict_do_nothing(
                index_elements=["workflow_type", "entity_type", "entity_id", "step"]
            ),
            states,
        )
    return counts


def _due(now: datetime):
    return or_(
        EmailMessage.status == MessageStatus.QUEUED,
        and_(EmailMessage.status == MessageStatus.DEFERRED, EmailMessage.next_attempt_at <= now),
        and_(EmailMessage.status == MessageStatus.SENDING, EmailMessage.claimed_at < now - CLAIM_LEASE),
    )


def claim(
    session: Session, now: datetime, limit: int, token: str, template_types: Sequence[str] | None = None
) -> list[EmailMessage]:
    """Claim up to limit due messages for one delivery batch; concurrent claimers never share one."""
    ids_query = (
        select(EmailMessage.message_id)
        .where(_due(now))
        .order_by(EmailMessage.priority, EmailMessage.message_id)
        .limit(limit)
    )
    if template_types:
        ids_query = ids_query.where(EmailMessage.template_type.in_(template_types))
    if is_postgres(session):
        ids_query = ids_query.with_for_update(skip_locked=True)
    ids = list(session.scalars(ids_query))
    if not ids:
        return []
    # re-checking "due" in the UPDATE makes the claim safe even where SKIP LOCKED is unavailable
    session.execute(
        update(EmailMessage)
        .where(EmailMessage.message_id.in_(ids), _due(now))
        .values(status=MessageStatus.SENDING, claim_token=token, claimed_at=now),
        execution_options={"synchronize_session": False},
    )
    return list(
        session.scalars(
            select(EmailMessage)
            .where(EmailMessage.claim_token == token, EmailMessage.status == MessageStatus.SENDING)
            .order_by(EmailMessage.priority, EmailMessage.message_id)
        )
    )


def release(session: Session, token: str) -> int:
    """Put a batch's unsent messages back in the queue (the SMTP server was unreachable)."""
    result = session.execute(
        update(EmailMessage)
        .where(EmailMessage.claim_token == token, EmailMessage.status == MessageStatus.SENDING)
        .values(status=MessageStatus.QUEUED, claim_token=None, claimed_at=None),
        execution_options={"synchronize_session": False},
    )
    return result.rowcount


def _event(session: Session, message_id: int, event_type: EventType, now: datetime, data: dict[str, Any]) -> None:
    session.add(EmailTrackingEvent(message_id=message_id, event_type=event_type, event_time=now, event_data=data, created_at=now))


def mark_sent(session: Session, message: EmailMessage, now: datetime, subject: str, response: str) -> None:
    message.status = MessageStatus.SENT
    message.subject = subject
    message.sent_at = now
    message.smtp_response = response
    message.claim_token = None
    _event(session, message.message_id, EventType.SENT, now, {"smtp_response": response})


def mark_deferred(session: Session, message: EmailMessage, now: datetime, code: int, response: str) -> None:
    """A 4xx: retry later with exponential backoff (60 s, 120 s, 240 s), then give up."""
    message.smtp_response = f"{code} {response}"
    message.claim_token = None
    if message.retry_count >= MAX_RETRIES:
        mark_failed(session, message, now, f"gave up after {MAX_RETRIES} retries; last answer {code} {response}")
        return
    message.retry_count += 1
    message.status = MessageStatus.DEFERRED
    message.next_attempt_at = now + FIRST_RETRY_DELAY * (2 ** (message.retry_count - 1))
    _event(session, message.message_id, EventType.DEFERRED, now, {"smtp_code": code, "smtp_response": response, "retry": message.retry_count})


def mark_failed(session: Session, message: EmailMessage, now: datetime, reason: str) -> None:
    message.status = MessageStatus.FAILED
    message.failed_at = now
    message.failure_reason = reason
    message.claim_token = None
    _event(session, message.message_id, EventType.FAILED, now, {"reason": reason})


def mark_bounced(session: Session, message: EmailMessage, now: datetime, code: int, response: str) -> None:
    """A 5xx: a hard bounce; the address is suppressed and never retried."""
    message.status = MessageStatus.FAILED
    message.failed_at = message.bounced_at = now
    message.bounce_type = "hard"
    message.bounce_reason = message.failure_reason = f"{code} {response}"
    message.smtp_response = f"{code} {response}"
    message.claim_token = None
    _event(session, message.message_id, EventType.BOUNCED, now, {"smtp_code": code, "smtp_response": response, "bounce_type": "hard"})
    if message.recipient_email:
        suppress(session, message.recipient_email, f"hard bounce: {code} {response}", now)


def suppress(session: Session, email: str, reason: str, now: datetime) -> None:
    """Mark an address undeliverable for every category (upsert on the unique email)."""
    stmt = _insert(session, EmailPreference).values(
        email=email.lower(), suppressed=True, suppression_reason=reason, suppressed_at=now, created_at=now, updated_at=now
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["email"], set_={"suppressed": True, "suppression_reason": reason, "suppressed_at": now, "updated_at": now}
    )
    session.execute(stmt)
