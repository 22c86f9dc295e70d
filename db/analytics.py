"""Aggregates for the analytics flow and the analytics API: GROUP BY in the database, one query a figure.

Both the report and the JSON API read their counts from here, so they agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import Date, and_, bindparam, case, cast, func, literal, select
from sqlalchemy.orm import Session

from db.events import BounceType, EventType
from db.models import EmailMessage, EmailTrackingEvent, EmailWorkflowState, Feedback, SurveyResponse
from tutormax.settings import get_settings


def _sqlite_local_date(value: str | None, zone: str) -> str | None:
    if value is None:
        return None
    return datetime.fromisoformat(value).replace(tzinfo=timezone.utc).astimezone(ZoneInfo(zone)).date().isoformat()


def _day(column, session: Session, tz: ZoneInfo | None):
    """The calendar day in tz (default TIMEZONE) of a column holding naive UTC: a report's days are local days."""
    # inlined, so the SELECT and the GROUP BY are one expression to PostgreSQL
    zone = bindparam("zone", (tz or get_settings().tz).key, literal_execute=True)
    if session.get_bind().dialect.name == "sqlite":
        # SQLite knows no time zones: the connection gets Python's for this query
        session.connection().connection.driver_connection.create_function(
            "local_date", 2, _sqlite_local_date, deterministic=True)
        return func.local_date(column, zone)
    return cast(func.timezone(zone, func.timezone("UTC", column)), Date)


def human_engagement(start: datetime | None, *, campaign_ids: Sequence[str] | None = None):
    """Per message: did a person (not a machine) open it, or click (a click implies an open), and when first?

    Of every message with events since start, and of these campaigns' messages only if given.
    """
    e = EmailTrackingEvent
    human = e.is_machine.is_(False)
    opened = and_(human, e.event_type.in_([EventType.OPENED, EventType.CLICKED]))
    query = select(e.message_id,
                   func.max(case((opened, 1), else_=0)).label("human_opened"),
                   func.min(case((opened, e.event_time))).label("human_opened_at"),
                   func.max(case((and_(human, e.event_type == EventType.CLICKED), 1), else_=0)).label("human_clicked"),
                   func.max(case((e.event_type == EventType.COMPLAINED, 1), else_=0)).label("complained"))
    if campaign_ids is not None:
        query = query.join(EmailMessage, EmailMessage.message_id == e.message_id).where(
            EmailMessage.campaign_id.in_(campaign_ids))
    if start is not None:  # events come after their message; no upper bound: late opens count
        query = query.where(e.event_time >= start)
    return query.group_by(e.message_id).subquery()


def message_counts(session: Session, start: datetime, end: datetime, *, campaign_id: str | None = None,
                   template_type: str | None = None, tz: ZoneInfo | None = None) -> pd.DataFrame:
    """Counts per template type, version, variant, campaign and local day of sending, for messages created in
    [start, end) (of one campaign or template type if given); days in tz, default TIMEZONE."""
    m = EmailMessage
    filters = [column == value for column, value in ((m.campaign_id, campaign_id), (m.template_type, template_type))
               if value is not None]
    h = human_engagement(start)
    day = _day(func.coalesce(m.sent_at, m.created_at), session, tz)
    query = (
        select(m.template_type, m.template_version, func.coalesce(m.ab_variant, literal("a")).label("ab_variant"),
               func.coalesce(m.campaign_id, literal("")).label("campaign_id"), day.label("day"),
               func.count().label("messages"), *_delivery_counts(),
               func.sum(case((m.status == "failed", 1), else_=0)).label("failed"),
               func.sum(case((m.status == "skipped", 1), else_=0)).label("skipped"),
               func.sum(case((m.opened_at.is_not(None), 1), else_=0)).label("opened_all"),
               func.sum(func.coalesce(h.c.human_opened, 0)).label("opened_human"),
               func.sum(case((m.first_clicked_at.is_not(None), 1), else_=0)).label("clicked_all"),
               func.sum(func.coalesce(h.c.human_clicked, 0)).label("clicked_human"),
               func.sum(case((m.unsubscribed_at.is_not(None), 1), else_=0)).label("unsubscribed"),
               func.sum(func.coalesce(h.c.complained, 0)).label("complained"))
        .select_from(m).outerjoin(h, h.c.message_id == m.message_id)
        .where(m.created_at >= start, m.created_at < end, *filters)
        .group_by(m.template_type, m.template_version, func.coalesce(m.ab_variant, literal("a")),
                  func.coalesce(m.campaign_id, literal("")), day)
    )
    frame = pd.read_sql(query, session.connection())
    frame["day"] = pd.to_datetime(frame["day"]).dt.date
    return frame


def _delivery_counts():
    """Sent, delivered, bounced hard and soft, blocked: a message the relay took and a report later bounced was
    not delivered."""
    m = EmailMessage
    return (func.sum(case((m.status.in_(["sent", "failed"]), 1), else_=0)).label("attempted"),
            func.sum(case(((m.status == "sent") & m.bounced_at.is_(None), 1), else_=0)).label("delivered"),
            func.sum(case((m.bounced_at.is_not(None), 1), else_=0)).label("bounced"),
            func.sum(case((m.bounced_at.is_not(None) & (m.bounce_type == BounceType.HARD), 1), else_=0))
            .label("bounced_hard"),
            func.sum(case((m.bounced_at.is_not(None) & (m.bounce_type == BounceType.SOFT), 1), else_=0))
            .label("bounced_soft"),
            func.sum(case((m.bounce_type == BounceType.BLOCKED, 1), else_=0)).label("blocked"))


