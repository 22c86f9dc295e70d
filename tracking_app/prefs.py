"""Unsubscribe (RFC 8058 one-click and the footer link) and the preferences page."""

from __future__ import annotations

import hashlib
import hmac

from flask import Blueprint, abort, current_app, render_template, request
from sqlalchemy.exc import OperationalError

from db import tracking
from db.events import Category
from tracking_app.recording import clean_user_agent, db, new_event_key, now, token_or_404
from tutormax.tokens import Purpose

bp = Blueprint("prefs", __name__)

LABELS = {
    Category.FEEDBACK_REMINDERS: "Feedback requests and reminders",
    Category.SESSION_CHECKINS: "Session check-ins",
    Category.PERFORMANCE_REPORTS: "Performance reports",
    Category.WEEKLY_DIGESTS: "Weekly digests",
    Category.MONTHLY_SUMMARIES: "Monthly summaries",
    Category.MARKETING_EMAILS: "News and offers",
    Category.SYSTEM_NOTIFICATIONS: "Scheduling alerts and other notices about your tutoring",
}


def _recipient(purpose: Purpose, token: str):
    data = token_or_404(purpose, token)
    message = tracking.message(db(), data.message_id)
    if message is None or not message.recipient_email:
        abort(404)
    return message


def _csrf(token: str) -> str:
    """A form secret bound to this page's token: another site cannot make it, so it cannot forge the POST."""
    key = current_app.config["SETTINGS"].secret_bytes()
    return hmac.new(key, b"csrf\0" + token.encode(), hashlib.sha256).hexdigest()[:32]


@bp.route("/u/<token>", methods=["GET", "POST"])
def unsubscribe(token: str):
    """GET and HEAD ask (link scanners fetch both); POST unsubscribes at once, no cookie or redirect (RFC 8058)."""
    if request.method != "POST":  # only a POST acts: whatever else reaches this view just asks
        message = _recipient(Purpose.UNSUBSCRIBE, token)
        return render_template("unsubscribe.html", label=LABELS.get(message.category, message.category), token=token)
    data = token_or_404(Purpose.UNSUBSCRIBE, token)
    request_ = {"message_id": data.message_id, "scope": "all" if request.form.get("scope") == "all" else "category",
                "one_click": request.form.get("List-Unsubscribe") == "One-Click", "at": now(),
                "user_agent": clean_user_agent(request.headers.get("User-Agent")), "event_key": new_event_key()}
    try:
        done = tracking.apply_unsubscribe(db(), request_)
        db().commit()
    except OperationalError:
        # an unsubscribe must never be lost: journal it and apply it when the database is back (its key
        # makes the ingest skip it if the commit did go through before the connection was lost)
        db().rollback()
        current_app.config["JOURNAL"].append({"kind": "unsubscribe", **request_})
        done = True
    if not done:
        abort(404)
    return render_template("message.html", title="You're unsubscribed",
                           body="You will get no more emails" + (" from us." if request_["scope"] == "all"
                                                                 else " of this kind.")), 200


@bp.route("/p/<token>", methods=["GET", "POST"])
def preferences(token: str):
    """View and change which kinds of email this address gets."""
    message = _recipient(Purpose.PREFERENCES, token)
    saved = False
    if request.method == "POST":
        if not hmac.compare_digest(request.form.get("csrf", "").encode(), _csrf(token).encode()):
            abort(403)
        at = now()
        values = {c.value: request.form.get(c.value) == "on" for c in Category}
        values["unsubscribed_all"] = request.form.get("unsubscribed_all") == "on"
        values["unsubscribed_at"] = at if values["unsubscribed_all"] else None
        tracking.set_preferences(db(), message.recipient_email, values, at)
        db().commit()
        saved = True
    pref = tracking.preference(db(), message.recipient_email)
    current = {c.value: getattr(pref, c.value) if pref else True for c in Category}
    return render_template("preferences.html", labels=LABELS, current=current, token=token, csrf=_csrf(token),
                           unsubscribed_all=bool(pref and pref.unsubscribed_all), saved=saved)
