"""Named statements the tracker runs: events with their counters, preferences, responses."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.events import EventType
from db.models import EmailMessage, EmailPreference, EmailTrackingEvent, Feedback, SurveyResponse
from db.session import is_postgres


def _insert(session: Session, table):
    return (postgresql.insert if is_postgres(session) else sqlite.insert)(table)


def message(session: Session, message_id: int) -> Row | None:
    """What the tracker needs to know about one message."""
    m = EmailMessage
    return session.execute(
        select(m.message_id, m.recipient_email, m.recipient_type, m.recipient_id, m.template_type, m.category,
               m.sent_at, m.status, m.message_metadata).where(m.message_id == message_id)
    ).first()


def recent_clicks(session: Session, message_id: int, since: datetime) -> list[datetime]:
    """Times of this message's clicks since a moment (for the burst-of-clicks rule)."""
    e = EmailTrackingEvent
    return list(session.scalars(select(e.event_time).where(
        e.message_id == message_id, e.event_type == EventType.CLICKED, e.event_time >= since)))


def record_event(session: Session, event: dict[str, Any]) -> bool:
    """Insert one event and bump its message's counters; an event_key seen before is a no-op."""
    e = EmailTrackingEvent.__table__
    inserted = session.execute(
        _insert(session, e).values(**event).on_conflict_do_nothing(index_elements=["event_key"]).returning(e.c.event_id)
        if event.get("event_key") else e.insert().values(**event).returning(e.c.event_id)
    ).first()
    if inserted is None:
        return False
    at, kind, m = event["event_time"], event["event_type"], EmailMessage
    values: dict[str, Any] = {}
    if kind == EventType.OPENED:
        values = {"open_count": m.open_count + 1, "opened_at": func.coalesce(m.opened_at, at)}
    elif kind == EventType.CLICKED:
        # a click proves an open even when images were blocked
        values = {"click_count": m.click_count + 1, "first_clicked_at": func.coalesce(m.first_clicked_at, at),
                  "opened_at": func.coalesce(m.opened_at, at)}
    elif kind == EventType.UNSUBSCRIBED:
        values = {"unsubscribed_at": func.coalesce(m.unsubscribed_at, at)}
    if values:
        session.execute(update(m).where(m.message_id == event["message_id"]).values(**values),
                        execution_options={"synchronize_session": False})
    return True


def event_seen(session: Session, event_key: str) -> bool:
    """Whether a journaled event with this key is already in the database."""
    e = EmailTrackingEvent
    return session.scalar(select(e.event_id).where(e.event_key == event_key)) is not None


# Built once: the pixel is the hottest path in the system, and building statements per hit
# costs more Python than running them.
_m = EmailMessage.__table__
_OPENED = (update(_m).where(_m.c.message_id == bindparam("mid"))
           .values(open_count=_m.c.open_count + 1, opened_at=func.coalesce(_m.c.opened_at, bindparam("at")))
           .returning(_m.c.sent_at))
_EVENT = EmailTrackingEvent.__table__.insert()


# PostgreSQL: the whole open in one round trip. The open rules that need sent_at (too soon after
# sending) are applied in SQL, between the ones the caller already settled (Apple MPP, prefetchers)
# and the last one (no user agent), keeping the rules' order.
_OPEN_ONE_TRIP = text("""
WITH m AS (UPDATE email_messages SET open_count = open_count + 1, opened_at = COALESCE(opened_at, :at)
           WHERE message_id = :mid RETURNING message_id, sent_at)
INSERT INTO email_tracking_events (message_id, event_type, event_time, user_agent, ip_address, is_machine,
                                   machine_reason, device, browser, os, event_data, created_at)
SELECT message_id, 'opened', :at, :ua, :ip,
       :first_reason IS NOT NULL OR COALESCE(sent_at > :soon, false) OR :late_reason IS NOT NULL,
       COALESCE(:first_reason, CASE WHEN sent_at > :soon THEN 'too_soon_after_send' END, :late_reason),
       :device, :browser, :os, CAST('{}' AS JSONB), :at
FROM m""")


def record_open_one_trip(session: Session, params: dict[str, Any]) -> None:
    """PostgreSQL only: bump the counters and insert the open event in one statement."""
    session.connection().execute(_OPEN_ONE_TRIP, params)


def count_open(session: Session, message_id: int, at: datetime) -> tuple[bool, datetime | None]:
    """Bump the message's open counters; (whether the message exists, its sent_at)."""
    row = session.connection().execute(_OPENED, {"mid": message_id, "at": at}).first()
    return (row is not None, row[0] if row else None)


def insert_event(session: Session, event: dict[str, Any]) -> None:
    """Insert an event whose counters were already bumped (the open pixel's path)."""
    session.connection().execute(_EVENT, event)


def preference(session: Session, email: str) -> EmailPreference | None:
    return session.scalar(select(EmailPreference).where(EmailPreference.email == email.lower()))


def set_preferences(session: Session, email: str, values: dict[str, Any], at: datetime) -> None:
    """Upsert one address's preferences (addresses are stored lower-cased)."""
    row = {"email": email.lower(), "created_at": at, "updated_at": at, **values}
    stmt = _insert(session, EmailPreference.__table__).values(**row)
    session.execute(stmt.on_conflict_do_update(index_elements=["email"], set_={**values, "updated_at": at}))


def record_feedback(session: Session, *, session_id: int, student_id: int, rating: int, comment: str | None,
                    message_id: int, at: datetime) -> bool:
    """Store a session's feedback once; False when it already had some."""
    stmt = _insert(session, Feedback.__table__).values(
        session_id=session_id, student_id=student_id, rating=rating, comment=comment, message_id=message_id,
        submitted_at=at).on_conflict_do_nothing(index_elements=["session_id"]).returning(Feedback.__table__.c.id)
    return session.execute(stmt).first() is not None


def record_survey(session: Session, answers: dict[str, Any]) -> int | None:
    """Store a check-in survey's answers once per survey email; its id, or None when already answered."""
    table = SurveyResponse.__table__
    stmt = _insert(session, table).values(**answers).on_conflict_do_nothing(index_elements=["message_id"])
    return session.execute(stmt.returning(table.c.id)).scalar()


def delete_events_before(session: Session, cutoff: datetime, batch: int) -> int:
    """Delete up to batch tracking events older than cutoff (small batches keep locks and WAL short)."""
    from sqlalchemy import delete

    e = EmailTrackingEvent
    ids = select(e.event_id).where(e.event_time < cutoff).order_by(e.event_id).limit(batch).scalar_subquery()
    return session.execute(delete(e).where(e.event_id.in_(ids)), execution_options={"synchronize_session": False}).rowcount
