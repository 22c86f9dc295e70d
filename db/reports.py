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

from sqlalchemy import Row, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db import suppressions, tracking
from db.events import (
    Category,
    EventType,
    SuppressionReason,
    SuppressionScope,
    SuppressionSource,
)
from db.models import EmailMessage, EmailReport, EmailTrackingEvent
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


def _messages(session: Session, reports: Sequence[Incoming]) -> dict[int, Row]:
    """Our messages the reports name, by id, where we believe them: a Message-ID must carry our digest."""
    wanted = {r.message_id for r in reports if r.message_id is not None}
    if not wanted:
        return {}
    m = EmailMessage
    rows = {row.message_id: row for row in session.execute(
        select(m.message_id, m.recipient_email, m.idempotency_key).where(m.message_id.in_(wanted)))}
    return rows


def _believed(report: Incoming, row: Row | None) -> Row | None:
    named = report.original_message_id
    if row is None or not named or not named.strip("<> ").startswith(f"{report.message_id}."):
        return row  # named by its VERP tag, signed: nothing more to check
    digest = hashlib.sha256(row.idempotency_key.encode()).hexdigest()[:16]
    # a number that looks like ours, on a Message-ID we did not make, names nothing
    return row if named.strip("<> ").startswith(f"{report.message_id}.{digest}@") else None


def _ever_mailed(session: Session, addresses: set[str]) -> set[str]:
    """Which of these addresses we ever sent to."""
    m = EmailMessage
    if not addresses:
        return set()
    return set(session.scalars(select(m.recipient_email).where(m.recipient_email.in_(addresses)).distinct()))


def soft_bounces(session: Session, addresses: set[str], since: datetime) -> Counter[str]:
    """Final soft bounces reported for each address since a moment."""
    r = EmailReport
    if not addresses:
        return Counter()
    rows = session.execute(select(r.recipient, func.count()).where(
        r.recipient.in_(addresses), r.kind == "soft", r.action != "delayed", r.received_at >= since).group_by(r.recipient))
    return Counter({address: count for address, count in rows})


def apply(session: Session, reports: Sequence[Incoming], rules: Rules, now: datetime) -> Counter[str]:
    """Record each report line once and act on the new ones; what happened, counted.

    Set-based: a page of reports costs a few statements, not a few per report.
    """
    counts: Counter[str] = Counter()
    if not reports:
        return counts
    messages = _messages(session, reports)
    resolved = [(report, _believed(report, messages.get(report.message_id))) for report in reports]
    # our own recipient's address is the one to act on: a report may name where it was forwarded
    addressed = [(report, message, (message.recipient_email if message else report.recipient or "").lower())
                 for report, message in resolved]
    new_lines = _store(session, addressed)
    counts["already_recorded"] = len(reports) - len(new_lines)
    fresh = [(report, message, address, new_lines[key]) for report, message, address in addressed
             if (key := (report.source, report.report_id[:200], address)) in new_lines]
    for report, _, _, _ in fresh:
        counts[report.kind if report.kind != "soft" or report.bounced else "delayed"] += 1
    _on_messages(session, [(report, message.message_id, line) for report, message, _, line in fresh if message])
    mailed = {address for _, message, address, _ in fresh if message} | _ever_mailed(
        session, {address for _, message, address, _ in fresh if not message and address})
    counts["suppressed"] = _rules(session, [(report, message, address) for report, message, address, _ in fresh
                                            if address in mailed], rules, now)
    return +counts  # no zero counts


