"""Suppressions: addresses that get no more mail (or no more marketing), why, on whose evidence, and who lifted them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.events import SuppressionReason, SuppressionScope, SuppressionSource
from db.models import EmailPreference, EmailSuppression
from db.session import is_postgres

# the preferences flag that mirrors each scope's suppressions in force, for the one-row check planners make
_FLAG = {SuppressionScope.ALL: "suppressed", SuppressionScope.MARKETING: "marketing_suppressed"}


def _in_force(now: datetime):
    s = EmailSuppression
    return s.lifted_at.is_(None), or_(s.expires_at.is_(None), s.expires_at > now)


def _set_flags(session: Session, address: str, at: datetime, **flags: object) -> None:
    insert = (postgresql.insert if is_postgres(session) else sqlite.insert)(EmailPreference)
    values = {**flags, "updated_at": at}
    session.execute(insert.values(email=address, created_at=at, **values)
                    .on_conflict_do_update(index_elements=["email"], set_=values))


def suppress(session: Session, email: str, *, reason: SuppressionReason, source: SuppressionSource, at: datetime,
             detail: str | None = None, report: str | None = None, message_id: int | None = None,
             expires_at: datetime | None = None, scope: SuppressionScope = SuppressionScope.ALL) -> bool:
    """Record a suppression and stop mail to the address (all of it, or its marketing).

    False, and nothing recorded, when one for the same reason is in force already: a second report
    of the same bounce is evidence of nothing new.
    """
    address = email.lower()
    if has(session, address, reason, at):
        return False
    session.add(EmailSuppression(email=address, reason=reason, source=source, detail=detail, report=report,
                                 message_id=message_id, created_at=at, expires_at=expires_at, scope=scope))
    flags: dict[str, object] = {_FLAG[scope]: True}
    if scope is SuppressionScope.ALL:
        flags.update(suppression_reason=reason.value, suppressed_at=at)
    _set_flags(session, address, at, **flags)
    session.flush()
    return True


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


def has(session: Session, email: str, reason: SuppressionReason, now: datetime) -> bool:
    """Whether the address has a suppression in force for this reason."""
    s = EmailSuppression
    return session.scalar(select(func.count()).select_from(s).where(
        s.email == email.lower(), s.reason == reason, *_in_force(now))) > 0


def _refresh_flags(session: Session, address: str, at: datetime) -> None:
    """Set the preferences flags from the suppressions still in force (another may still stop the mail)."""
    s = EmailSuppression
    scopes = set(session.scalars(select(s.scope).where(s.email == address, *_in_force(at))))
    _set_flags(session, address, at, **{flag: scope in scopes for scope, flag in _FLAG.items()},
               **({} if SuppressionScope.ALL in scopes else {"suppression_reason": None, "suppressed_at": None}))


def lift(session: Session, email: str, *, why: str, by: str, at: datetime) -> int:
    """Lift every suppression of the address in force, keeping them with who and why; how many were lifted."""
    s = EmailSuppression
    address = email.lower()
    lifted = session.execute(update(s).where(s.email == address, *_in_force(at))
                             .values(lifted_at=at, lifted_by=by, lifted_why=why),
                             execution_options={"synchronize_session": False}).rowcount
    if lifted:
        _refresh_flags(session, address, at)
    return lifted


def lift_expired(session: Session, now: datetime) -> int:
    """Close the suppressions whose time is up (a spell of soft bounces), so their addresses get mail again."""
    s = EmailSuppression
    expired = session.execute(select(s.id, s.email).where(s.lifted_at.is_(None), s.expires_at <= now)).all()
    if not expired:
        return 0
    session.execute(update(s).where(s.id.in_([row.id for row in expired]))
                    .values(lifted_at=s.expires_at, lifted_by="expiry", lifted_why="its time was up"),
                    execution_options={"synchronize_session": False})
    for address in {row.email for row in expired}:
        _refresh_flags(session, address, now)
    return len(expired)
