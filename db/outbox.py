"""The outbox: plan messages under unique keys, claim them for delivery, record outcomes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from operator import attrgetter
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import and_, bindparam, exists, insert, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db import suppressions
from db.events import (
    BounceType,
    CampaignStatus,
    EventType,
    MessageStatus,
    SuppressionReason,
    SuppressionSource,
    WorkflowStatus,
)
from db.models import EmailCampaign, EmailMessage, EmailTrackingEvent, EmailWorkflowState, Feedback
from db.copy import copy_into_temp
from db.session import is_postgres
from db.types import UTCDateTime

MAX_RETRIES = 3
FIRST_RETRY_DELAY = timedelta(seconds=60)


@dataclass
class PlannedMessage:
    """One email for one reason, before it exists in the database."""

    workflow_type: str | None  # None, with a key of its own: no workflow state (a campaign's message)
    entity_type: str | None
    entity_id: int | None
    step: str | None
    template_type: str
    category: str
    recipient_type: str
    recipient_email: str | None
    recipient_name: str | None
    recipient_id: int | None
    template_version: str = "v1"
    ab_variant: str | None = None
    campaign_id: str | None = None
    priority: int = 2
    skip_reason: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    key: str | None = None  # a key of its own (a campaign's, per recipient) instead of the workflow's

    @property
    def idempotency_key(self) -> str:
        return self.key or f"{self.workflow_type}:{self.entity_type}:{self.entity_id}:{self.step}"


@dataclass
class PlanCounts:
    queued: int = 0
    skipped: int = 0
    already_planned: int = 0


def _insert(session: Session, model):
    return (postgresql.insert if is_postgres(session) else sqlite.insert)(model)


# A planned message's columns, named as on both its PlannedMessage and email_messages, with the type
# its PostgreSQL COPY column takes (text when not listed); the workflow state's the same. Both write
# paths are derived from these lists, so a new column is one edit here.
_MESSAGE_FIELDS = ("idempotency_key", "recipient_email", "recipient_name", "recipient_id", "recipient_type",
                   "template_type", "template_version", "ab_variant", "campaign_id", "category", "skip_reason",
                   "priority", "metadata")
_STATE_FIELDS = ("workflow_type", "entity_type", "entity_id", "step")
_COPY_TYPES = {"recipient_id": "bigint", "priority": "integer", "metadata": "jsonb", "entity_id": "bigint"}
# what every new message starts with besides its planned values (status and times depend on the plan)
_NEW_MESSAGE = {"retry_count": 0, "open_count": 0, "click_count": 0}


def _values(p: PlannedMessage, fields: Sequence[str]) -> dict[str, Any]:
    values = {name: getattr(p, name) for name in fields}
    if "skip_reason" in values:
        values["skip_reason"] = values["skip_reason"] or None
    return values


def plan(session: Session, planned: Sequence[PlannedMessage], now: datetime) -> PlanCounts:
    """Insert messages and workflow state; a reason planned before is a no-op (insert-or-ignore)."""
    counts = PlanCounts()
    if not planned:
        return counts
    if is_postgres(session):
        return _plan_by_copy(session, planned, now)
    rows = [{**_values(p, _MESSAGE_FIELDS), **_NEW_MESSAGE, "status": _status(p), "scheduled_at": now,
             "created_at": now, "updated_at": now} for p in planned]
    # Core inserts on the tables: the ORM's bulk path costs several times more per row
    messages = EmailMessage.__table__
    stmt = (
        _insert(session, messages)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(messages.c.message_id, messages.c.idempotency_key)
    )
    inserted = {key: mid for mid, key in session.execute(stmt, rows).all()}
    states = []
    for p in planned:
        message_id = inserted.pop(p.idempotency_key, None)  # a reason twice in one batch counts once
        if message_id is None:
            counts.already_planned += 1
            continue
        if p.skip_reason:
            counts.skipped += 1
        else:
            counts.queued += 1
        if p.workflow_type is None:
            continue
        states.append({**_values(p, _STATE_FIELDS), "status": _state_status(p), "trigger_at": now,
                       "triggered_at": now, "message_id": message_id,
                       "context_data": {"skip_reason": p.skip_reason} if p.skip_reason else {},
                       "created_at": now, "updated_at": now})
    if states:
        session.execute(
            _insert(session, EmailWorkflowState.__table__).on_conflict_do_nothing(
                index_elements=["workflow_type", "entity_type", "entity_id", "step"]
            ),
            states,
        )
    return counts


def _status(p: PlannedMessage) -> MessageStatus:
    return MessageStatus.SKIPPED if p.skip_reason else MessageStatus.QUEUED


def _state_status(p: PlannedMessage) -> WorkflowStatus:
    return WorkflowStatus.CANCELLED if p.skip_reason else WorkflowStatus.TRIGGERED


_PLANNED_COLUMNS = (("ord", "integer"), *((f, _COPY_TYPES.get(f, "text")) for f in _MESSAGE_FIELDS + _STATE_FIELDS))
_NEW_COLUMNS = ", ".join(_NEW_MESSAGE)
_NEW_VALUES = ", ".join(map(str, _NEW_MESSAGE.values()))

# Both tables from the copied rows in one statement; a reason planned before inserts nothing.
_PLAN_FROM_COPY = text(f"""
WITH inserted AS (
    INSERT INTO email_messages ({", ".join(_MESSAGE_FIELDS)}, status, scheduled_at, {_NEW_COLUMNS}, created_at,
        updated_at)
    SELECT {", ".join(_MESSAGE_FIELDS)}, CASE WHEN skip_reason IS NULL THEN :queued ELSE :skipped END,
        :now, {_NEW_VALUES}, :now, :now
    FROM planned_outbox ORDER BY ord
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING message_id, idempotency_key, skip_reason
), states AS (
    INSERT INTO email_workflow_state ({", ".join(_STATE_FIELDS)}, status, trigger_at, triggered_at, message_id,
        context_data, created_at, updated_at)
    SELECT {", ".join("p." + f for f in _STATE_FIELDS)},
        CASE WHEN p.skip_reason IS NULL THEN :triggered ELSE :cancelled END, :now, :now, i.message_id,
        CASE WHEN p.skip_reason IS NULL THEN '{{}}'::jsonb ELSE jsonb_build_object('skip_reason', p.skip_reason) END,
        :now, :now
    FROM inserted i
    -- a reason planned twice in one batch: the state comes from the copy that was inserted (the first)
    JOIN (SELECT DISTINCT ON (idempotency_key) * FROM planned_outbox ORDER BY idempotency_key, ord) p
        USING (idempotency_key)
    WHERE p.workflow_type IS NOT NULL  -- a message with a key of its own has no workflow state
    ON CONFLICT (workflow_type, entity_type, entity_id, step) DO NOTHING
)
SELECT count(*) FILTER (WHERE skip_reason IS NULL), count(*) FILTER (WHERE skip_reason IS NOT NULL) FROM inserted
""").bindparams(bindparam("now", type_=UTCDateTime()))


_PLANNED_VALUES = attrgetter(*_MESSAGE_FIELDS, *_STATE_FIELDS)
_SKIP_REASON = _MESSAGE_FIELDS.index("skip_reason")


def _plan_by_copy(session: Session, planned: Sequence[PlannedMessage], now: datetime) -> PlanCounts:
    """PostgreSQL: COPY the planned rows into a temporary table and insert both tables from it."""

    def row(i: int, p: PlannedMessage) -> tuple:
        values = _PLANNED_VALUES(p)  # what _values gives, at C speed: a million-recipient campaign is this loop
        if values[_SKIP_REASON] == "":
            values = (*values[:_SKIP_REASON], None, *values[_SKIP_REASON + 1:])
        return (i, *values)

    copy_into_temp(session, "planned_outbox", _PLANNED_COLUMNS, (row(i, p) for i, p in enumerate(planned)))
    queued, skipped = session.execute(_PLAN_FROM_COPY, {
        "now": now, "queued": MessageStatus.QUEUED.value, "skipped": MessageStatus.SKIPPED.value,
        "triggered": WorkflowStatus.TRIGGERED.value, "cancelled": WorkflowStatus.CANCELLED.value,
    }).one()
    return PlanCounts(queued=queued, skipped=skipped, already_planned=len(planned) - queued - skipped)


def _due(now: datetime, expired_before: datetime):
    m, c = EmailMessage, EmailCampaign
    # a paused or cancelled campaign's messages were held or skipped with it, but for a claim a dead
    # worker left behind: that one stays where it is rather than leave after the campaign stopped
    stopped = exists().where(c.campaign_id == m.campaign_id,
                             c.status.in_([CampaignStatus.PAUSED, CampaignStatus.CANCELLED]))
    return or_(
        m.status == MessageStatus.QUEUED,
        and_(m.status == MessageStatus.DEFERRED, m.next_attempt_at <= now),
        and_(m.status == MessageStatus.SENDING, m.claimed_at < expired_before,
             or_(m.campaign_id.is_(None), ~stopped)),
    )


@dataclass(frozen=True, slots=True)
class Claimed:
    """What delivery needs of one claimed message (plain values: cheaper than loading ORM objects)."""

    message_id: int
    idempotency_key: str
    priority: int
    template_type: str
    template_version: str
    ab_variant: str | None
    recipient_email: str | None
    recipient_name: str | None
    message_metadata: dict[str, Any]
    retry_count: int
    category: str


def claim(
    session: Session, now: datetime, limit: int, token: str, template_types: Sequence[str] | None = None, *,
    lease: timedelta = timedelta(minutes=15), wall_clock: datetime | None = None,
) -> list[Claimed]:
    """Claim up to limit due messages, by priority then age; concurrent claimers never share one.

    Due is judged at the run's `now` (a backfill's past, a test's fixed instant). A claim is stamped
    and its lease judged on the wall clock, always: a backfill's old `now` would otherwise write claims
    every other runner took for long expired, and send their messages again. A claim older than
    `lease` is taken to be from a worker that died mid-batch.
    """
    wall = wall_clock or datetime.now(timezone.utc)
    due = _due(now, wall - lease)
    ids_query = (
        select(EmailMessage.message_id)
        .where(due)
        .order_by(EmailMessage.priority, EmailMessage.message_id)
        .limit(limit)
    )
    if template_types:
        ids_query = ids_query.where(EmailMessage.template_type.in_(template_types))
    if is_postgres(session):
        ids_query = ids_query.with_for_update(skip_locked=True)
    # materialized, so the planner runs the locking subquery once: run again inside a join, it
    # could skip to other rows and claim more than limit
    claimable = ids_query.cte("claimable").prefix_with("MATERIALIZED")
    # one statement: re-checking "due" in the UPDATE keeps the claim safe where SKIP LOCKED is unavailable
    rows = session.execute(
        update(EmailMessage)
        .where(EmailMessage.message_id.in_(select(claimable.c.message_id)), due)
        .values(status=MessageStatus.SENDING, claim_token=token, claimed_at=wall)
        .returning(*(getattr(EmailMessage, f.name) for f in fields(Claimed))),
        execution_options={"synchronize_session": False},
    )
    return sorted((Claimed(*row) for row in rows), key=lambda m: (m.priority, m.message_id))


def sessions_with_feedback(session: Session, session_ids: set[int]) -> set[int]:
    """Which of these tutoring sessions have feedback by now."""
    if not session_ids:
        return set()
    return set(session.scalars(select(Feedback.session_id).where(Feedback.session_id.in_(session_ids))))


def withdraw(session: Session, token: str, reasons: dict[int, str], now: datetime) -> None:
    """Skip claimed messages instead of sending them (what made them unwanted is the reason)."""
    for reason in set(reasons.values()):
        ids = [mid for mid, r in reasons.items() if r == reason]
        session.execute(update(EmailMessage)
                        .where(EmailMessage.message_id.in_(ids), EmailMessage.claim_token == token)
                        .values(status=MessageStatus.SKIPPED, skip_reason=reason, claim_token=None, updated_at=now),
                        execution_options={"synchronize_session": False})
        session.execute(update(EmailWorkflowState).where(EmailWorkflowState.message_id.in_(ids))
                        .values(status=WorkflowStatus.CANCELLED, context_data={"skip_reason": reason}, updated_at=now),
                        execution_options={"synchronize_session": False})


def release(session: Session, token: str, message_ids: Sequence[int]) -> int:
    """Put a batch's unsent messages back in the queue (the SMTP server was unreachable)."""
    if not message_ids:
        return 0
    result = session.execute(
        update(EmailMessage)
        .where(EmailMessage.claim_token == token, EmailMessage.status == MessageStatus.SENDING,
               EmailMessage.message_id.in_(message_ids))
        .values(status=MessageStatus.QUEUED, claim_token=None, claimed_at=None),
        execution_options={"synchronize_session": False},
    )
    return result.rowcount


