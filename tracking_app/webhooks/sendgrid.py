"""SendGrid's Event Webhook: the signed-webhook ECDSA signature checked, each event of a batch mapped at the edge."""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from flask import abort, current_app, request

from db.reports import Incoming
from tracking_app.webhooks.common import address, body_json, dumps, line, our_message, record, text
from tutormax.webhook_keys import load_ec_public_key

SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_AGE = 600  # seconds either way: a batch signed longer ago than this is a replay

# what a "dropped" event's reason says about the address (SendGrid keeps its own suppression lists);
# any other reason (Invalid, Unsubscribed Address, Spam Content...) is kept as unknown
DROPPED = {"Bounced Address": "hard", "Spam Reporting Address": "complaint"}


def receive():
    """POST /webhooks/sendgrid: a signed batch of events, each recorded once."""
    key = current_app.config["SETTINGS"].sendgrid_webhook_public_key.get_secret_value()
    if not key:
        abort(404)  # not configured: this webhook does not exist
    if not signed(load_ec_public_key(key), request.headers.get(SIGNATURE, ""), request.headers.get(TIMESTAMP, ""),
                  request.get_data(cache=True), time.time()):
        current_app.logger.warning("SendGrid batch refused: its signature is missing, wrong or too old")
        abort(403)
    _, events = body_json()
    if not isinstance(events, list):
        abort(400)
    lines, unsubscribes, ignored = [], [], 0
    for event in events:
        mapped = event_line(event)
        if mapped is None:
            ignored += 1
            continue
        lines.append(mapped[0])
        if mapped[1]:
            unsubscribes.append(mapped[0])
    return record(lines, unsubscribes, ignored)


def signed(key: ec.EllipticCurvePublicKey, signature: str, timestamp: str, body: bytes, now: float) -> bool:
    """Whether the batch is SendGrid's, signed lately: ECDSA P-256 with SHA-256 over the timestamp and the body."""
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12) or abs(now - int(timestamp)) > MAX_AGE:
        return False
    try:
        key.verify(base64.b64decode(signature, validate=True), timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def event_line(item: Any) -> tuple[Incoming, bool] | None:
    """One SendGrid event as a report line and whether it unsubscribes its recipient; None for one we ignore."""
    event = item if isinstance(item, dict) else {}
    name, fields = event.get("event"), {}
    if name == "processed":
        # SendGrid took the message: the same fact as our own relay's 250, already the message's
        # status; a line per message sent would double what we keep and say nothing new
        return None
    if name == "bounce":
        # "blocked": refused for the sender's reputation or content, not for the address
        kind = "soft" if event.get("type") == "blocked" else "hard"
        fields = {"action": "failed", "status": text(event.get("status"), 20), "diagnostic": text(event.get("reason"))}
    elif name == "dropped":
        # not sent, for what SendGrid already knows of the address: it bounced, or it reported spam
        reason = text(event.get("reason")) or ""
        kind = DROPPED.get(reason, "unknown")
        fields = {"action": "failed" if kind == "hard" else "", "status": text(event.get("status"), 20),
                  "diagnostic": f"dropped: {reason}"}
    elif name == "deferred":
        kind, fields = "soft", {"action": "delayed", "diagnostic": text(event.get("response"))}
    elif name == "delivered":
        kind, fields = "delivered", {"diagnostic": text(event.get("response"))}
    elif name == "spamreport":
        kind = "complaint"
    else:
        # open and click: the tracker records opens and clicks itself, and counting SendGrid's too
        # would count each twice. unsubscribe: kept as unknown, and the recipient is unsubscribed
        # (common.record says why). group_unsubscribe and group_resubscribe: SendGrid's unsubscribe
        # groups, which are none of our categories (SendGrid enforces them itself). Anything else too.
        kind = "unknown"
    raw = dumps(item)
    event_id = text(event.get("sg_event_id"), 150) or "sha256:" + hashlib.sha256(raw.encode()).hexdigest()
    message_id, named = our_message(event.get("smtp-id"))
    incoming = line("sendgrid", f"sendgrid:{event_id}", kind, address(event.get("email")), raw,
                    message_id=message_id, original_message_id=named, **fields)
    return incoming, name == "unsubscribe"
