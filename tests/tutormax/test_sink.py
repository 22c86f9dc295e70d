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


def test_mail_to_the_unreachable_domain_is_taken_then_bounced_to_its_envelope_sender(tmp_path):
    from tutormax.sink import UNREACHABLE_DOMAIN

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = start_sink(tmp_path / "maildir", port=port, bounce_maildir=tmp_path / "bounces")
    try:
        with smtplib.SMTP("127.0.0.1", port) as smtp:
            refused = smtp.sendmail("bounces+tag@bounce.tutormax.example", [f"gone@{UNREACHABLE_DOMAIN}"],
                                    b"Message-ID: <7.0123456789abcdef@tutormax.example>\r\nSubject: hi\r\n\r\nbody\r\n")
            smtp.sendmail("bounces+tag2@bounce.tutormax.example", ["here@example.com"], b"Subject: ok\r\n\r\nbody\r\n")
    finally:
        sink.stop()
    assert refused == {}  # taken, as a relay takes mail it cannot deliver yet
    (delivered,) = mailbox.Maildir(tmp_path / "maildir").values()
    assert (delivered["Subject"], delivered["Return-Path"]) == ("ok", "<bounces+tag2@bounce.tutormax.example>")
    (report,) = mailbox.Maildir(tmp_path / "bounces").values()
    assert report["To"] == "bounces+tag@bounce.tutormax.example"
    assert (report.get_content_type(), report.get_param("report-type")) == ("multipart/report", "delivery-status")
    status = next(part for part in report.walk() if part.get_content_type() == "message/delivery-status")
    text = status.as_string()
    assert f"Final-Recipient: rfc822; gone@{UNREACHABLE_DOMAIN}" in text and "Status: 5.1.1" in text
    headers = next(part for part in report.walk() if part.get_content_type() == "text/rfc822-headers")
    assert "Message-ID: <7.0123456789abcdef@tutormax.example>" in headers.get_payload()
