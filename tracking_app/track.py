"""Opens (the pixel) and clicks (the redirect)."""

from __future__ import annotations

import base64
from datetime import timedelta

from flask import Blueprint, abort, current_app, redirect, request
from sqlalchemy.exc import OperationalError

from db import tracking
from db.events import EventType
from tracking_app.classify import classify_click, classify_open, parse_client
from tracking_app.group_commit import BatchFailed, WriteAborted
from tracking_app.recording import client_ip, db, journal, now, record, token_or_404
from tutormax.tokens import BadToken, Purpose

bp = Blueprint("track", __name__)

# open rules that come before "too soon after sending" in classify_open's order
EARLY_RULES = {"apple_mpp_user_agent", "apple_mpp_proxy_ip", "known_prefetcher"}
MIN_HUMAN_SECONDS = 2.0
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, max-age=0", "Pragma": "no-cache", "Expires": "0"}
PIXEL_HEADERS = {"Content-Type": "image/gif", **NO_STORE}


def _message(message_id: int):
    """The message row, None when unknown, or False when the database cannot be reached."""
    try:
        return tracking.message(db(), message_id)
    except OperationalError:
        db().rollback()
        return False


def _user_agent() -> str | None:
    # PostgreSQL text cannot hold NUL; in a batch of opens one such row would fail them all
    return (request.headers.get("User-Agent") or "").replace("\x00", "")[:1000] or None


def _event(message_id: int, kind: EventType, verdict, **fields) -> dict:
    user_agent = _user_agent()
    client = parse_client(user_agent)
    return {"message_id": message_id, "event_type": kind, "event_time": fields.pop("at"), "user_agent": user_agent,
            "ip_address": client_ip(), "is_machine": verdict.is_machine, "machine_reason": verdict.reason,
            "device": client.device, "browser": client.browser[:80], "os": client.os[:80], "created_at": now(),
            "event_data": fields.pop("data", {}), **fields}


@bp.get("/o/<token>.gif")
def open_pixel(token: str):
    """The open pixel: always a 1x1 GIF, never cached; records an open for a genuine token."""
    try:
        data = current_app.config["LINKS"].signer.verify(Purpose.OPEN, token)
    except BadToken:
        return GIF, 200, PIXEL_HEADERS
    at, ip = now(), client_ip()
    user_agent = _user_agent()
    # the rules that do not need the message are settled here; "too soon after sending" is
    # applied with the write, where sent_at is at hand (db.tracking.OpenRecorder)
    early = classify_open(user_agent=user_agent, ip=ip, sent_at=None, at=at,
                          apple_proxy_networks=current_app.config["APPLE_PROXY_NETWORKS"])
    strong = early.reason in EARLY_RULES
    client = parse_client(user_agent)
    try:
        current_app.config["OPENS"].submit({
            "mid": data.message_id, "at": at, "soon": at - timedelta(seconds=MIN_HUMAN_SECONDS), "ua": user_agent,
            "ip": ip, "first_reason": early.reason if strong else None, "late_reason": None if strong else early.reason,
            "device": client.device, "browser": client.browser[:80], "os": client.os[:80]})
    except WriteAborted:
        # the worker is being stopped mid-write: the open may be committed, so journaling it could
        # count it twice
        current_app.logger.warning("open not confirmed: its batch's write was interrupted")
    except BatchFailed as failed:
        if isinstance(failed.__cause__, OperationalError):
            journal(_event(data.message_id, EventType.OPENED, early, at=at))
        else:  # this open itself cannot be stored (the rest of its batch was); the pixel still answers
            current_app.logger.error("open not recorded: %s", type(failed.__cause__).__name__)
    return GIF, 200, PIXEL_HEADERS


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
    record(_event(data.message_id, EventType.CLICKED, verdict, at=at, link_url=target[:2000], link_name=name[:80]))
    response = redirect(target, 302)
    response.headers.update(NO_STORE)
    return response
