"""Named statements the tracker runs: events with their counters, preferences, responses."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, PoolProxiedConnection, Row, bindparam, case, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from db.events import EventType
from db.models import EmailMessage, EmailPreference, EmailTrackingEvent, Feedback, SurveyResponse
from db.session import is_postgres
from db.types import UTCDateTime, naive_utc


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
    # the earliest wins: a journaled event is ingested after later ones went in live
    if kind == EventType.OPENED:
        values = {"open_count": m.open_count + 1, "opened_at": _earliest(m.opened_at, at)}
    elif kind == EventType.CLICKED:
        # a click proves an open even when images were blocked
        values = {"click_count": m.click_count + 1, "first_clicked_at": _earliest(m.first_clicked_at, at),
                  "opened_at": _earliest(m.opened_at, at)}
    elif kind == EventType.UNSUBSCRIBED:
        values = {"unsubscribed_at": _earliest(m.unsubscribed_at, at)}
    if values:
        session.execute(update(m).where(m.message_id == event["message_id"]).values(**values),
                        execution_options={"synchronize_session": False})
    return True


def _earliest(column, at: datetime):
    at_ = bindparam(None, at, type_=UTCDateTime())
    return case((or_(column.is_(None), column > at_), at_), else_=column)


def event_seen(session: Session, event_key: str) -> bool:
    """Whether a journaled event with this key is already in the database."""
    e = EmailTrackingEvent
    return session.scalar(select(e.event_id).where(e.event_key == event_key)) is not None


# Opens arrive in batches (tracking_app.group_commit). On PostgreSQL a batch is one statement in
# autocommit: one round trip and one commit however many opens it holds. It bumps each message's
# counters once with its count (a message can be opened twice in one batch), keeps opened_at at the
# earliest open (batches from several workers can commit out of order) and inserts one event
# per open. Batches from several workers (and delivery's outcome writes, db.outbox) can share
# messages, so the rows are locked in id order before any is updated (the uncorrelated count runs
# once, ahead of the first update; NO KEY UPDATE is the lock the UPDATE itself takes, so event
# inserts holding KEY SHARE do not block it): without that, two batches can lock the same two
# messages in opposite orders and deadlock.
# The open rules that need sent_at (too soon after sending) are applied here, between the
# rules the caller settled before (Apple MPP, prefetchers) and after (no user agent), keeping the
# rules' order. Opens of unknown messages match no row and record nothing. Each open carries the
# event_key the tracker made for it, so an open journaled after a write whose outcome is unknown
# is skipped at ingest if the write did commit.
# an open's event row: each email_tracking_events column and the batch field it comes from (the
# event type, the machine verdict and the empty event_data are the same for every open); both
# write paths are derived from this
OPEN_FIELDS = ("mid", "at", "soon", "ua", "ip", "first_reason", "late_reason", "device", "browser", "os", "key")
_OPEN_FIELD_TYPES = {"mid": "BIGINT[]", "at": "TIMESTAMP[]", "soon": "TIMESTAMP[]"}  # the rest are TEXT[]
_OPEN_EVENT = {"message_id": "mid", "event_time": "at", "user_agent": "ua", "ip_address": "ip", "device": "device",
               "browser": "browser", "os": "os", "created_at": "at", "event_key": "key"}
_PREPARE_OPEN_BATCH = f"""
PREPARE tutormax_open_batch ({", ".join(_OPEN_FIELD_TYPES.get(f, "TEXT[]") for f in OPEN_FIELDS)}) AS
WITH v AS (SELECT * FROM unnest({", ".join(f"${i}" for i in range(1, len(OPEN_FIELDS) + 1))})
           AS v({", ".join(OPEN_FIELDS)})),
     n AS (SELECT mid, count(*) AS opens, min(at) AS first_at FROM v GROUP BY mid),
     locked AS MATERIALIZED (SELECT message_id FROM email_messages WHERE message_id IN (SELECT mid FROM n)
                             ORDER BY message_id FOR NO KEY UPDATE),
     m AS (UPDATE email_messages SET open_count = open_count + n.opens, opened_at = LEAST(opened_at, n.first_at)
           FROM n WHERE message_id = n.mid AND (SELECT count(*) FROM locked) >= 0
           RETURNING message_id, sent_at)
