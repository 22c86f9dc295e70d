"""A local SMTP sink: an aiosmtpd server that stores every message in a Maildir."""

from __future__ import annotations

import mailbox
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class MaildirHandler:
    """Accepts every message and files it, envelope recipients included, in one Maildir."""

    def __init__(self, path: Path) -> None:
        # Maildir(create=True) makes tmp/, new/ and cur/ only when it makes the folder itself:
        # in a folder that already exists (even empty) every delivery then failed
        for sub in ("tmp", "new", "cur"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        self.maildir = mailbox.Maildir(path, create=False)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        header = f"X-Sink-Rcpt-To: {', '.join(envelope.rcpt_tos)}\r\n".encode()
        self.maildir.add(header + data)
        return "250 Message accepted for delivery"


def start_sink(maildir: Path, host: str = "127.0.0.1", port: int = 8025) -> Controller:
    """Start the sink in a background thread; call .stop() on the result when done."""
    controller = Controller(MaildirHandler(maildir), hostname=host, port=port, data_size_limit=10 * 1024 * 1024)
    controller.start()
    return controller
