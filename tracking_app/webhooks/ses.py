"""Amazon SES events through SNS: the SNS signature checked against SES_SNS_CERTIFICATE, each event mapped at the edge.

The signing certificate is the one the operator downloaded and configured: SigningCertURL is
never fetched (no network here, and a URL the sender chooses would be a server-side request
forgery hole). SNS signs every topic's messages alike, so anyone's topic could subscribe this
URL: a subscription is confirmed only for SES_SNS_TOPIC_ARN, and other topics are refused.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from flask import abort, current_app, jsonify

from db.reports import Incoming
from tracking_app.webhooks.common import address, body_json, field, items, line, listed, our_message, record, text

# the fields signed, in AWS's order ("Verifying the signatures of Amazon SNS messages"); Subject only when present
SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
SNS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com")
SNS_CERTIFICATE_URL = re.compile(r"https://sns\.[a-z0-9-]+\.amazonaws\.com/SimpleNotificationService-[0-9a-f]+\.pem")

BOUNCE_KINDS = {"Permanent": "hard", "Transient": "soft", "Undetermined": "soft"}


def receive():
    """POST /webhooks/ses: an SNS message; a notification's SES event is recorded, a subscription confirmed."""
    settings = current_app.config["SETTINGS"]
    if not settings.ses_sns_certificate:
        abort(404)  # not configured: this webhook does not exist
    body, message = body_json()
    if not isinstance(message, dict) or text(message.get("Type")) not in SIGNED:
        abort(400)
    if not verified(message, _certificate(settings.ses_sns_certificate)):
        url = message.get("SigningCertURL")
        # the URL names AWS's current certificate, which tells an operator which one to install after a rotation
        current_app.logger.warning("SNS message refused: its signature does not verify with SES_SNS_CERTIFICATE%s",
                                   f" (it names {url})" if isinstance(url, str) and SNS_CERTIFICATE_URL.fullmatch(url)
                                   else "")
        abort(403)
    if settings.ses_sns_topic_arn and message["TopicArn"] != settings.ses_sns_topic_arn:
        abort(403)
    if message["Type"] == "UnsubscribeConfirmation":
        return jsonify({})
    if message["Type"] == "SubscriptionConfirmation":
        return _confirm(message, configured=bool(settings.ses_sns_topic_arn))
    lines, ignored = notification_lines(message, body)
    return record(lines, ignored=ignored)


def verified(message: dict[str, Any], certificate: x509.Certificate) -> bool:
    """Whether the SNS message's signature (version 1: SHA1withRSA, 2: SHA256withRSA) verifies with this certificate."""
    version, key = message.get("SignatureVersion"), certificate.public_key()
    signed = string_to_sign(message)
    if signed is None or not isinstance(version, str) or version not in HASHES or not isinstance(
            key, rsa.RSAPublicKey) or not isinstance(message.get("Signature"), str):
        return False
    try:
        key.verify(base64.b64decode(message["Signature"], validate=True), signed, padding.PKCS1v15(),
                   HASHES[version]())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def string_to_sign(message: dict[str, Any]) -> bytes | None:
    """The bytes SNS signed: each signed field's name and value on lines of their own; None if one is missing."""
    parts = []
    for name in SIGNED[message["Type"]]:
        value = message.get(name)
        if name == "Subject" and value is None:
            continue
        if not isinstance(value, str):
            return None
        parts.append(f"{name}\n{value}\n")
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: nothing SNS signed
        return None


def _certificate(path: str) -> x509.Certificate:
    """The configured certificate, read for each message so that replacing the file needs no restart."""
    try:
        return x509.load_pem_x509_certificate(Path(path).read_bytes())
    except (OSError, ValueError):
        current_app.logger.error("SES_SNS_CERTIFICATE cannot be read as a PEM certificate")
        abort(503)  # ours to fix; SNS tries again meanwhile


