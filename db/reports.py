"""Reports that arrive after sending (DSNs, complaints, provider events): recorded once, and what they change.

A report line is stored under a unique (source, report id, recipient), so a mailbox read twice or a
webhook retried records nothing twice; only a line stored for the first time has consequences:
an event on our message and the suppression rules.

- hard bounce: the address is suppressed;
- soft bounces: `soft_limit` of them within `soft_window` suppress the address for `soft_suppress`;
- complaint: every category but system notices is turned off and marketing is suppressed;
- a delay notice, a delivery, an unknown report: an event on our message, nothing more.

A report that names no message of ours still acts on the address it names, if we ever mailed it.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db import suppressions, tracking
from db.events import (
    BounceType,
    Category,
    EventType,
    SuppressionReason,
    SuppressionScope,
    SuppressionSource,
)
from db.models import EmailMessage, EmailReport
from db.session import is_postgres
from tutormax.settings import Settings

# what each kind of report line records on our message
_EVENTS = {"hard": EventType.BOUNCED, "soft": EventType.BOUNCED, "complaint": EventType.COMPLAINED,
           "delivered": EventType.DELIVERED, "unknown": EventType.UNKNOWN}


@dataclass(frozen=True)
class Incoming:
    """One recipient's line of a report, as it arrived, before it is recorded."""

    source: SuppressionSource        # dsn, arf or webhook
    report_id: str                   # the report's Message-ID, or the provider's event id
    kind: str                        # hard | soft | complaint | auto_reply | delivered | unknown
    recipient: str                   # the address the report names
    raw: str                         # the whole report or payload, kept as it came
    received_at: datetime
    action: str = ""                 # RFC 3464 Action: a "delayed" soft line is a warning, not a bounce
    status: str | None = None
    diagnostic: str | None = None
    message_id: int | None = None    # our message, as the report names it (checked before it is believed)
    original_message_id: str | None = None  # the Message-ID header it was named by, when it was
    detector: str | None = None

    @property
    def bounced(self) -> bool:
        """A bounce that counts: hard or soft, and final (the relay gave up), not a delay notice."""
        return self.kind in ("hard", "soft") and self.action != "delayed"

    @property
    def reason(self) -> str:
        return " ".join(part for part in (self.status, self.diagnostic) if part) or self.kind


@dataclass(frozen=True)
class Rules:
    """The suppression rules' numbers (BOUNCE_SOFT_LIMIT, BOUNCE_SOFT_WINDOW_DAYS, BOUNCE_SOFT_SUPPRESS_DAYS)."""

    soft_limit: int = 3
    soft_window: timedelta = timedelta(days=30)
    soft_suppress: timedelta = timedelta(days=30)

    @classmethod
    def of(cls, settings: Settings) -> Rules:
        """The rules as configured."""
        return cls(soft_limit=settings.bounce_soft_limit, soft_window=timedelta(days=settings.bounce_soft_window_days),
                   soft_suppress=timedelta(days=settings.bounce_soft_suppress_days))


def _message(session: Session, report: Incoming) -> Row | None:
    """Our message the report names, if it is ours: a Message-ID must carry the digest we made it with."""
    if report.message_id is None:
        return None
    m = EmailMessage
    row = session.execute(select(m.message_id, m.recipient_email, m.idempotency_key)
                          .where(m.message_id == report.message_id)).first()
    if row is None:
        return None
    named = report.original_message_id
    if named and named.strip("<> ").startswith(f"{report.message_id}."):
        digest = hashlib.sha256(row.idempotency_key.encode()).hexdigest()[:16]
        if not named.strip("<> ").startswith(f"{report.message_id}.{digest}@"):
            return None  # a number that looks like ours, on a Message-ID we did not make
    return row


def _ever_mailed(session: Session, address: str) -> bool:
    m = EmailMessage
    return session.scalar(select(m.message_id).where(m.recipient_email == address).limit(1)) is not None