def bounce_reasons(session: Session, start: datetime, end: datetime) -> pd.DataFrame:
    """Bounced and blocked messages created in [start, end) by kind and the server's words (grouped as written)."""
    m = EmailMessage
    query = (select(m.bounce_type, m.bounce_reason, func.count().label("messages"))
             .where(m.created_at >= start, m.created_at < end, m.bounce_type.is_not(None))
             .group_by(m.bounce_type, m.bounce_reason))
    return pd.read_sql(query, session.connection())


def by_domain(session: Session, start: datetime, end: datetime) -> pd.DataFrame:
    """Delivery, bounces and complaints per recipient domain, for messages created in [start, end)."""
    m = EmailMessage
    h = human_engagement(start)
    domain = (func.split_part(m.recipient_email, "@", 2) if session.get_bind().dialect.name == "postgresql"
              else func.substr(m.recipient_email, func.instr(m.recipient_email, "@") + 1))
    domain = func.lower(domain)
    query = (select(domain.label("domain"), *_delivery_counts(),
                    func.sum(func.coalesce(h.c.complained, 0)).label("complained"))
             .select_from(m).outerjoin(h, h.c.message_id == m.message_id)
             .where(m.created_at >= start, m.created_at < end, m.recipient_email.is_not(None))
             .group_by(domain))
    return pd.read_sql(query, session.connection())


def time_to_open(session: Session, start: datetime, end: datetime) -> pd.DataFrame:
    """How long after sending a person first opened (or clicked), in buckets (messages created in [start, end)).

    Machine opens are left out: Apple Mail Privacy Protection fetches the pixel seconds after delivery,
    which would fill "under 1 hour" with opens no one made.
    """
    m, h = EmailMessage, human_engagement(start)
    seconds = (func.extract("epoch", h.c.human_opened_at) - func.extract("epoch", m.sent_at)
               if session.get_bind().dialect.name == "postgresql"
               else (func.julianday(h.c.human_opened_at) - func.julianday(m.sent_at)) * 86400)
    bucket = case((seconds < 3600, "under 1 hour"), (seconds < 4 * 3600, "1-4 hours"), (seconds < 86400, "4-24 hours"),
                  (seconds < 3 * 86400, "1-3 days"), else_="over 3 days")
    query = (select(bucket.label("bucket"), func.count().label("messages"))
             .select_from(m).join(h, h.c.message_id == m.message_id)
             .where(m.created_at >= start, m.created_at < end, h.c.human_opened_at.is_not(None), m.sent_at.is_not(None))
             .group_by(bucket))
    return pd.read_sql(query, session.connection())


def client_breakdown(session: Session, start: datetime, end: datetime) -> pd.DataFrame:
    """Human opens by device, browser and OS, from events in [start, end)."""
    e = EmailTrackingEvent
    query = (select(func.coalesce(e.device, "unknown").label("device"), func.coalesce(e.browser, "unknown").label("browser"),
                    func.coalesce(e.os, "unknown").label("os"), func.count().label("opens"))
             .where(e.event_type == EventType.OPENED, e.is_machine.is_(False), e.event_time >= start, e.event_time < end)
             .group_by(e.device, e.browser, e.os))
    return pd.read_sql(query, session.connection())


def events_by_day(session: Session, start: datetime, end: datetime, tz: ZoneInfo | None = None) -> pd.DataFrame:
    """Opens and clicks per local day, human and machine, from events in [start, end)."""
    e = EmailTrackingEvent
    day = _day(e.event_time, session, tz)
    query = (select(day.label("day"), e.event_type, e.is_machine, func.count().label("events"))
             .where(e.event_type.in_([EventType.OPENED, EventType.CLICKED]), e.event_time >= start, e.event_time < end)
             .group_by(day, e.event_type, e.is_machine))
    frame = pd.read_sql(query, session.connection())
    frame["day"] = pd.to_datetime(frame["day"]).dt.date
    return frame


def feedback_after_reminders(session: Session, start: datetime, end: datetime) -> tuple[int, int]:
    """(reminded sessions, of those the ones with feedback submitted after the reminder was sent)."""
    w, m = EmailWorkflowState, EmailMessage
    reminded = (select(w.entity_id.label("session_id"), m.sent_at)
                .join(m, m.message_id == w.message_id)
                .where(w.workflow_type == "feedback_reminder", m.status == "sent", m.sent_at >= start, m.sent_at < end)
                .subquery())
    row = session.execute(select(func.count(), func.count(Feedback.id)).select_from(reminded).outerjoin(
        Feedback, and_(Feedback.session_id == reminded.c.session_id, Feedback.submitted_at >= reminded.c.sent_at))).one()
    return int(row[0]), int(row[1])


def checkin_engagement(session: Session, start: datetime, end: datetime) -> tuple[int, int]:
    """(check-ins delivered, of those answered)."""
    m = EmailMessage
    row = session.execute(
        select(func.count(), func.count(SurveyResponse.id)).select_from(m)
        .outerjoin(SurveyResponse, SurveyResponse.message_id == m.message_id)
        .where(m.template_type == "first_session_checkin", m.status == "sent", m.created_at >= start,
               m.created_at < end)).one()
    return int(row[0]), int(row[1])