@dataclass
class Outcome:
    """What happened to one message: new column values, the event to record, an address to suppress."""

    message_id: int
    values: dict[str, Any]
    event: EventType
    event_data: dict[str, Any]
    at: datetime
    suppress: str | None = None

    @property
    def status(self) -> str:
        return self.values["status"]


def sent(message: Claimed, at: datetime, subject: str, response: str) -> Outcome:
    values = {"status": MessageStatus.SENT, "subject": subject, "sent_at": at, "smtp_response": response}
    return Outcome(message.message_id, values, EventType.SENT, {"smtp_response": response}, at)


def failed(message: Claimed, at: datetime, reason: str) -> Outcome:
    values = {"status": MessageStatus.FAILED, "failed_at": at, "failure_reason": reason}
    return Outcome(message.message_id, values, EventType.FAILED, {"reason": reason}, at)


def _answer_data(code: int, response: str, status: str | None) -> dict[str, Any]:
    return {"smtp_code": code, "smtp_status": status, "smtp_response": response}


def deferred(message: Claimed, at: datetime, code: int, response: str, status: str | None = None) -> Outcome:
    """Try again later with exponential backoff (60 s, 120 s, 240 s), then give up."""
    answer = f"{code} {response}"
    if message.retry_count >= MAX_RETRIES:
        outcome = failed(message, at, f"gave up after {MAX_RETRIES} retries; last answer {answer}")
        outcome.values["smtp_response"] = answer
        return outcome
    retry = message.retry_count + 1
    values = {"status": MessageStatus.DEFERRED, "retry_count": retry, "smtp_response": answer,
              "next_attempt_at": at + FIRST_RETRY_DELAY * (2 ** (retry - 1))}
    return Outcome(message.message_id, values, EventType.DEFERRED,
                   {**_answer_data(code, response, status), "retry": retry}, at)