def _store(session: Session, addressed: list[tuple[Incoming, Row | None, str]]) -> dict[tuple[str, str, str], int]:
    """Insert the lines; the new ones' ids by (source, report id, recipient). A line recorded before is skipped."""
    rows = {}
    for report, message, address in addressed:
        key = (report.source, report.report_id[:200], address)
        rows.setdefault(key, {
            "source": report.source, "report_id": key[1], "kind": report.kind, "action": report.action[:20],
            "status": report.status, "diagnostic": report.diagnostic, "recipient": address,
            "message_id": message.message_id if message else None, "detector": report.detector, "raw": report.raw,
            "received_at": report.received_at})
    insert = (postgresql.insert if is_postgres(session) else sqlite.insert)(EmailReport)
    r = EmailReport.__table__.c
    inserted = session.execute(insert.on_conflict_do_nothing(index_elements=["source", "report_id", "recipient"])
                               .returning(r.id, r.source, r.report_id, r.recipient), list(rows.values()))
    return {(source, report_id, recipient): line for line, source, report_id, recipient in inserted}


def _on_messages(session: Session, lines: list[tuple[Incoming, int, int]]) -> None:
    """Each new line's event on our message; a bounce also marks the message bounced, a delivery delivered."""
    events, bounced, delivered = [], [], []
    for report, message_id, line in lines:
        event = EventType.DEFERRED if report.kind == "soft" and not report.bounced else _EVENTS.get(report.kind)
        if event is None:
            continue  # an auto-reply says nothing about the message
        data: dict[str, Any] = {"report": line, "source": report.source, "detector": report.detector}
        if report.kind in ("hard", "soft"):
            data.update(bounce_type=report.kind, status=report.status, diagnostic=report.diagnostic,
                        action=report.action)
        events.append({"message_id": message_id, "event_type": event, "event_time": report.received_at,
                       "is_machine": False, "created_at": report.received_at, "event_key": f"report:{line}",
                       "event_data": data})
        if report.bounced:
            bounced.append({"v_id": message_id, "v_at": report.received_at, "v_type": report.kind,
                            "v_reason": report.reason[:1000]})
        elif report.kind == "delivered":
            delivered.append({"v_id": message_id, "v_at": report.received_at})
    m = EmailMessage.__table__
    if events:
        session.execute(EmailTrackingEvent.__table__.insert(), events)
    if bounced:
        session.execute(update(m).where(m.c.message_id == bindparam("v_id")).values(
            bounced_at=bindparam("v_at"), bounce_type=bindparam("v_type"), bounce_reason=bindparam("v_reason"),
            updated_at=bindparam("v_at")), bounced)
    if delivered:
        session.execute(update(m).where(m.c.message_id == bindparam("v_id"), m.c.delivered_at.is_(None))
                        .values(delivered_at=bindparam("v_at")), delivered)


def _rules(session: Session, lines: list[tuple[Incoming, Row | None, str]], rules: Rules, now: datetime) -> int:
    """The suppression rules for new report lines about addresses we mail; how many suppressions were new."""
    soft = soft_bounces(session, {a for r, _, a in lines if r.kind == "soft" and r.bounced}, now - rules.soft_window)
    wanted, complained = [], set()
    for report, message, address in lines:
        evidence = {"source": report.source, "detail": report.reason, "report": report.raw,
                    "message_id": message.message_id if message else None}
        if report.kind == "hard" and report.bounced:
            wanted.append(suppressions.Suppression(address, SuppressionReason.HARD_BOUNCE, **evidence))
        elif report.kind == "soft" and report.bounced and soft[address] >= rules.soft_limit:
            wanted.append(suppressions.Suppression(address, SuppressionReason.SOFT_BOUNCES,
                                                   expires_at=now + rules.soft_suppress, **evidence))
        elif report.kind == "complaint":
            complained.add(address)
            wanted.append(suppressions.Suppression(address, SuppressionReason.COMPLAINT,
                                                   scope=SuppressionScope.MARKETING, **evidence))
    for address in sorted(complained):
        # everything but system notices off, as if they had unsubscribed from each; marketing held off
        # whatever they change on the preferences page, until an operator lifts it
        tracking.set_preferences(session, address, {c.value: c is Category.SYSTEM_NOTIFICATIONS for c in Category},
                                 now)
    return suppressions.suppress_many(session, wanted, now)
