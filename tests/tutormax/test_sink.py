"""The local SMTP sink stores what it is sent in a Maildir."""

from __future__ import annotations

import mailbox
import smtplib
import socket

import pytest

from tutormax.sink import start_sink


@pytest.mark.parametrize("folder", ["missing", "existing and empty"])
def test_sink_files_each_message(tmp_path, folder):
    if folder != "missing":
        (tmp_path / "maildir").mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = start_sink(tmp_path / "maildir", port=port)
    try:
        with smtplib.SMTP("127.0.0.1", port) as smtp:
            smtp.sendmail("a@example.com", ["b@example.com"], b"Subject: hi\r\n\r\nbody\r\n")
            smtp.sendmail("a@example.com", ["c@example.com"], b"Subject: again\r\n\r\nbody\r\n")
    finally:
        sink.stop()
    messages = sorted((m["Subject"], m["X-Sink-Rcpt-To"]) for m in mailbox.Maildir(tmp_path / "maildir").values())
    assert messages == [("again", "c@example.com"), ("hi", "b@example.com")]