def bounced(message: Claimed, at: datetime, code: int, response: str, status: str | None = None) -> Outcome:
    """The address is bad: a hard bounce; the address is suppressed and never retried."""
    answer = f"{code} {response}"
    values = {"status": MessageStatus.FAILED, "failed_at": at, "bounced_at": at, "bounce_type": BounceType.HARD,
              "bounce_reason": answer, "failure_reason": answer, "smtp_response": answer}
    return Outcome(message.message_id, values, EventType.BOUNCED,
                   {**_answer_data(code, response, status), "bounce_type": BounceType.HARD}, at,
                   suppress=message.recipient_email)


def blocked(message: Claimed, at: datetime, code: int, response: str, status: str | None = None) -> Outcome:
    """Policy or reputation (5.7.x): failed with the reason; the address is not to blame and stays."""
    answer = f"{code} {response}"
    values = {"status": MessageStatus.FAILED, "failed_at": at, "bounce_type": BounceType.BLOCKED,
              "bounce_reason": answer, "failure_reason": answer, "smtp_response": answer}
    return Outcome(message.message_id, values, EventType.REJECTED,
                   {**_answer_data(code, response, status), "reason": BounceType.BLOCKED}, at)


def refused(message: Claimed, at: datetime, code: int, response: str, status: str | None = None) -> Outcome:
    """The server refused this message itself (its size or content): failed; the address stays."""
    answer = f"{code} {response}"
    values = {"status": MessageStatus.FAILED, "failed_at": at, "failure_reason": answer, "smtp_response": answer}
    return Outcome(message.message_id, values, EventType.FAILED,
                   {**_answer_data(code, response, status), "reason": "message refused"}, at)


