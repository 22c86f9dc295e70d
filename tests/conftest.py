"""Shared fixtures: both databases, a real SMTP server with faults on cue, one Prefect harness."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, delete, text

PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(autouse=True, scope="session")
def _isolated_var(tmp_path_factory) -> None:
    # keep the project's var/ (demo database, secret key) out of the tests
    os.environ["TUTORMAX_VAR_DIR"] = str(tmp_path_factory.mktemp("var"))
    os.environ["SECRET_KEY"] = "test-secret-key"
    os.environ["TRACKING_BASE_URL"] = "https://track.tutormax.example"


def _pg_database(tmp_name: str) -> str:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{tmp_name}"'))
            conn.execute(text(f'CREATE DATABASE "{tmp_name}"'))
    except Exception as exc:  # never skip: a missing PostgreSQL is a failed run
        pytest.exit(f"PostgreSQL is required for the test suite ({PG_ADMIN_URL}): {exc}", returncode=3)
    finally:
        admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{tmp_name}"


def _drop_pg_database(name: str) -> None:
    # WITH (FORCE) ends the pooled connections this process still holds
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def migrated_urls(tmp_path_factory) -> Iterator[dict[str, str]]:
    """One migrated SQLite file and one migrated PostgreSQL database for the whole run."""
    from db.migrate import upgrade

    sqlite_url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    pg_name = f"tutormax_test_{os.getpid()}"
    pg_url = _pg_database(pg_name)
    for url in (sqlite_url, pg_url):
        upgrade(url)
    yield {"sqlite": sqlite_url, "postgresql": pg_url}
    _drop_pg_database(pg_name)


@pytest.fixture
def scratch_pg_database():
    """Makes empty PostgreSQL databases on demand; drops them after the test."""
    made = []

    def make() -> str:
        name = f"tutormax_scratch_{os.getpid()}_{len(made)}"
        made.append(name)
        return _pg_database(name)

    yield make
    for name in made:
        _drop_pg_database(name)


def _empty(url: str) -> None:
    from db.models import Base
    from db.session import get_engine

    with get_engine(url).begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(delete(table))


@pytest.fixture
def empty_database():
    """Deletes every row of a database (the schema stays)."""
    return _empty


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, migrated_urls, monkeypatch) -> Iterator[str]:
    """An empty migrated database, once on SQLite and once on PostgreSQL; Settings point at it."""
    from tutormax.settings import get_settings

    from tasks.announcement import _stored

    url = migrated_urls[request.param]
    _empty(url)
    _stored.cache_clear()  # campaigns' words kept by the process belong to the database just emptied
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


# --- SMTP -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FaultyHandler:
    """Accepts mail, except for recipients told to defer (4xx), bounce (5xx) or drop the connection.

    It advertises PIPELINING (RFC 2920), as Postfix and Exim do, unless told not to;
    aiosmtpd reads pipelined commands in order either way.
    """

    def __init__(self) -> None:
        self.received: list[tuple[list[str], bytes]] = []
        self.times: list[float] = []  # when each message was accepted (time.time())
        self.senders: list[str] = []  # each accepted message's envelope sender (MAIL FROM)
        self.connections = 0  # sessions opened (EHLOs)
        self.stall_data: float = 0.0  # seconds to sit on each message before answering it
        self.faults: dict[str, str] = {}   # address -> "defer" | "bounce" | "drop_once" | "drop"
        self.dropped: list[str] = []
        self.pipelining = True
        self.sender_reply: str | None = None  # answer MAIL FROM with this instead of 250
        self.replies: dict[str, tuple[str, str]] = {}  # address -> ("rcpt" | "data", the answer to give there)
        self.data_reply: str | None = None  # answer every message's content with this (a broken server)
        # chaos(stage, address) -> an answer, "drop" (at "data": hang up before answering), or None to go on
        self.chaos: Callable[[str, str], str | None] | None = None

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.connections += 1
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.sender_reply:
            return self.sender_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.chaos and (answer := self.chaos("rcpt", address.lower())):
            return answer
        stage, reply = self.replies.get(address.lower(), ("", ""))
        if stage == "rcpt":
            return reply
        action = self.faults.get(address.lower())
        if action == "defer":
            return "451 4.2.1 Mailbox temporarily unavailable"
        if action == "bounce":
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        rcpt = envelope.rcpt_tos[0].lower()
        stage, reply = self.replies.get(rcpt, ("", ""))
        if self.data_reply or stage == "data":
            return self.data_reply or reply
        chance = self.chaos("data", rcpt) if self.chaos else None
        if chance and chance != "drop":
            return chance
        action = "drop" if chance == "drop" else self.faults.get(rcpt)
        if action in ("drop_once", "drop"):
            if action == "drop_once":
                self.faults.pop(rcpt)
            self.dropped.append(rcpt)
            server.transport.close()  # hang up mid-transaction, before any reply
            return "421 closing"
        if self.stall_data:
            await asyncio.sleep(self.stall_data)
        self.received.append((list(envelope.rcpt_tos), envelope.original_content))
        self.times.append(time.time())
        self.senders.append(envelope.mail_from)
        return "250 2.0.0 Queued"


@pytest.fixture
def smtp_server(monkeypatch) -> Iterator[FaultyHandler]:
    """A real aiosmtpd server on a free loopback port; Settings point at it."""
    from aiosmtpd.controller import Controller

    from tutormax.settings import get_settings

    handler = FaultyHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(port))
    get_settings.cache_clear()
    yield handler
    controller.stop()
    get_settings.cache_clear()


@pytest.fixture
def dead_smtp(monkeypatch) -> int:
    """Settings point at a loopback port where nothing listens."""
    from tutormax.settings import get_settings

    port = free_port()
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(port))
    get_settings.cache_clear()
    return port


@pytest.fixture(scope="session")
def tls_certificate(tmp_path_factory):
    """A self-signed certificate for localhost and 127.0.0.1 (its own CA): (cert.pem, key.pem)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

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


