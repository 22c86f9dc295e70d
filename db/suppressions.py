"""Suppressions: addresses that get no more mail (or no more marketing), why, on whose evidence, and who lifted them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, or_, select, update
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


def _set_flags(session: Session, rows: list[dict[str, object]], at: datetime) -> None:
    """Upsert the preferences flags of many addresses (rows of email plus flags, the same keys in each)."""
    if not rows:
        return
    insert_ = (postgresql.insert if is_postgres(session) else sqlite.insert)(EmailPreference)
    values = [{**row, "created_at": at, "updated_at": at} for row in rows]
    flags = [key for key in values[0] if key not in ("email", "created_at")]
    session.execute(insert_.on_conflict_do_update(index_elements=["email"],
                                                  set_={key: getattr(insert_.excluded, key) for key in flags}), values)


@dataclass(frozen=True)
class Suppression:
    """One suppression to record."""

    email: str
    reason: SuppressionReason
    source: SuppressionSource
    detail: str | None = None
    report: str | None = None
    message_id: int | None = None
    expires_at: datetime | None = None
    scope: SuppressionScope = SuppressionScope.ALL


def suppress_many(session: Session, wanted: Sequence[Suppression], at: datetime) -> int:
    """Record suppressions and stop mail to their addresses; how many were new.

    One for an address and reason already in force (or twice in `wanted`) is skipped: a second
    report of the same bounce is evidence of nothing new.
    """
    fresh: dict[tuple[str, str], Suppression] = {}
    for item in wanted:
        fresh.setdefault((item.email.lower(), item.reason), item)
    if not fresh:
        return 0
    s = EmailSuppression
    held = set(session.execute(select(s.email, s.reason).where(
        s.email.in_({email for email, _ in fresh}), *_in_force(at))).tuples())
    new = [item for key, item in fresh.items() if key not in held]
    if not new:
        return 0
    session.execute(insert(s), [{"email": i.email.lower(), "reason": i.reason, "source": i.source, "detail": i.detail,
                                 "report": i.report, "message_id": i.message_id, "created_at": at,
                                 "expires_at": i.expires_at, "scope": i.scope} for i in new])
    everything = {i.email.lower(): {"email": i.email.lower(), "suppressed": True, "suppression_reason": i.reason.value,
                                    "suppressed_at": at} for i in new if i.scope is SuppressionScope.ALL}
    marketing = {i.email.lower(): {"email": i.email.lower(), "marketing_suppressed": True} for i in new
                 if i.scope is SuppressionScope.MARKETING}
    _set_flags(session, list(everything.values()), at)
    _set_flags(session, list(marketing.values()), at)
    return len(new)


def suppress(session: Session, email: str, *, at: datetime, **fields: Any) -> bool:
    """Record one suppression (Suppression's fields); False when one for the same reason is in force already."""
    return suppress_many(session, [Suppression(email=email, **fields)], at) == 1


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


def _refresh_flags(session: Session, address: str, at: datetime) -> None:
    """Set the preferences flags from the suppressions still in force (another may still stop the mail)."""
    s = EmailSuppression
    scopes = set(session.scalars(select(s.scope).where(s.email == address, *_in_force(at))))
    flags: dict[str, object] = {flag: scope in scopes for scope, flag in _FLAG.items()}
    if SuppressionScope.ALL not in scopes:
        flags.update(suppression_reason=None, suppressed_at=None)
    _set_flags(session, [{"email": address, **flags}], at)


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
