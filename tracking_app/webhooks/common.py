"""What the provider webhooks share: the body as JSON, fields read defensively, our message, recording once."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from flask import abort, current_app, jsonify
from flask import request as flask_request
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from db import reports, tracking
from db.events import SuppressionSource
from db.models import EmailReport
from tracking_app.recording import db, now

# SendGrid posts its events in batches of up to 768 KB, and an SNS message may be 256 KB before
# JSON escapes it again: the tracker's 64 KiB limit for forms would refuse them
MAX_BODY = 2 * 1024 * 1024

# our Message-ID, <{message_id}.{16 hex}@{domain}>; db.reports checks the digest. No leading zero:
# "<042." would not start with "42.", and db.reports would then believe the number unchecked
_OUR_MESSAGE_ID = re.compile(r"<?([1-9][0-9]{0,18})\.[0-9a-f]{16}@[^<>@\s]+>?")
_BIGINT = 2**63 - 1


def body_json() -> tuple[str, Any]:
    """The request body as text and as parsed JSON; 400 unless it is UTF-8 JSON."""
    try:
        text = flask_request.get_data(cache=True).decode("utf-8")
        return text, json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser recurses
        abort(400)


def dumps(value: Any) -> str:
    """One event as JSON text, kept as its report's raw payload (ASCII: any string in it can be stored)."""
    try:
        return json.dumps(value)
    except RecursionError:  # parsed a few frames shallower than it is written out
        abort(400)


def text(value: Any, limit: int = 2000) -> str | None:
    """A string field as we store it, or None when it is absent, empty or not a string."""
    if not isinstance(value, str):
        return None
    # no database stores a NUL in text, and a lone surrogate cannot be encoded to be stored at all
    clean = value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    return clean[:limit] or None


def address(value: Any) -> str:
    """The recipient an event names, or "" when it names none we could store (never cut short: that is another one)."""
    clean = (text(value, 10_000) or "").strip()
    return clean if len(clean.lower()) <= 320 else ""


def items(value: Any) -> list[dict[str, Any]]:
    """The objects of a JSON list (a provider's per-recipient entries); anything else in it is skipped."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def listed(value: Any) -> list[Any]:
    """The items of a JSON list (addresses, say), or none when it is not a list."""
    return value if isinstance(value, list) else []


def field(value: Any, *path: str) -> Any:
    """value[path[0]][path[1]]..., or None where a step is missing or not an object."""
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def our_message(*headers: Any) -> tuple[int | None, str | None]:
    """The message and Message-ID of the first of these that is one of our Message-IDs, else (None, None)."""
    for header in headers:
        named = text(header, 1000)
        match = _OUR_MESSAGE_ID.fullmatch(named.strip()) if named else None
        if match and int(match[1]) <= _BIGINT:
            return int(match[1]), named.strip()
    return None, None


def line(detector: str, report_id: str, kind: str, recipient: str, raw: str, **fields: Any) -> reports.Incoming:
    """One provider event's line for one recipient, as received now."""
    return reports.Incoming(source=SuppressionSource.WEBHOOK, report_id=text(report_id, 200) or detector, kind=kind,
                            recipient=recipient, raw=raw, received_at=now(), detector=detector, **fields)


def record(lines: Sequence[reports.Incoming], unsubscribes: Collection[reports.Incoming] = (),
           ignored: int = 0):
    """Record the lines once each, apply their rules, commit, and answer what happened (200).

    An unsubscribes line is the recipient unsubscribing through the provider's own link: they
    asked to get no more of our mail, so the first time it is recorded (a retry must not undo a
    later resubscribe) they are unsubscribed from everything, as by our own page."""
    session = db()
    at = now()
    rules_ = reports.Rules.of(current_app.config["SETTINGS"])
    done: Counter[str] = Counter(ignored=ignored) if ignored else Counter()
    for incoming in lines:
        counts = reports.apply(session, [incoming], rules_, at)
        done.update(counts)
        if incoming in unsubscribes and not counts["already_recorded"]:
            done["unsubscribed"] += _unsubscribe(session, incoming, at)
    session.commit()
    return jsonify(done)


def _unsubscribe(session: Session, incoming: reports.Incoming, at: datetime) -> bool:
    """Unsubscribe the line's recipient from everything; on our message too when the report named it,
    so that it counts among the message's unsubscribes, as one through our own page does."""
    r = EmailReport
    line_id, message_id = session.execute(select(r.id, r.message_id).where(
        r.source == incoming.source, r.report_id == incoming.report_id[:200]).order_by(r.id.desc()).limit(1)).one()
    if message_id is not None and tracking.apply_unsubscribe(session, {
            "message_id": message_id, "scope": "all", "one_click": False, "at": at,
            "event_key": f"report:{line_id}:unsubscribe"}):
        return True
    if incoming.recipient:
        tracking.set_preferences(session, incoming.recipient, {"unsubscribed_all": True, "unsubscribed_at": at}, at)
    return bool(incoming.recipient)


def json_error(exc: HTTPException):
    """Providers show our answer in their delivery logs: a word in JSON, never the visitors' pages."""
    code = exc.code or 500
    return jsonify(error=HTTP_STATUS_CODES.get(code, "error").lower().replace(" ", "_")), code


def database_down(_exc: OperationalError):
    """503: every provider tries again later, and the event's unique key makes a retry record it once."""
    current_app.logger.warning("database unreachable; provider webhook answered 503 for a retry")
    return jsonify(error="service_unavailable"), 503