INSERT INTO email_tracking_events ({", ".join(_OPEN_EVENT)}, event_type, is_machine, machine_reason, event_data)
SELECT {", ".join("v." + field for field in _OPEN_EVENT.values())}, 'opened', r.reason IS NOT NULL, r.reason,
       CAST('{{}}' AS JSONB)
FROM v JOIN m ON m.message_id = v.mid,
     LATERAL (SELECT COALESCE(v.first_reason, CASE WHEN m.sent_at > v.soon THEN 'too_soon_after_send' END,
                              v.late_reason) AS reason) AS r"""
_EXECUTE_OPEN_BATCH = f"EXECUTE tutormax_open_batch ({', '.join(['%s'] * len(OPEN_FIELDS))})"

_m = EmailMessage.__table__
_at = bindparam("at", type_=UTCDateTime())
_OPENED = (update(_m).where(_m.c.message_id == bindparam("mid"))
           .values(open_count=_m.c.open_count + 1,
                   opened_at=case((or_(_m.c.opened_at.is_(None), _m.c.opened_at > _at), _at), else_=_m.c.opened_at))
           .returning(_m.c.sent_at))
_EVENT = EmailTrackingEvent.__table__.insert()


def _array_literal(values: list[Any]) -> str:
    """One batch column as a PostgreSQL array literal ('{...}'), sent as a single parameter.

    The driver would otherwise quote every element into its own typed constant, which both
    it and the server's parser pay for per open; PostgreSQL reads a literal in one pass."""
    return "{" + ",".join(map(_array_element, values)) + "}"


