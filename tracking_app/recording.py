"""Per-request plumbing: the database session, the client's address, durable event recording."""

from __future__ import annotations

import ipaddress
import uuid
from datetime import datetime, timezone
from typing import Any

from flask import abort, current_app, g, request
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from db import tracking
from tutormax.tokens import BadToken, Purpose, TokenData


def db() -> Session:
    """One database session per request, closed at teardown."""
    if "db" not in g:
        g.db = current_app.config["SESSIONS"]()
    return g.db


def token_or_404(purpose: Purpose, token: str) -> TokenData:
    """The verified token, or 404 for anything malformed, tampered with or for another route."""
    try:
        return current_app.config["LINKS"].signer.verify(purpose, token)
    except BadToken:
        abort(404)


def client_ip() -> str | None:
    """The client's address; X-Forwarded-For counts only when the peer is a trusted proxy."""
    trusted = current_app.config["TRUSTED_PROXIES"]
    chain = [request.remote_addr or ""]
    if trusted:
        forwarded = [p.strip() for p in request.headers.get("X-Forwarded-For", "").split(",") if p.strip()]
        chain = forwarded + chain
    # walk from the nearest hop back; the first address that is not our proxy is the client
    for hop in reversed(chain):
        try:
            # an IPv6 zone ("%eth0") names an interface of the sender's own host, and comes from the
            # client; it means nothing here and would make the address any length
            address = ipaddress.ip_address(hop.partition("%")[0])
        except ValueError:
            return None
        if not any(address in net for net in trusted):
            return str(address)
    return chain[0] or None


def now() -> datetime:
    return datetime.now(timezone.utc)


def record(event: dict[str, Any]) -> None:
    """Commit the event before answering; if the database is unreachable, journal it instead."""
    session = db()
    try:
        tracking.record_event(session, event)
        session.commit()
    except OperationalError:
        session.rollback()
        journal(event)


def journal(event: dict[str, Any]) -> None:
    """Keep an event the database could not take; `tutormax ingest-journal` (and the cleanup and
    analytics flows) move it in later, once."""
    current_app.logger.warning("database unreachable; event journaled for later ingest")
    current_app.config["JOURNAL"].append({**event, "event_key": uuid.uuid4().hex})
