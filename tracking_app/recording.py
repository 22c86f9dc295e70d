"""Per-request plumbing: the database session, the client's address, durable event recording."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from flask import abort, current_app, g, request
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from db import tracking
from tracking_app.classify import IPNetwork, Verdict, parse_client
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
    return peer_or_forwarded(request.remote_addr, request.headers.get("X-Forwarded-For"),
                             current_app.config["TRUSTED_PROXIES"])


def peer_or_forwarded(peer: str | None, forwarded_for: str | None, trusted: Sequence[IPNetwork]) -> str | None:
    """The client's address from the peer and its X-Forwarded-For, believing only trusted proxies."""
    chain = [peer or ""]
    if trusted:
        forwarded = [p.strip() for p in (forwarded_for or "").split(",") if p.strip()]
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


def clean_user_agent(raw: str | None) -> str | None:
    """The user agent as stored: NUL-free and bounded, None when absent."""
    # PostgreSQL text cannot hold NUL; in a batch of opens one such row would fail them all
    return (raw or "").replace("\x00", "")[:1000] or None


def event_row(message_id: int, kind: str, verdict: Verdict, *, at: datetime, user_agent: str | None,
              ip: str | None, **fields: Any) -> dict[str, Any]:
    """One tracking event as record() and journal() take it, its client read from the user agent."""
    client = parse_client(user_agent)
    return {"event_key": new_event_key(), "message_id": message_id, "event_type": kind, "event_time": at,
            "user_agent": user_agent, "ip_address": ip, "is_machine": verdict.is_machine,
            "machine_reason": verdict.reason, "device": client.device, "browser": client.browser[:80],
            "os": client.os[:80], "created_at": now(), "event_data": fields.pop("data", {}), **fields}


def new_event_key() -> str:
    """A key unique to one event: the database and the journal both carry it, so it is stored once."""
    return uuid.uuid4().hex


def now() -> datetime:
    return datetime.now(timezone.utc)


def record(event: dict[str, Any]) -> None:
    """Commit the event before answering; if the database is unreachable, journal it instead.

    A connection lost during the commit leaves its outcome unknown; the journaled copy keeps the
    event's key, so the ingest skips it if the commit did go through."""
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
    current_app.config["JOURNAL"].append({"event_key": new_event_key(), **event})