def record(session: Session, outcomes: Sequence[Outcome]) -> None:
    """Write many outcomes in one go: the messages' new values, one event each, suppressions."""
    if not outcomes:
        return
    if is_postgres(session):
        _record_by_copy(session, outcomes)
    else:
        _record_by_executemany(session, outcomes)
    suppressions.suppress_many(session, [
        suppressions.Suppression(email=o.suppress, reason=SuppressionReason.HARD_BOUNCE, source=SuppressionSource.SMTP,
                                 detail=o.values["bounce_reason"], message_id=o.message_id)
        for o in outcomes if o.suppress], outcomes[0].at)


# every column an outcome may set (one it leaves out keeps its value), and the event each outcome
# records, with their COPY types (text when not listed): both write paths are derived from these
_OUTCOME_COLUMNS = ("status", "subject", "sent_at", "smtp_response", "failed_at", "failure_reason", "retry_count",
                    "next_attempt_at", "bounced_at", "bounce_type", "bounce_reason")
_OUTCOME_SET = set(_OUTCOME_COLUMNS)
_EVENT_COLUMNS = ("message_id", "event_type", "event_time", "event_data", "is_machine", "created_at")
_COPY_TYPES.update({"retry_count": "integer", "sent_at": "timestamp", "failed_at": "timestamp",
                    "next_attempt_at": "timestamp", "bounced_at": "timestamp", "message_id": "bigint",
                    "event_time": "timestamp", "event_data": "jsonb", "is_machine": "boolean",
                    "created_at": "timestamp"})


