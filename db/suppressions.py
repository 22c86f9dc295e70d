"""Suppressions: addresses that get no more mail, why, on whose evidence, and who lifted them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.events import SuppressionReason, SuppressionSource
from db.models import EmailPreference, EmailSuppression
from db.session import is_postgres


def _in_force(now: datetime):
    s = EmailSuppression
    return s.lifted_at.is_(None), or_(s.expires_at.is_(None), s.expires_at > now)


def suppress(session: Session, email: str, *, reason: SuppressionReason, source: SuppressionSource, at: datetime,
             detail: str | None = None, report: str | None = None, message_id: int | None = None,
             expires_at: datetime | None = None) -> None:
    """Record a suppression and stop mail to the address (the preferences row carries the flag)."""
    address = email.lower()
    session.add(EmailSuppression(email=address, reason=reason, source=source, detail=detail, report=report,
                                 message_id=message_id, created_at=at, expires_at=expires_at))
    insert = (postgresql.insert if is_postgres(session) else sqlite.insert)(EmailPreference)
    flag = {"suppressed": True, "suppression_reason": reason.value, "suppressed_at": at, "updated_at": at}
    session.execute(insert.values(email=address, created_at=at, **flag)
                    .on_conflict_do_update(index_elements=["email"], set_=flag))
    session.flush()


def in_force(session: Session, now: datetime, reason: str | None = None,
             include_lifted: bool = False) -> Sequence[EmailSuppression]:
    """Suppressions in force (or, with include_lifted, every one ever made), newest first."""
    s = EmailSuppression
    query = select(s).order_by(s.created_at.desc(), s.id.desc())
    if not include_lifted:
        query = query.where(*_in_force(now))
    if reason:
        query = query.where(s.reason == reason)
    return session.scalars(query).all()


def lift(session: Session, email: str, *, why: str, by: str, at: datetime) -> int:
    """Lift every suppression of the address in force, keeping them with who and why; how many were lifted."""
    s = EmailSuppression
    address = email.lower()
    lifted = session.execute(update(s).where(s.email == address, *_in_force(at))
                             .values(lifted_at=at, lifted_by=by, lifted_why=why),
                             execution_options={"synchronize_session": False}).rowcount
    session.execute(update(EmailPreference).where(EmailPreference.email == address)
                    .values(suppressed=False, suppression_reason=None, suppressed_at=None, updated_at=at),
                    execution_options={"synchronize_session": False})
    return lifted