def _array_element(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, datetime):
        # columns hold naive UTC (db.types.UTCDateTime): an aware value would be shifted by the
        # session's TimeZone on the way in
        return naive_utc(value).isoformat()
    if isinstance(value, int):
        return str(value)
    # inside double quotes only the backslash and the double quote are special
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class OpenRecorder:
    """Commit batches of opens (dicts keyed by OPEN_FIELDS): counters bumped, one event each.

    Callers serialize their calls (tracking_app.group_commit): on PostgreSQL one connection is
    kept in autocommit with the batch statement prepared on it, so a batch costs one round trip
    that neither parses nor plans. A failed connection is replaced on the next call; a batch
    that takes longer than timeout_s fails (the tracker then journals its opens).
    """

    def __init__(self, engine: Engine, timeout_s: float = 5.0) -> None:
        self._engine = engine
        self._timeout_ms = int(timeout_s * 1000)
        self._dbapi = engine.dialect.loaded_dbapi
        self._connection: PoolProxiedConnection | None = None
        self._cursor: Any = None

    def __call__(self, opens: Sequence[dict[str, Any]]) -> list[BaseException | None] | None:
        """Write the batch; None when all went in, else one error (or None) per open."""
        try:
            self._write(opens)
            return None
        except OperationalError:
            raise  # the database is unreachable or stuck: nothing in this batch went in
        except Exception:  # noqa: BLE001 -- one bad row fails its statement: find it, keep the rest
            if len(opens) == 1:
                raise
        outcomes: list[BaseException | None] = []
        for i, one in enumerate(opens):
            try:
                self._write([one])
                outcomes.append(None)
            except OperationalError as exc:
                return outcomes + [exc] * (len(opens) - i)
            except Exception as exc:  # noqa: BLE001
                outcomes.append(exc)
        return outcomes

    def _write(self, opens: Sequence[dict[str, Any]]) -> None:
        if self._engine.dialect.name != "postgresql":
            return _record_opens_one_by_one(self._engine, opens)
        params = tuple(_array_literal([o[f] for o in opens]) for f in OPEN_FIELDS)
        try:
            cursor = self._cursor or self._open()
            cursor.execute(_EXECUTE_OPEN_BATCH, params)
        except self._dbapi.Error as exc:
            self._drop()
            # parameters stay out of the message: they hold readers' addresses and user agents
            if isinstance(exc, self._dbapi.InterfaceError):  # a connection closed under us
                raise OperationalError(_EXECUTE_OPEN_BATCH, None, exc, hide_parameters=True) from exc
            raise DBAPIError.instance(_EXECUTE_OPEN_BATCH, None, exc, self._dbapi.Error, hide_parameters=True) from exc
        except BaseException:
            self._drop()  # interrupted mid-statement: the connection's state is unknown
            raise

    def _open(self):
        # a driver connection of its own, detached from the pool: no checkout, reset or statement
        # cache per batch, and its autocommit and prepared statement never reach a pooled session
        connection = self._engine.raw_connection()
        connection.detach()
        try:
            connection.dbapi_connection.autocommit = True
            cursor = connection.cursor()
            # the statement's one plan fits every batch size; left to choose, PostgreSQL re-plans
            # it for each execution, which costs more than the batch itself
            cursor.execute("SET plan_cache_mode = force_generic_plan")
            # and it finds every message by primary key: on a small or not yet analyzed
            # email_messages the one plan made here scanned the whole table twice per batch
            # (half of PostgreSQL's CPU per open in benchmarks/tracker.py), and kept doing so
            cursor.execute("SET enable_seqscan = off")
            # every request of the batch waits on it: a lock or a stalled server must fail it (and
            # journal its opens) in seconds, not hold the pixels until the client gives up
            cursor.execute(f"SET statement_timeout = {self._timeout_ms}")
            cursor.execute(_PREPARE_OPEN_BATCH)
        except BaseException:
            connection.close()
            raise
        self._connection, self._cursor = connection, cursor
        return cursor

    def _drop(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except self._dbapi.Error:
                pass  # already dead: that is why it is being dropped
        self._connection = self._cursor = None


def _record_opens_one_by_one(engine: Engine, opens: Sequence[dict[str, Any]]) -> None:
    with engine.begin() as conn:
        for o in opens:
            row = conn.execute(_OPENED, {"mid": o["mid"], "at": o["at"]}).first()
            if row is None:
                continue  # an unknown message
            too_soon = "too_soon_after_send" if row.sent_at is not None and row.sent_at > o["soon"] else None
            reason = o["first_reason"] or too_soon or o["late_reason"]
            conn.execute(_EVENT, {**{column: o[field] for column, field in _OPEN_EVENT.items()},
                                  "event_type": EventType.OPENED, "is_machine": reason is not None,
                                  "machine_reason": reason, "event_data": {}})


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
    e = EmailTrackingEvent
    ids = select(e.event_id).where(e.event_time < cutoff).order_by(e.event_id).limit(batch).scalar_subquery()
    return session.execute(delete(e).where(e.event_id.in_(ids)), execution_options={"synchronize_session": False}).rowcount


def apply_unsubscribe(session: Session, request_: dict[str, Any]) -> bool:
    """Apply one unsubscribe (from the tracker or its journal); False when the message is unknown."""
    row = message(session, request_["message_id"])
    if row is None or not row.recipient_email:
        return False
    at = request_["at"]
    values = {"unsubscribed_all": True, "unsubscribed_at": at} if request_["scope"] == "all" else {row.category: False}
    set_preferences(session, row.recipient_email, values, at)
    record_event(session, {
        "message_id": row.message_id, "event_type": EventType.UNSUBSCRIBED, "event_time": at,
        "user_agent": request_.get("user_agent"), "is_machine": False, "created_at": at,
        "event_key": request_.get("event_key"),
        "event_data": {"scope": request_["scope"], "category": row.category, "one_click": request_["one_click"]}})
    return True
