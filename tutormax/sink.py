"""A local SMTP sink: an aiosmtpd server that stores every message in a Maildir, and bounces one domain's later.

Mail to UNREACHABLE_DOMAIN is accepted, as a relay accepts mail it cannot deliver yet, and then
bounced: a delivery status notification (RFC 3464) to the message's envelope sender goes into the
bounce Maildir, the way a relay's bounce reaches a bounce mailbox.
"""

from __future__ import annotations

import mailbox
from datetime import datetime, timezone
from email.utils import format_datetime, make_msgid
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

UNREACHABLE_DOMAIN = "gone.tutormax.example"
SINK_HOST = "sink.tutormax.example"


def _maildir(path: Path) -> mailbox.Maildir:
    # Maildir(create=True) makes tmp/, new/ and cur/ only when it makes the folder itself:
    # in a folder that already exists (even empty) every delivery then failed
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    return mailbox.Maildir(path, create=False)


def dsn(sender: str, recipient: str, original: bytes, at: datetime) -> bytes:
    """A Postfix-style delivery status notification: recipient unknown, addressed to the envelope sender."""
    headers = original.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    boundary = f"{make_msgid(domain=SINK_HOST)[1:-1]}/{SINK_HOST}"
    date = format_datetime(at)
    text = f"""From: MAILER-DAEMON@{SINK_HOST} (Mail Delivery System)
To: {sender}
Subject: Undelivered Mail Returned to Sender
Date: {date}
Message-ID: {make_msgid(domain=SINK_HOST)}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"

This is a MIME-encapsulated message.

--{boundary}
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host {SINK_HOST}.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<{recipient}>: host mx.{UNREACHABLE_DOMAIN} said: 550 5.1.1 <{recipient}>:
    Recipient address rejected: User unknown in virtual mailbox table

--{boundary}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; {SINK_HOST}
Arrival-Date: {date}

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.{UNREACHABLE_DOMAIN}
Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: User
    unknown in virtual mailbox table

--{boundary}
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

{headers}

--{boundary}--
"""
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


class MaildirHandler:
    """Accepts every message and files it, envelope included; UNREACHABLE_DOMAIN's go back as bounces."""

    def __init__(self, path: Path, bounce_path: Path | None = None) -> None:
        self.maildir = _maildir(path)
        self.bounces = _maildir(bounce_path) if bounce_path else None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        unreachable = [r for r in envelope.rcpt_tos if r.lower().endswith("@" + UNREACHABLE_DOMAIN)]
        delivered = [r for r in envelope.rcpt_tos if r not in unreachable]
        if unreachable and self.bounces is not None:
            for recipient in unreachable:
                self.bounces.add(dsn(envelope.mail_from, recipient, data, datetime.now(timezone.utc)))
        if delivered:
            # as a delivering MTA does: the envelope sender as Return-Path, the recipients for the demo to read
            header = f"Return-Path: <{envelope.mail_from}>\r\nX-Sink-Rcpt-To: {', '.join(delivered)}\r\n".encode()
            self.maildir.add(header + data)
        return "250 Message accepted for delivery"


def start_sink(maildir: Path, host: str = "127.0.0.1", port: int = 8025, bounce_maildir: Path | None = None) -> Controller:
    """Start the sink in a background thread; call .stop() on the result when done."""
    controller = Controller(MaildirHandler(maildir, bounce_maildir), hostname=host, port=port,
                            data_size_limit=10 * 1024 * 1024)
    controller.start()
    return controller
