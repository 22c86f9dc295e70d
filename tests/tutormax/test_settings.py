"""Configuration: embedded defaults, clear errors naming the variable, secrets kept secret."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tutormax.settings import ConfigError, load_settings


def test_embedded_defaults_need_no_environment(monkeypatch):
    for name in ("DATABASE_URL", "SMTP_HOST", "SMTP_PORT", "SMTP_USE_TLS", "SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    var = Path(os.environ["TUTORMAX_VAR_DIR"])
    assert settings.database_url == f"sqlite:///{var / 'tutormax.db'}"
    assert (settings.smtp_host, settings.smtp_port, settings.smtp_use_tls) == ("127.0.0.1", 8025, "none")
    # a random key (48 bytes, 64 characters of base64) kept for this install
    assert settings.secret_bytes() == (var / "secret.key").read_bytes() == load_settings().secret_bytes()
    assert len(settings.secret_bytes()) == 64


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("SMTP_PORT", "not-a-port", "SMTP_PORT"),
        ("SMTP_PORT", "70000", "SMTP_PORT"),
        ("SMTP_USE_TLS", "maybe", "SMTP_USE_TLS"),
        ("SMTP_FROM_EMAIL", "not an address", "SMTP_FROM_EMAIL"),
        ("SMTP_FROM_NAME", "Evil\r\nBcc: x@example.com", "SMTP_FROM_NAME"),
        ("DATABASE_URL", "mysql://root@localhost/x", "DATABASE_URL"),
        ("DATABASE_URL", "::::", "DATABASE_URL"),
        ("TRACKING_BASE_URL", "javascript:alert(1)", "TRACKING_BASE_URL"),
        ("TIMEZONE", "Mars/Olympus_Mons", "TIMEZONE"),
    ],
)
def test_bad_value_fails_naming_the_variable(monkeypatch, variable, value, expected):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert expected in str(err.value)


def test_errors_never_echo_a_secret(monkeypatch):
    monkeypatch.setenv("SMTP_PASSWORD", "hunter2-very-secret")
    monkeypatch.setenv("SMTP_PORT", "hunter2-very-secret")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "hunter2" not in str(err.value)


def test_secrets_are_masked_in_repr_and_urls(monkeypatch):
    monkeypatch.setenv("SMTP_PASSWORD", "hunter2")
    monkeypatch.setenv("SECRET_KEY", "signing-secret")
    monkeypatch.setenv("DATABASE_URL", "postgresql://mail:dbpass@127.0.0.1/tutormax")
    settings = load_settings()
    dumped = repr(settings) + str(settings.model_dump())
    assert "hunter2" not in dumped and "signing-secret" not in dumped
    assert settings.safe_database_url() == "postgresql+psycopg2://mail:***@127.0.0.1/tutormax"
    assert settings.database_url == "postgresql+psycopg2://mail:dbpass@127.0.0.1/tutormax"  # the driver we ship


@pytest.mark.parametrize(("value", "mode"), [("true", "starttls"), ("false", "none"), ("ssl", "ssl"), ("STARTTLS", "starttls")])
def test_tls_modes(monkeypatch, value, mode):
    monkeypatch.setenv("SMTP_USE_TLS", value)
    assert load_settings().smtp_use_tls == mode
