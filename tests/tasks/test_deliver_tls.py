"""STARTTLS, implicit TLS and AUTH against a real aiosmtpd server with a certificate of its own."""

from __future__ import annotations

import logging
import socket
import ssl

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from db.models import EmailMessage
from db.session import transaction
from tasks.deliver import SmtpConfigError, deliver_batch
from tutormax.settings import get_settings

PASSWORD = "s3cret-smtp-password"


class Recorder:
    def __init__(self):
        self.received = []
        self.logins = []

    async def handle_DATA(self, server, session, envelope):
        self.received.append((session.authenticated, envelope.rcpt_tos))
        return "250 OK"


def _authenticator(recorder):
    def check(server, session, envelope, mechanism, auth_data):
        recorder.logins.append(auth_data.login)
        ok = auth_data.login == b"mailer" and auth_data.password == PASSWORD.encode()
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself
    return check


# implicit TLS: aiosmtpd only knows STARTTLS sessions as encrypted, so it cannot require TLS for AUTH there
@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_tls_and_auth(mode, tls_certificate, enqueue, db_url, now, monkeypatch, caplog):
    cert, key = tls_certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    recorder = Recorder()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tls = {"tls_context": context, "require_starttls": True} if mode == "starttls" else {"ssl_context": context}
    controller = Controller(recorder, hostname="127.0.0.1", port=port, authenticator=_authenticator(recorder),
                            auth_require_tls=mode == "starttls", server_hostname="localhost", **tls)
    controller.start()
    try:
        monkeypatch.setenv("SMTP_PORT", str(port))
        monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("SMTP_USE_TLS", mode)
        monkeypatch.setenv("SMTP_USER", "mailer")
        monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
        monkeypatch.setenv("SMTP_TLS_CA_FILE", str(cert))
        get_settings.cache_clear()
        mid = enqueue("a@example.com")
        caplog.set_level(logging.DEBUG)
        assert deliver_batch.fn(now=now)["counts"] == {"claimed": 1, "sent": 1}
        assert recorder.received == [(True, ["a@example.com"])]

        # a wrong password is permanent: the batch goes back to the queue and the error names no secret
        monkeypatch.setenv("SMTP_PASSWORD", "wrong-password")
        get_settings.cache_clear()
        other = enqueue("b@example.com")
        with pytest.raises(SmtpConfigError) as err:
            deliver_batch.fn(now=now)
        assert str(err.value) == (f"SMTP server 127.0.0.1:{port} refused our settings: "
                                  "SMTPAuthenticationError: (535, b'5.7.8 Authentication credentials invalid')")
        with transaction(db_url) as s:
            assert s.get(EmailMessage, other).status == "queued"
            assert s.get(EmailMessage, mid).status == "sent"
        assert PASSWORD not in caplog.text and "wrong-password" not in caplog.text
    finally:
        controller.stop()
        get_settings.cache_clear()