def _store(session: Session, report: Incoming, recipient: str, message_id: int | None) -> int | None:
    """The new line's id, or None when this report's line was recorded before."""
    insert = (postgresql.insert if is_postgres(session) else sqlite.insert)(EmailReport)
    statement = insert.values(
        source=report.source, report_id=report.report_id[:200], kind=report.kind, action=report.action[:20],
        status=report.status, diagnostic=report.diagnostic, recipient=recipient, message_id=message_id,
        detector=report.detector, raw=report.raw, received_at=report.received_at,
    ).on_conflict_do_nothing(index_elements=["source", "report_id", "recipient"]).returning(EmailReport.id)
    return session.execute(statement).scalar()


def soft_bounces(session: Session, address: str, since: datetime) -> int:
    """Final soft bounces reported for this address since a moment."""
    r = EmailReport
    return session.scalar(select(func.count()).select_from(r).where(
        r.recipient == address, r.kind == "soft", r.action != "delayed", r.received_at >= since)) or 0


def apply(session: Session, reports: Sequence[Incoming], rules: Rules, now: datetime) -> Counter[str]:
    """Record each report line once and act on the new ones; what happened, counted."""
    counts: Counter[str] = Counter()
    for report in reports:
        message = _message(session, report)
        # our own recipient's address is the one to act on: a report may name where it was forwarded
        address = (message.recipient_email if message else report.recipient or "").lower()
        line = _store(session, report, address, message.message_id if message else None)
        if line is None:
            counts["already_recorded"] += 1
            continue
        counts[report.kind if report.kind != "soft" or report.bounced else "delayed"] += 1
        if message is not None:
            _on_message(session, report, message.message_id, line)
        if address and (message is not None or _ever_mailed(session, address)):
            counts.update(_rules(session, report, address, message.message_id if message else None, rules, now))
    return counts


def _on_message(session: Session, report: Incoming, message_id: int, line: int) -> None:
    """The report's event on our message; a bounce also marks the message bounced."""
    event = EventType.DEFERRED if report.kind == "soft" and not report.bounced else _EVENTS.get(report.kind)
    if event is None:
        return  # an auto-reply says nothing about the message
    data: dict[str, Any] = {"report": line, "source": report.source, "detector": report.detector}
    if report.kind in ("hard", "soft"):
        data.update(bounce_type=report.kind, status=report.status, diagnostic=report.diagnostic, action=report.action)
    tracking.record_event(session, {"message_id": message_id, "event_type": event, "event_time": report.received_at,
                                    "is_machine": False, "created_at": report.received_at,
                                    "event_key": f"report:{line}", "event_data": data})
    m = EmailMessage
    if report.bounced:
        session.execute(update(m).where(m.message_id == message_id).values(
            bounced_at=report.received_at, bounce_type=BounceType(report.kind), bounce_reason=report.reason[:1000],
            updated_at=report.received_at), execution_options={"synchronize_session": False})
    elif report.kind == "delivered":
        session.execute(update(m).where(m.message_id == message_id, m.delivered_at.is_(None)).values(
            delivered_at=report.received_at), execution_options={"synchronize_session": False})


def _rules(session: Session, report: Incoming, address: str, message_id: int | None, rules: Rules,
           now: datetime) -> Counter[str]:
    """The suppression rules for one new report line about an address we mail."""
    done: Counter[str] = Counter()
    evidence = {"source": report.source, "detail": report.reason, "report": report.raw, "message_id": message_id}
    if report.kind == "hard" and report.bounced:
        done["suppressed"] += suppressions.suppress(session, address, reason=SuppressionReason.HARD_BOUNCE, at=now,
                                                    **evidence)
    elif report.kind == "soft" and report.bounced:
        if soft_bounces(session, address, now - rules.soft_window) >= rules.soft_limit:
            done["suppressed"] += suppressions.suppress(session, address, reason=SuppressionReason.SOFT_BOUNCES,
                                                        at=now, expires_at=now + rules.soft_suppress, **evidence)
    elif report.kind == "complaint":
        # everything but system notices off, as if they had unsubscribed from each; marketing held off
        # whatever they change on the preferences page, until an operator lifts it
        tracking.set_preferences(session, address, {c.value: c is Category.SYSTEM_NOTIFICATIONS for c in Category},
                                 now)
        done["suppressed"] += suppressions.suppress(session, address, reason=SuppressionReason.COMPLAINT,
                                                    scope=SuppressionScope.MARKETING, at=now, **evidence)
    return done