def confirm_subscription(url: str) -> bool:
    """GET the SubscribeURL, which is how SNS takes a confirmation; whether it answered 200."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 -- an https SNS URL, checked by _confirm
            return response.status == 200
    except (OSError, ValueError):
        return False


def _confirm(message: dict[str, Any], configured: bool):
    """Confirm the subscription of SES_SNS_TOPIC_ARN (its topic was checked); refuse any other."""
    if not configured:
        # a topic we were not told to accept: confirming it would let its owner feed us events
        current_app.logger.warning("SNS subscription not confirmed: set SES_SNS_TOPIC_ARN to its topic to accept it")
        abort(403)
    url = message.get("SubscribeURL")
    try:
        parts = urlsplit(url)
    except ValueError:
        abort(403)
    if parts.scheme != "https" or not SNS_HOST.fullmatch(parts.netloc):
        abort(403)  # only SNS itself is ever fetched
    if not confirm_subscription(url):
        current_app.logger.warning("SNS subscription confirmation failed; SNS sends it again")
        return jsonify(error="bad_gateway"), 502
    return jsonify(confirmed=True)


def notification_lines(message: dict[str, Any], body: str) -> tuple[list[Incoming], int]:
    """An SNS notification's SES event as report lines, one per recipient, and how many events were ignored.

    Both SES formats are read: event publishing (eventType) and notifications (notificationType).
    Whatever names no recipient is kept whole as one unknown line."""
    report_id = f"ses:{message['MessageId']}"
    try:
        event = json.loads(message["Message"])
    except (ValueError, RecursionError):
        event = None  # "Successfully validated SNS topic for Amazon SES event publishing." and the like
    if not isinstance(event, dict):
        return [line("ses", report_id, "unknown", "", body)], 0
    ses_type = event.get("eventType") or event.get("notificationType")
    if ses_type == "Send":
        # SES took the message: the same fact as our own relay's 250, already the message's status;
        # a line per message sent would double what we keep and say nothing new
        return [], 1
    mail = event.get("mail")
    headers = [h.get("value") for h in items(field(mail, "headers")) if str(h.get("name")).lower() == "message-id"]
    message_id, named = our_message(field(mail, "commonHeaders", "messageId"), *headers)
    found: list[tuple[Any, dict[str, Any]]]  # (recipient, the line's fields)
    if ses_type == "Bounce":
        bounce = event.get("bounce")
        kind = BOUNCE_KINDS.get(text(field(bounce, "bounceType")) or "", "soft")
        summary = ": ".join(filter(None, (text(field(bounce, "bounceType")), text(field(bounce, "bounceSubType")))))
        found = [(entry.get("emailAddress"), {"action": text(entry.get("action"), 20) or "failed",
                                              "status": text(entry.get("status"), 20),
                                              "diagnostic": text(entry.get("diagnosticCode")) or summary or None})
                 for entry in items(field(bounce, "bouncedRecipients"))]
    elif ses_type == "DeliveryDelay":
        delay, kind = event.get("deliveryDelay"), "soft"
        found = [(entry.get("emailAddress"), {"action": "delayed", "status": text(entry.get("status"), 20),
                                              "diagnostic": text(entry.get("diagnosticCode"))
                                              or text(field(delay, "delayType"))})
                 for entry in items(field(delay, "delayedRecipients"))]
    elif ses_type == "Complaint":
        complaint, kind = event.get("complaint"), "complaint"
        found = [(entry.get("emailAddress"), {"diagnostic": text(field(complaint, "complaintFeedbackType"))})
                 for entry in items(field(complaint, "complainedRecipients"))]
    elif ses_type == "Delivery":
        delivery, kind = event.get("delivery"), "delivered"
        found = [(r, {"diagnostic": text(field(delivery, "smtpResponse"))}) for r in listed(field(delivery, "recipients"))]
    else:
        # Reject: SES refused to send our message (a virus in it), which says nothing against the
        # address. Open and Click: the tracker records opens and clicks itself, and counting SES's
        # too would count each twice. They, and anything else (Rendering Failure, Subscription, a
        # type SES adds later), are kept as unknown lines with their payload.
        kind = "unknown"
        found = [(r, {"diagnostic": text(field(event, "reject", "reason"))}) for r in listed(field(mail, "destination"))]
    ours = {"message_id": message_id, "original_message_id": named}
    lines = [line("ses", report_id, kind, a, body, **ours, **fields) for r, fields in found if (a := address(r))]
    return lines or [line("ses", report_id, "unknown", "", body, **ours)], 0
