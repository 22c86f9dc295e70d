"""Postmark's webhooks, behind HTTP Basic auth: one event a request, mapped at the edge.

Missing and wrong credentials both answer 401 with a challenge, as HTTP has it: Postmark stops
retrying at a 403, so a password typo answered 403 would lose every event sent until it is
fixed, where a 401 has them sent again (for about ten hours) once it is.
"""

from __future__ import annotations

import hmac
from typing import Any

from flask import abort, current_app, jsonify, request

from db.reports import Incoming
from tracking_app.webhooks.common import address, body_json, field, line, record, text

# a Bounce's Type (Postmark's bounce types); any other is kept as unknown
BOUNCE_KINDS = {
    "HardBounce": ("hard", "failed"),
    "BadEmailAddress": ("hard", "failed"),
    "SoftBounce": ("soft", "failed"),
    "Blocked": ("soft", "failed"),  # refused by the receiving side's policy: counted, as SendGrid's "blocked"
    "Transient": ("soft", "delayed"),  # "message delayed": Postmark is still trying
    "DnsError": ("soft", "delayed"),  # a temporary DNS error, also retried
    "SpamComplaint": ("complaint", ""),
    "AutoResponder": ("auto_reply", ""),
    "AddressChange": ("auto_reply", ""),
    "ChallengeVerification": ("auto_reply", ""),
}
# the other Types are kept as unknown: SpamNotification (a filter's verdict, not the recipient's
# complaint), VirusNotification and DMARCPolicy (our message or our domain was refused, not the
# address), ManuallyDeactivated, Unsubscribe, Subscribe, OpenRelayTest, Unknown and the like
TIME_FIELDS = ("BouncedAt", "DeliveredAt", "ReceivedAt", "ChangedAt")


def receive():
    """POST /webhooks/postmark: one event, behind HTTP Basic auth."""
    settings = current_app.config["SETTINGS"]
    user, password = settings.postmark_webhook_user, settings.postmark_webhook_password.get_secret_value()
    if not (user and password):
        abort(404)  # not configured: this webhook does not exist
    if not authorized(user, password):
        response = jsonify(error="unauthorized")
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Basic realm="postmark-webhook"'
        return response
    body, event = body_json()
    if not isinstance(event, dict):
        abort(400)
    incoming, unsubscribes = event_line(event, body)
    return record([incoming], [incoming] if unsubscribes else [])


def authorized(user: str, password: str) -> bool:
    """Whether the request carries these Basic credentials (compared in constant time, both of them)."""
    given = request.authorization
    if given is None or given.type != "basic":
        return False
    same_user = hmac.compare_digest((given.username or "").encode(), user.encode())
    same_password = hmac.compare_digest((given.password or "").encode(), password.encode())
    return same_user & same_password


def event_line(event: dict[str, Any], raw: str) -> tuple[Incoming, bool]:
    """The event as a report line, and whether it is the recipient unsubscribing through Postmark's link."""
    record_type, fields = event.get("RecordType"), {}
    unsubscribes = False
    if record_type == "Bounce":
        kind, action = BOUNCE_KINDS.get(text(event.get("Type")) or "", ("unknown", ""))
        fields = {"action": action, "diagnostic": text(event.get("Details")) or text(event.get("Description"))}
    elif record_type == "SpamComplaint":
        kind = "complaint"
    elif record_type == "Delivery":
        kind, fields = "delivered", {"diagnostic": text(event.get("Details"))}
    else:
        # Open and Click: the tracker records opens and clicks itself, and counting Postmark's too
        # would count each twice. SubscriptionChange: a recipient who suppressed themselves through
        # Postmark's unsubscribe link asked for no more of our mail (common.record unsubscribes
        # them); the rest (Postmark suppressing after a bounce or a complaint, whose own events
        # come too; an operator's change; a reactivation) is kept as it came. Anything else too.
        kind = "unknown"
        unsubscribes = (record_type == "SubscriptionChange" and event.get("SuppressSending") is True
                        and event.get("SuppressionReason") == "ManualSuppression" and event.get("Origin") == "Recipient")
    recipient = address(event.get("Email")) or address(event.get("Recipient"))  # bounces name Email, the rest Recipient
    return line("postmark", f"postmark:{report_id(event)}", kind, recipient, raw, message_id=our_number(event),
                **fields), unsubscribes


def our_number(event: dict[str, Any]) -> int | None:
    """Our message's number, when the event's Metadata carries it: Postmark returns our Message-ID to no one."""
    value = field(event, "Metadata", "message_id")
    digits = str(value) if isinstance(value, int) and not isinstance(value, bool) else text(value, 20) or ""
    return int(digits) if digits.isascii() and digits.isdigit() and 0 < int(digits) < 2**63 else None


def report_id(event: dict[str, Any]) -> str:
    """The event's ID; events without one (deliveries, opens...) by their type, message and time.

    The recipient is the report key's third part already; the time tells a second open from a retry."""
    event_id = event.get("ID")
    if isinstance(event_id, (int, str)) and not isinstance(event_id, bool) and str(event_id):
        return str(event_id)
    when = next((event[name] for name in TIME_FIELDS if isinstance(event.get(name), str)), "")
    return ":".join(text(part, 60) or "" for part in (event.get("RecordType"), event.get("MessageID"), when))
