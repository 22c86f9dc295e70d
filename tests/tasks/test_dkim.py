"""DKIM: a delivered message's signature verifies with dkimpy against the public key; a changed header breaks it."""

from __future__ import annotations

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from dkim.util import parse_tag_value

from tasks.dkim import Signer, public_record
from tutormax.settings import ConfigError, get_settings, load_settings


def _pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def _dns(key):
    record = public_record(key).encode()
    return lambda name, timeout=5: record if name == b"mail2026._domainkey.tutormax.example." else None


def _signature_tags(message: bytes) -> dict[bytes, bytes]:
    header = message.split(b"\r\nFrom:", 1)[0]
    return parse_tag_value(header.split(b":", 1)[1].replace(b"\r\n", b""))


@pytest.fixture(params=["rsa", "ed25519"])
def dkim_key(request, monkeypatch, tmp_path):
    """DKIM settings with a key of each kind: the RSA one given as a path, the Ed25519 one as PEM text."""
    key = RSA_KEY if request.param == "rsa" else ED_KEY
    if request.param == "rsa":
        (tmp_path / "dkim.pem").write_text(_pem(key))
        monkeypatch.setenv("DKIM_PRIVATE_KEY", str(tmp_path / "dkim.pem"))
    else:
        monkeypatch.setenv("DKIM_PRIVATE_KEY", _pem(key))
    monkeypatch.setenv("DKIM_DOMAIN", "tutormax.example")
    monkeypatch.setenv("DKIM_SELECTOR", "mail2026")
    get_settings.cache_clear()
    yield key
    get_settings.cache_clear()


def test_a_delivered_message_verifies_and_signs_the_headers_rfc_8058_requires(dkim_key, smtp_server, enqueue, now):
    from tasks.deliver import deliver_batch

    enqueue("sam@example.com")
    assert deliver_batch.fn(now=now)["counts"] == {"claimed": 1, "sent": 1}
    ((_, raw),) = smtp_server.received
    assert dkim.verify(raw, dnsfunc=_dns(dkim_key))
    tags = _signature_tags(raw)
    assert tags[b"a"] == (b"rsa-sha256" if isinstance(dkim_key, rsa.RSAPrivateKey) else b"ed25519-sha256")
    assert (tags[b"d"], tags[b"s"], tags[b"c"]) == (b"tutormax.example", b"mail2026", b"relaxed/simple")
    assert [h.strip() for h in tags[b"h"].split(b":")] == [
        b"From", b"To", b"Subject", b"Date", b"Message-ID", b"MIME-Version", b"Content-Type", b"List-ID",
        b"List-Unsubscribe", b"List-Unsubscribe-Post", b"From"]
    signature = raw.split(b"\r\nFrom:", 1)[0]
    assert max(len(line) for line in signature.split(b"\r\n")) <= 78  # folded where whitespace may go


@pytest.mark.parametrize(("header", "changed"), [
    (b"Subject: ", b"Subject: Re: "),
    (b"List-Unsubscribe: <https://track.tutormax.example/u/", b"List-Unsubscribe: <https://evil.example/u/"),
    (b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: List-Unsubscribe=Nope"),
    (b"\r\nFrom: ", b"\r\nFrom: Someone Else <x@evil.example>\r\nFrom: "),  # a second From, over-signed
])
def test_a_changed_signed_header_fails_verification(dkim_key, smtp_server, enqueue, now, header, changed):
    from tasks.deliver import deliver_batch

    enqueue("sam@example.com")
    deliver_batch.fn(now=now)
    ((_, raw),) = smtp_server.received
    assert header in raw
    assert not dkim.verify(raw.replace(header, changed, 1), dnsfunc=_dns(dkim_key))


def test_a_changed_body_fails_verification():
    signer = Signer("tutormax.example", "mail2026", RSA_KEY)
    signed = signer.sign(b"From: a@tutormax.example\r\nTo: b@example.com\r\nSubject: s\r\n\r\nbody\r\n")
    assert dkim.verify(signed, dnsfunc=_dns(RSA_KEY))
    assert not dkim.verify(signed.replace(b"body", b"b0dy"), dnsfunc=_dns(RSA_KEY))


def _settings_error(monkeypatch, **env) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as stopped:
        load_settings()
    return str(stopped.value)


def test_a_bad_key_stops_the_program_at_start_naming_the_variable(monkeypatch, tmp_path):
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    (tmp_path / "short.pem").write_text(_pem(short))
    (tmp_path / "garbage.pem").write_text("not a key")
    both = {"DKIM_DOMAIN": "tutormax.example", "DKIM_SELECTOR": "mail2026"}
    assert _settings_error(monkeypatch, **both, DKIM_PRIVATE_KEY=str(tmp_path / "short.pem")) == (
        "invalid configuration:\n  DKIM_PRIVATE_KEY: Value error, is a 1024-bit RSA key; DKIM keys must have at "
        "least 2048 bits")
    assert _settings_error(monkeypatch, **both, DKIM_PRIVATE_KEY=str(tmp_path / "garbage.pem")) == (
        "invalid configuration:\n  DKIM_PRIVATE_KEY: Value error, is not an unencrypted PEM private key")
    missing = _settings_error(monkeypatch, **both, DKIM_PRIVATE_KEY=str(tmp_path / "nowhere.pem"))
    assert missing == ("invalid configuration:\n  DKIM_PRIVATE_KEY: Value error, is neither a PEM key nor a readable "
                       "file (FileNotFoundError)")
    monkeypatch.delenv("DKIM_PRIVATE_KEY")
    assert _settings_error(monkeypatch, **both) == (
        "invalid configuration:\n  DKIM_PRIVATE_KEY: Value error, is needed when DKIM_DOMAIN and DKIM_SELECTOR are set")


def test_the_key_never_appears_in_an_error(monkeypatch):
    pem = _pem(rsa.generate_private_key(public_exponent=65537, key_size=1024))
    error = _settings_error(monkeypatch, DKIM_DOMAIN="tutormax.example", DKIM_SELECTOR="s", DKIM_PRIVATE_KEY=pem)
    assert "BEGIN" not in error and pem.splitlines()[1] not in error


def test_dkim_record_prints_the_txt_record_to_publish(dkim_key, capsys):
    from tutormax.cli import main

    main(["dkim-record"])
    printed = capsys.readouterr().out
    assert printed == f'mail2026._domainkey.tutormax.example. IN TXT "{public_record(dkim_key)}"\n'
    assert dkim.verify(Signer("tutormax.example", "mail2026", dkim_key).sign(
        b"From: a@tutormax.example\r\nSubject: s\r\n\r\nbody\r\n"),
        dnsfunc=lambda name, timeout=5: printed.split('"')[1].encode())
