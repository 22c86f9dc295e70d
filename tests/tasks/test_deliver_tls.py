"""STARTTLS, implicit TLS and AUTH against a real aiosmtpd server with a certificate of its own."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import socket
import ssl

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from db.models import EmailMessage
from db.session import transaction
from tasks.deliver import SmtpConfigError, deliver_batch
from tutormax.settings import get_settings

PASSWORD = "s3cret-smtp-password"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return folder / "cert.pem", folder / "key.pem"


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
def test_tls_and_auth(mode, certificate, enqueue, db_url, now, monkeypatch, caplog):
    cert, key = certificate
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
