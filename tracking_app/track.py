"""Clicks: record the click, then redirect to the signed target (opens: tracking_app.pixel)."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, abort, redirect, request
from sqlalchemy.exc import OperationalError

from db import tracking
from db.events import EventType
from tracking_app.classify import classify_click
from tracking_app.pixel import NO_STORE
from tracking_app.recording import clean_user_agent, client_ip, db, event_row, now, record, token_or_404
from tutormax.tokens import Purpose

bp = Blueprint("track", __name__)


def _message(message_id: int):
    """The message row, None when unknown, or False when the database cannot be reached."""
    try:
        return tracking.message(db(), message_id)
    except OperationalError:
        db().rollback()
        return False


@bp.route("/c/<token>", methods=["GET", "HEAD"])
def click(token: str):
    """A tracked link: record the click, then redirect to the signed http(s) target, never elsewhere."""
    data = token_or_404(Purpose.CLICK, token)
    name, _, target = data.extra.decode("utf-8", "replace").partition("\n")
    if not target.startswith(("http://", "https://")) or any(c in target for c in "\r\n\\"):
        abort(404)
    message = _message(data.message_id)
    if message is None:
        abort(404)  # a genuine signature for a message that no longer exists
    at = now()
    previous = []
    if message:
        try:
            previous = tracking.recent_clicks(db(), data.message_id, at - timedelta(seconds=2))
        except OperationalError:
            db().rollback()
    verdict = classify_click(method=request.method, user_agent=request.headers.get("User-Agent"),
                             sent_at=message.sent_at if message else None, at=at, previous_click_times=previous)
    record(event_row(data.message_id, EventType.CLICKED, verdict, at=at,
                     user_agent=clean_user_agent(request.headers.get("User-Agent")), ip=client_ip(),
                     link_url=target[:2000], link_name=name[:80]))
    response = redirect(target, 302)
    response.headers.update(NO_STORE)
    return response
