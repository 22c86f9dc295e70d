"""One settings object for the whole system, read from the environment."""

from __future__ import annotations

import ipaddress
import os
import secrets
import ssl
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _read_key_file(path: str) -> str:
    try:
        return Path(path).expanduser().read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"is neither a PEM key nor a readable file ({type(exc).__name__})") from None


def var_dir() -> Path:
    """The writable state folder (database, maildir, journals, previews)."""
    path = Path(os.environ.get("TUTORMAX_VAR_DIR", PROJECT_ROOT / "var"))
    path.mkdir(parents=True, exist_ok=True)
    return path


class ConfigError(SystemExit):
    """Bad configuration: stops the program with a message naming the variable."""


class Settings(BaseSettings):
    """Every knob of the system; embedded defaults run the demo on one machine."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False, populate_by_name=True)

    database_url: str = Field(default="", validation_alias="DATABASE_URL")
    smtp_host: str = Field(default="127.0.0.1", validation_alias="SMTP_HOST")
    smtp_port: int = Field(default=8025, ge=1, le=65535, validation_alias="SMTP_PORT")
    smtp_user: str = Field(default="", validation_alias="SMTP_USER")
    smtp_password: SecretStr = Field(default=SecretStr(""), validation_alias="SMTP_PASSWORD")
    # "starttls" upgrades a plain connection (port 587); "ssl" is implicit TLS (port 465).
    smtp_use_tls: str = Field(default="false", validation_alias="SMTP_USE_TLS")
    # a private CA for the SMTP server's certificate (else the system's trust store)
    smtp_tls_ca_file: str = Field(default="", validation_alias="SMTP_TLS_CA_FILE")
    smtp_timeout: float = Field(default=30.0, gt=0, validation_alias="SMTP_TIMEOUT")
    smtp_from_email: str = Field(default="noreply@tutormax.example", validation_alias="SMTP_FROM_EMAIL")
    smtp_from_name: str = Field(default="TutorMax", validation_alias="SMTP_FROM_NAME")
    tracking_base_url: str = Field(default="http://127.0.0.1:8000", validation_alias="TRACKING_BASE_URL")
    # where "Open your dashboard" in digests and reports leads (the platform's own dashboard);
    # empty: the tracker's help page, so nothing breaks before one is set
    dashboard_url: str = Field(default="", validation_alias="DASHBOARD_URL")
    secret_key: SecretStr = Field(default=SecretStr(""), validation_alias="SECRET_KEY")
    timezone: str = Field(default="America/New_York", validation_alias="TIMEZONE")
    analytics_api_token: SecretStr = Field(default=SecretStr(""), validation_alias="ANALYTICS_API_TOKEN")
    physical_address: str = Field(
        default="100 Learning Way, Suite 200, Boston, MA 02110, USA",
        validation_alias="MAIL_PHYSICAL_ADDRESS",
    )
    # the tracker reads X-Forwarded-For only from these proxies (comma-separated CIDRs)
    tracker_trusted_proxies: str = Field(default="", validation_alias="TRACKER_TRUSTED_PROXIES")
    # opens from these networks are Apple Mail Privacy Protection prefetches (17.0.0.0/8 is Apple's;
    # operators add ranges as Apple publishes them)
    apple_proxy_networks: str = Field(default="17.0.0.0/8", validation_alias="APPLE_PROXY_NETWORKS")
    batch_size: int = Field(default=500, ge=1, le=10000, validation_alias="DELIVERY_BATCH_SIZE")
    # messages per minute the relay allows, shared by every process and worker (a Prefect global
    # concurrency limit with slot decay); empty: unlimited, as for the local sink
    smtp_rate_limit: int | None = Field(default=None, ge=1, le=1_000_000, validation_alias="SMTP_RATE_LIMIT")
    # SMTP connections one run may hold open at once, each sending its own batches side by side (a relay
    # far away answers slowly: more connections, more throughput, still under SMTP_RATE_LIMIT)
    smtp_connections: int = Field(default=1, ge=1, le=32, validation_alias="SMTP_CONNECTIONS")
    # a claim older than this is taken to be from a worker that died mid-batch, and its messages go again
    claim_lease_seconds: int = Field(default=900, ge=10, validation_alias="DELIVERY_CLAIM_LEASE_SECONDS")
    # DKIM (RFC 6376) signs every message when all three are set; the key is a PEM or a path to one,
    # RSA of 2048 bits or more (rsa-sha256) or Ed25519 (ed25519-sha256, RFC 8463)
    dkim_domain: str = Field(default="", validation_alias="DKIM_DOMAIN")
    dkim_selector: str = Field(default="", validation_alias="DKIM_SELECTOR")
    dkim_private_key: SecretStr = Field(default=SecretStr(""), validation_alias="DKIM_PRIVATE_KEY",
                                        validate_default=True)  # so a key missing beside a domain is caught
    # bounces: the envelope sender carries a signed tag per message (VERP) when this is set, e.g.
    # bounces@bounce.tutormax.example -> bounces+<tag>@bounce.tutormax.example; empty: the From address
    bounce_address: str = Field(default="", validation_alias="BOUNCE_ADDRESS")
    # where process-bounces reads reports: a local Maildir, or an IMAP mailbox
    bounce_maildir: str = Field(default="", validation_alias="BOUNCE_MAILDIR")
    bounce_imap_host: str = Field(default="", validation_alias="BOUNCE_IMAP_HOST")
    bounce_imap_port: int | None = Field(default=None, ge=1, le=65535, validation_alias="BOUNCE_IMAP_PORT")
    bounce_imap_user: str = Field(default="", validation_alias="BOUNCE_IMAP_USER")
    bounce_imap_password: SecretStr = Field(default=SecretStr(""), validation_alias="BOUNCE_IMAP_PASSWORD")
    bounce_imap_folder: str = Field(default="INBOX", validation_alias="BOUNCE_IMAP_FOLDER")
    # a processed report is moved here; empty: it is flagged \Seen where it is (never deleted unread)
    bounce_imap_processed_folder: str = Field(default="", validation_alias="BOUNCE_IMAP_PROCESSED_FOLDER")
    # "ssl" (implicit TLS, port 993), "starttls" (port 143), "none"
    bounce_imap_tls: str = Field(default="ssl", validation_alias="BOUNCE_IMAP_TLS")
    bounce_imap_ca_file: str = Field(default="", validation_alias="BOUNCE_IMAP_CA_FILE")
    # soft bounces: this many within the window suppress the address for suppress_days
    bounce_soft_limit: int = Field(default=3, ge=1, validation_alias="BOUNCE_SOFT_LIMIT")
    bounce_soft_window_days: int = Field(default=30, ge=1, validation_alias="BOUNCE_SOFT_WINDOW_DAYS")
    bounce_soft_suppress_days: int = Field(default=30, ge=1, validation_alias="BOUNCE_SOFT_SUPPRESS_DAYS")
    # provider webhooks on the tracker: each is off until its secret is set
    ses_sns_certificate: str = Field(default="", validation_alias="SES_SNS_CERTIFICATE")  # a PEM file
    ses_sns_topic_arn: str = Field(default="", validation_alias="SES_SNS_TOPIC_ARN")  # only this topic, when set
    sendgrid_webhook_public_key: SecretStr = Field(default=SecretStr(""), validation_alias="SENDGRID_WEBHOOK_PUBLIC_KEY")
    postmark_webhook_user: str = Field(default="", validation_alias="POSTMARK_WEBHOOK_USER")
    postmark_webhook_password: SecretStr = Field(default=SecretStr(""), validation_alias="POSTMARK_WEBHOOK_PASSWORD")

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if not value:
            return f"sqlite:///{var_dir() / 'tutormax.db'}"
        try:
            url = make_url(value)
        except Exception as exc:  # sqlalchemy raises ArgumentError with the URL in it
            raise ValueError("not a database URL (expected e.g. postgresql://user@host/db)") from exc
        if url.get_backend_name() not in {"sqlite", "postgresql"}:
            raise ValueError(f"unsupported database {url.get_backend_name()!r}; use sqlite or postgresql")
        if url.drivername == "postgresql":
            # SQLAlchemy 2.1 defaults to psycopg 3; the project ships psycopg2
            return url.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
        return value

    @field_validator("smtp_use_tls")
    @classmethod
    def _tls(cls, value: str) -> str:
        mode = value.strip().lower()
        aliases = {"true": "starttls", "1": "starttls", "yes": "starttls", "starttls": "starttls",
                   "ssl": "ssl", "tls": "ssl", "false": "none", "0": "none", "no": "none", "none": "none", "": "none"}
        if mode not in aliases:
            raise ValueError("expected true/false, starttls or ssl")
        return aliases[mode]

    @field_validator("tracker_trusted_proxies", "apple_proxy_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        for entry in filter(None, (part.strip() for part in value.split(","))):
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP network (expected CIDR like 10.0.0.0/8)") from None
        return value

    @field_validator("smtp_rate_limit", mode="before")
    @classmethod
    def _rate_limit(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("dkim_domain", "dkim_selector")
    @classmethod
    def _dkim_label(cls, value: str) -> str:
        value = value.strip().lower()
        if value and not all(part and part.replace("-", "").isalnum() for part in value.split(".")):
            raise ValueError("expected a domain or selector of letters, digits, hyphens and dots")
        return value

    @field_validator("dkim_private_key")
    @classmethod
    def _dkim_key(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        given = value.get_secret_value().strip()
        if not given:
            if info.data.get("dkim_domain") or info.data.get("dkim_selector"):
                raise ValueError("is needed when DKIM_DOMAIN and DKIM_SELECTOR are set")
            return value
        if not (info.data.get("dkim_domain") and info.data.get("dkim_selector")):
            raise ValueError("is set, but DKIM_DOMAIN and DKIM_SELECTOR are not both set")
        from tasks.dkim import load_key

        pem = given if given.startswith("-----BEGIN") else _read_key_file(given)
        load_key(pem.encode())  # ValueError with the reason, never the key
        return SecretStr(pem)

    @field_validator("bounce_address")
    @classmethod
    def _bounce_address(cls, value: str) -> str:
        if not value:
            return value
        try:
            address = validate_email(value, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            raise ValueError(str(exc)) from None
        if "+" in address.split("@")[0]:
            raise ValueError("must have no '+' in its local part: the tag goes after one")
        return address

    @field_validator("bounce_imap_tls")
    @classmethod
    def _imap_tls(cls, value: str) -> str:
        if value.strip().lower() not in ("ssl", "starttls", "none"):
            raise ValueError("expected ssl, starttls or none")
        return value.strip().lower()

    @field_validator("ses_sns_certificate")
    @classmethod
    def _certificate(cls, value: str) -> str:
        if value:
            from cryptography import x509

            try:
                x509.load_pem_x509_certificate(Path(value).read_bytes())
            except (OSError, ValueError) as exc:
                raise ValueError(f"is not a readable PEM certificate ({type(exc).__name__})") from None
        return value

    @field_validator("sendgrid_webhook_public_key")
    @classmethod
    def _sendgrid_key(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value():
            from tutormax.webhook_keys import load_ec_public_key

            load_ec_public_key(value.get_secret_value())  # ValueError says what is wrong
        return value

    @field_validator("smtp_tls_ca_file", "bounce_imap_ca_file")
    @classmethod
    def _ca_file(cls, value: str) -> str:
        if value and not Path(value).is_file():
            raise ValueError("no such file")
        return value

    def tls_context(self) -> ssl.SSLContext:
        """Certificate-verifying TLS for the SMTP connection."""
        return ssl.create_default_context(cafile=self.smtp_tls_ca_file or None)

    @field_validator("smtp_from_email")
    @classmethod
    def _from_email(cls, value: str) -> str:
        try:
            return validate_email(value, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("smtp_from_name")
    @classmethod
    def _from_name(cls, value: str) -> str:
        if "\r" in value or "\n" in value:
            raise ValueError("must not contain line breaks")
        return value

    @field_validator("tracking_base_url")
    @classmethod
    def _tracking_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("dashboard_url")
    @classmethod
    def _dashboard_url(cls, value: str, info: ValidationInfo) -> str:
        if not value:
            return f"{info.data.get('tracking_base_url', 'http://127.0.0.1:8000')}/help"
        if not value.startswith(("http://", "https://")) or any(c.isspace() for c in value):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (expected an IANA name like Europe/London)") from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def from_domain(self) -> str:
        return self.smtp_from_email.rsplit("@", 1)[1]

    def secret_bytes(self) -> bytes:
        """The signing key: SECRET_KEY, else a random key kept under var/ for this install."""
        if self.secret_key.get_secret_value():
            return self.secret_key.get_secret_value().encode()
        path = var_dir() / "secret.key"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
        return path.read_text().strip().encode()

    def safe_database_url(self) -> str:
        """The database URL with any password masked, for logs."""
        return make_url(self.database_url).render_as_string(hide_password=True)


_ENV_NAMES = {name: (field.validation_alias or name).upper() for name, field in Settings.model_fields.items()}


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment; a bad value stops with the variable's name."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            env_name = _ENV_NAMES.get(field, field.upper())
            # never echo the input back: it may be a secret
            problems.append(f"  {env_name}: {error['msg']}")
        raise ConfigError("invalid configuration:\n" + "\n".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded once."""
    return load_settings()