def _event(o: Outcome) -> dict[str, Any]:
    """The outcome's row in email_tracking_events."""
    return {"message_id": o.message_id, "event_type": o.event.value, "event_time": o.at, "event_data": o.event_data,
            "is_machine": False, "created_at": o.at}


# the rows are locked in id order before any is updated, as the tracker's batched opens do
# (db.tracking): two writers locking the same messages in opposite orders would deadlock
_RECORD_FROM_COPY = text(f"""
WITH locked AS MATERIALIZED (
    SELECT message_id FROM email_messages WHERE message_id IN (SELECT message_id FROM outcomes)
    ORDER BY message_id FOR NO KEY UPDATE
), updated AS (
    UPDATE email_messages AS m SET
        {", ".join(f"{c} = COALESCE(o.{c}, m.{c})" for c in _OUTCOME_COLUMNS)},
        updated_at = o.event_time, claim_token = NULL
    FROM outcomes o WHERE m.message_id = o.message_id AND (SELECT count(*) FROM locked) >= 0
)
INSERT INTO email_tracking_events ({", ".join(_EVENT_COLUMNS)})
SELECT {", ".join(_EVENT_COLUMNS)} FROM outcomes ORDER BY ord
""")


def _record_by_copy(session: Session, outcomes: Sequence[Outcome]) -> None:
    """PostgreSQL: COPY the outcomes into a temporary table; update messages and add events from it at once."""
    columns = [("ord", "integer"), *((c, _COPY_TYPES.get(c, "text")) for c in _EVENT_COLUMNS + _OUTCOME_COLUMNS)]
    for o in outcomes:
        if not o.values.keys() <= _OUTCOME_SET:
            raise ValueError(f"outcome sets columns the bulk path does not know: {sorted(o.values.keys() - _OUTCOME_SET)}")
    copy_into_temp(session, "outcomes", columns, (
        (i, *_event(o).values(), *(o.values.get(c) for c in _OUTCOME_COLUMNS)) for i, o in enumerate(outcomes)
    ))
    session.execute(_RECORD_FROM_COPY)


def _record_by_executemany(session: Session, outcomes: Sequence[Outcome]) -> None:
    # bind names must differ from column names in an executemany UPDATE, hence the "v_" prefix
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for o in outcomes:
        values = {**o.values, "updated_at": o.at, "claim_token": None}
        shapes.setdefault(tuple(sorted(values)), []).append(
            {"v_message_id": o.message_id, **{f"v_{k}": v for k, v in values.items()}})
    table = EmailMessage.__table__
    for keys, rows in shapes.items():
        statement = update(table).where(table.c.message_id == bindparam("v_message_id"))
        session.execute(statement.values({k: bindparam(f"v_{k}") for k in keys}), rows)
    session.execute(insert(EmailTrackingEvent.__table__), [_event(o) for o in outcomes])