# --- Prefect --------------------------------------------------------------------


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory) -> Iterator[None]:
    """One temporary Prefect server for every flow test."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    # no heartbeats: a run's end waits for the heartbeat thread's one-second sleep, a second a flow run
    with prefect_test_harness(server_startup_timeout=120), \
            temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


# --- platform rows --------------------------------------------------------------

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=timezone.utc)


class Platform:
    """Builds small, exact platforms for one test."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.next_id = 1

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def tutor(self, name: str = "Tara Tutor") -> int:
        from db.models import Manager, Tutor
        from db.session import transaction

        with transaction(self.url) as s:
            manager = Manager(id=self._id(), name="Mona Manager", email=f"mona{self.next_id}@example.com")
            s.add(manager)
            s.flush()
            tutor = Tutor(id=self._id(), name=name, email=f"tutor{self.next_id}@example.com", manager_id=manager.id,
                          created_at=NOW - timedelta(days=400))
            s.add(tutor)
        return tutor.id

    def student(self, *, age: int = 16, email: str | None = "default", name: str = "Sam Student",
                parent_email: str | None = None, parent_consent: bool = False) -> int:
        from db.models import Student
        from db.session import transaction

        sid = self._id()
        birth = date(NOW.year - age, 1, 1) if NOW.month > 1 else date(NOW.year - age - 1, 1, 1)
        with transaction(self.url) as s:
            s.add(Student(id=sid, name=name, email=f"student{sid}@example.com" if email == "default" else email,
                          birth_date=birth, parent_name="Pat Parent" if parent_email else None,
                          parent_email=parent_email, parent_consent=parent_consent))
        return sid

    def session(self, tutor_id: int, student_id: int, *, ended_ago: timedelta, status: str = "completed",
                number: int = 1, subject: str = "Algebra") -> int:
        from db.models import TutoringSession
        from db.session import transaction

        ended = NOW - ended_ago
        sid = self._id()
        with transaction(self.url) as s:
            s.add(TutoringSession(
                id=sid, tutor_id=tutor_id, student_id=student_id, session_number=number, subject=subject,
                scheduled_start=ended - timedelta(hours=1),
                started_at=ended - timedelta(hours=1) if status == "completed" else None,
                ended_at=ended if status == "completed" else None, status=status))
        return sid

    def reschedule(self, tutor_id: int, session_id: int, at: datetime, by: str = "tutor") -> None:
        from db.models import RescheduleEvent
        from db.session import transaction

        with transaction(self.url) as s:
            s.add(RescheduleEvent(session_id=session_id, tutor_id=tutor_id, initiated_by=by, original_start=at,
                                  new_start=at + timedelta(days=1), rescheduled_at=at))

    def feedback(self, session_id: int, student_id: int, rating: int = 5) -> None:
        from db.models import Feedback
        from db.session import transaction

        with transaction(self.url) as s:
            s.add(Feedback(session_id=session_id, student_id=student_id, rating=rating, submitted_at=NOW))


@pytest.fixture
def platform(db_url) -> Platform:
    return Platform(db_url)


@pytest.fixture
def now() -> datetime:
    """The fixed instant tests run at (platform rows are placed relative to it)."""
    return NOW


@pytest.fixture
def enqueue(db_url, now):
    """Plan messages straight into the outbox: enqueue(email, name=..., entity_id=..., template_type=..., priority=...).

    A feedback reminder by default; another type carries its declared sample metadata and priority.
    """
    from sqlalchemy import select

    from db import outbox
    from db.models import EmailMessage
    from db.session import transaction
    from tasks.email_types import get

    counter = iter(range(1, 100_000))

    def _enqueue(email: str | None, name: str | None = "Sam Student", entity_id: int | None = None,
                 template_type: str = "feedback_reminder", priority: int | None = None) -> int:
        entity = entity_id or next(counter)
        kind = get(template_type)
        metadata = ({"session_id": entity, "student_name": name or "Sam", "tutor_name": "Tara Tutor",
                     "subject_name": "Algebra", "session_ended_at": (now - timedelta(hours=30)).isoformat(),
                     "is_parent": False} if template_type == "feedback_reminder" else kind.sample[1])
        planned = outbox.PlannedMessage(
            workflow_type=template_type, entity_type="session", entity_id=entity, step="reminder",
            template_type=template_type, category=kind.category, recipient_type="student",
            recipient_email=email, recipient_name=name, recipient_id=entity,
            priority=kind.rank if priority is None else priority, metadata=metadata,
        )
        with transaction(db_url) as s:
            outbox.plan(s, [planned], now)
            return s.scalar(select(EmailMessage.message_id).where(EmailMessage.idempotency_key == planned.idempotency_key))

    return _enqueue


@pytest.fixture
def sent_message(enqueue, db_url):
    """A message sent an hour ago (a feedback reminder unless another category is given); returns its id."""

    def make(email: str = "sam@example.com", sent_ago: timedelta = timedelta(hours=1),
             category: str = "feedback_reminders") -> int:
        from sqlalchemy import update

        from db.models import EmailMessage
        from db.session import transaction

        mid = enqueue(email)
        with transaction(db_url) as s:
            s.execute(update(EmailMessage).where(EmailMessage.message_id == mid).values(
                status="sent", sent_at=datetime.now(timezone.utc) - sent_ago, category=category))
        return mid

    return make
