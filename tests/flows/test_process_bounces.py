"""process-bounces: a bounce mailbox (a Maildir, or a real IMAP server) read once, its reports acted on, never twice."""

from __future__ import annotations

import imaplib
import mailbox
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from db.models import EmailMessage, EmailPreference, EmailReport, EmailSuppression
from db.session import transaction
from flows.process_bounces import process_bounces
from tasks.deliver import deliver_batch
from tutormax.settings import get_settings
from tutormax.simulate import complaint
from tutormax.sink import dsn

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bounces"
BOUNCE_ADDRESS = "bounces@bounce.tutormax.example"


@pytest.fixture
def delivered(smtp_server, enqueue, now, monkeypatch):
    """Three messages sent with tagged envelope senders; their (message id, envelope sender, bytes) by address."""
    monkeypatch.setenv("BOUNCE_ADDRESS", BOUNCE_ADDRESS)
    get_settings.cache_clear()
    ids = {address: enqueue(address) for address in ("gone@example.com", "angry@example.com", "away@example.com")}
    deliver_batch.fn(now=now)
    return {rcpts[0]: (ids[rcpts[0]], sender, raw)
            for (rcpts, raw), sender in zip(smtp_server.received, smtp_server.senders)}


def _reports(delivered) -> list[bytes]:
    """What comes back: a DSN for gone@, a complaint about angry@, an out-of-office from away@, something unknown."""
    _, gone_sender, gone_raw = delivered["gone@example.com"]
    _, angry_sender, angry_raw = delivered["angry@example.com"]
    at = datetime(2026, 11, 20, 16, tzinfo=timezone.utc)
    stored = b"Return-Path: <" + angry_sender.encode() + b">\r\nX-Sink-Rcpt-To: angry@example.com\r\n" + angry_raw
    return [dsn(gone_sender, "gone@example.com", gone_raw, at), complaint(stored, at),
            (FIXTURES / "out_of_office.eml").read_bytes(), (FIXTURES / "unknown_spam.eml").read_bytes()]


def _state(url):
    with transaction(url) as s:
        suppressed = sorted((x.email, x.reason, x.source, x.scope) for x in s.scalars(select(EmailSuppression)))
        kinds = sorted(r.kind for r in s.scalars(select(EmailReport)))
        bounced = sorted(m.recipient_email for m in s.scalars(select(EmailMessage).where(EmailMessage.bounced_at.is_not(None))))
        marketing = s.scalar(select(EmailPreference.marketing_suppressed).where(EmailPreference.email == "angry@example.com"))
    return suppressed, kinds, bounced, marketing


EXPECTED = ([("angry@example.com", "complaint", "arf", "marketing"), ("gone@example.com", "hard_bounce", "dsn", "all")],
            ["auto_reply", "complaint", "hard", "unknown"], ["gone@example.com"], True)


def test_a_maildir_is_read_once_and_its_reports_acted_on(prefect_harness, delivered, db_url, now, tmp_path,
                                                         monkeypatch):
    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    reports = _reports(delivered)
    for report in reports:
        box.add(report)
    monkeypatch.setenv("BOUNCE_MAILDIR", str(tmp_path / "bounces"))
    get_settings.cache_clear()
    first = process_bounces(now=now)
    assert {k: first[k] for k in ("reports", "hard", "complaint", "auto_reply", "unknown", "suppressed")} == {
        "reports": 4, "hard": 1, "complaint": 1, "auto_reply": 1, "unknown": 1, "suppressed": 2}
    assert _state(db_url) == EXPECTED
    # read ones are in cur/ with the S flag: none waits in new/, none was deleted
    assert os.listdir(tmp_path / "bounces" / "new") == []
    assert sorted(name.endswith(":2,S") for name in os.listdir(tmp_path / "bounces" / "cur")) == [True] * 4
    assert process_bounces(now=now)["reports"] == 0
    # the same reports put back unread: recorded once all the same
    for report in reports:
        box.add(report)
    again = process_bounces(now=now)
    assert (again["reports"], again["already_recorded"], again.get("suppressed", 0)) == (4, 4, 0)
    assert _state(db_url) == EXPECTED


def test_a_dry_run_reads_and_counts_and_changes_nothing(prefect_harness, delivered, db_url, now, tmp_path,
                                                        monkeypatch):
    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    for report in _reports(delivered):
        box.add(report)
    monkeypatch.setenv("BOUNCE_MAILDIR", str(tmp_path / "bounces"))
    get_settings.cache_clear()
    result = process_bounces(now=now, dry_run=True)
    assert {k: result[k] for k in ("reports", "hard", "complaint", "auto_reply", "unknown")} == {
        "reports": 4, "hard": 1, "complaint": 1, "auto_reply": 1, "unknown": 1}
    assert _state(db_url) == ([], [], [], None) and len(os.listdir(tmp_path / "bounces" / "new")) == 4


def test_without_a_mailbox_it_says_so_and_still_ends_expired_suppressions(prefect_harness, db_url, now):
    result = process_bounces(now=now)
    assert (result["mailbox"], result["lifted"]) == (None, 0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(params=["none", "starttls"])
def imap_server(request, tls_certificate, monkeypatch):
    """A real IMAP server (pymap, in memory) on a free port; the settings point at it, with or without STARTTLS."""
    cert, key = tls_certificate
    port = _free_port()
    tls = ["--cert", str(cert), "--key", str(key)] if request.param == "starttls" else ["--no-tls"]
    pymap = Path(sys.executable).with_name("pymap")  # its console script, beside this Python
    server = subprocess.Popen([str(pymap), "--host", "127.0.0.1", "--port", str(port), *tls, "dict"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    monkeypatch.setenv("BOUNCE_IMAP_HOST", "127.0.0.1")
    monkeypatch.setenv("BOUNCE_IMAP_PORT", str(port))
    monkeypatch.setenv("BOUNCE_IMAP_USER", "demouser")
    monkeypatch.setenv("BOUNCE_IMAP_PASSWORD", "demopass")
    monkeypatch.setenv("BOUNCE_IMAP_TLS", request.param)
    monkeypatch.setenv("BOUNCE_IMAP_CA_FILE", str(cert))
    get_settings.cache_clear()
    yield port
    server.terminate()
    server.wait(timeout=10)


def _imap(port):
    imap = imaplib.IMAP4("127.0.0.1", port)
    if get_settings().bounce_imap_tls == "starttls":
        import ssl

        imap.starttls(ssl_context=ssl.create_default_context(cafile=get_settings().bounce_imap_ca_file))
    imap.login("demouser", "demopass")
    return imap


@pytest.mark.parametrize("processed_folder", ["", "Processed"])
def test_an_imap_mailbox_is_read_then_flagged_or_moved_never_deleted_unread(prefect_harness, delivered, db_url, now,
                                                                            imap_server, monkeypatch,
                                                                            processed_folder):
    monkeypatch.setenv("BOUNCE_IMAP_PROCESSED_FOLDER", processed_folder)
    get_settings.cache_clear()
    imap = _imap(imap_server)
    for report in _reports(delivered):
        imap.append("INBOX", None, None, report)
    result = process_bounces(now=now)
    assert (result["reports"], result["suppressed"]) == (4, 2)
    assert _state(db_url) == EXPECTED
    imap.select("INBOX")
    if processed_folder:  # moved, all of them
        assert imap.uid("SEARCH", None, "ALL")[1] == [b""]
        imap.select("Processed")
        assert len(imap.uid("SEARCH", None, "SEEN")[1][0].split()) == 4
    else:  # flagged where they are
        assert imap.uid("SEARCH", None, "UNSEEN")[1] == [b""]
        assert len(imap.uid("SEARCH", None, "SEEN")[1][0].split()) == 4
    imap.logout()
    assert process_bounces(now=now)["reports"] == 0


def test_a_refused_login_is_an_error_that_names_the_setting_and_no_secret(prefect_harness, db_url, now, imap_server,
                                                                          monkeypatch):
    from tasks.bounce_mailbox import MailboxConfigError
    from tasks.bounces import process_mailbox

    monkeypatch.setenv("BOUNCE_IMAP_PASSWORD", "wrong-secret-password")
    get_settings.cache_clear()
    with pytest.raises(MailboxConfigError) as refused:
        process_mailbox.fn(now)
    assert str(refused.value).startswith("the bounce mailbox 127.0.0.1 refused us:")
    assert "wrong-secret-password" not in str(refused.value)


def test_a_report_the_database_refuses_stays_unread_and_the_rest_go_in(prefect_harness, delivered, db_url, now,
                                                                       tmp_path, monkeypatch):
    from sqlalchemy.exc import IntegrityError

    from db import reports as db_reports

    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    for report in _reports(delivered):
        box.add(report)
    monkeypatch.setenv("BOUNCE_MAILDIR", str(tmp_path / "bounces"))
    get_settings.cache_clear()
    real = db_reports.apply

    def refusing(session, lines, rules, now):  # the database refuses anything about the complaint
        if any(line.kind == "complaint" for line in lines):
            raise IntegrityError("INSERT ...", {}, Exception("refused"))
        return real(session, lines, rules, now)

    monkeypatch.setattr(db_reports, "apply", refusing)
    result = process_bounces(now=now)
    assert (result["reports"], result["refused"], result["hard"], result["complaint"]) == (4, 1, 1, 0)
    assert len(os.listdir(tmp_path / "bounces" / "new")) == 1  # the complaint, unread, for the next run
    monkeypatch.setattr(db_reports, "apply", real)
    again = process_bounces(now=now)
    assert (again["reports"], again["complaint"], again["suppressed"]) == (1, 1, 1)
    assert _state(db_url) == EXPECTED
