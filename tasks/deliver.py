"""Delivery: claim due mail in chunks, send it over pooled SMTP connections under the send-rate limit, record each outcome."""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from prefect import task
from prefect.tasks import exponential_backoff
from sqlalchemy.exc import SQLAlchemyError

from db import outbox, queries, queue
from db.events import Category, SkipReason
from db.queue import QueueState
from db.session import transaction
from tasks import send_rate
from tasks.compose import Composer
from tasks.mime import Envelope
from tasks.recipients import preference_skip
from tasks.retry import DATABASE_DOWN, retry_on
from tasks.smtp_replies import Reply, Stage, Verdict, classify
from tutormax.logs import run_logger
from tutormax.settings import Settings, get_settings

RECONNECTS_PER_MESSAGE = 2


class ServerDown(ConnectionError):
    """The SMTP server cannot be reached or keeps dropping us: retry the whole batch later."""


class SmtpConfigError(RuntimeError):
    """Credentials, TLS or AUTH do not fit the server: an operator has to fix the settings."""


class ServerTrouble(ServerDown):
    """Several answers in a row blamed the server, not the recipients: stop, and let Prefect retry later."""


# this many "server trouble" answers in a row stop a batch instead of burning through the queue
TROUBLE_IN_A_ROW = 5
SIGN_AHEAD = 4  # messages built and signed ahead of the one on the wire, when DKIM is on


def _text(response: bytes | str) -> str:
    if isinstance(response, bytes):
        response = response.decode("utf-8", "replace")
    return " ".join(response.split())[:500]


def _read(code: int, response: bytes | str, stage: Stage) -> Reply:
    return classify(code, _text(response), stage)


class SmtpConnection:
    """A persistent, authenticated connection that reconnects when the server drops it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.smtp: smtplib.SMTP | None = None
        self.pipelining = False
        self._envelope: Envelope | None = None
        self._verdict: Reply | None = None

    def __enter__(self) -> SmtpConnection:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def connect(self) -> None:
        """Open, upgrade to TLS and log in as configured; ServerDown if the server is unreachable."""
        s = self.settings
        self.close()
        try:
            if s.smtp_use_tls == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout,
                                                      context=s.tls_context())
            else:
                smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout)
            smtp.ehlo()
            if s.smtp_use_tls == "starttls":
                smtp.starttls(context=s.tls_context())
                smtp.ehlo()
            if s.smtp_user:
                smtp.login(s.smtp_user, s.smtp_password.get_secret_value())
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPNotSupportedError, ssl.SSLCertVerificationError) as exc:
            # permanent: retrying with the same settings cannot help
            raise SmtpConfigError(f"SMTP server {s.smtp_host}:{s.smtp_port} refused our settings: "
                                  f"{type(exc).__name__}: {exc}") from None
        except (OSError, smtplib.SMTPException) as exc:
            # the message names the host, never the credentials
            raise ServerDown(f"cannot reach SMTP server {s.smtp_host}:{s.smtp_port}: {type(exc).__name__}: {exc}") from None
        self.smtp = smtp
        self.pipelining = smtp.has_extn("pipelining")

    def _drop(self) -> None:
        """Forget a connection that is gone: close the socket without a QUIT."""
        if self.smtp is not None:
            self.smtp.close()
            self.smtp = None

    def close(self) -> None:
        if self.smtp is not None:
            try:
                self.smtp.quit()
            except (OSError, smtplib.SMTPException):
                self.smtp.close()
            self.smtp = None

    def send(self, envelope: Envelope) -> Reply:
        """Send one message and wait for the server's answer."""
        self.submit(envelope)
        return self.answer()

    def submit(self, envelope: Envelope) -> None:
        """Hand one message to the server; answer() reads its verdict, so the caller can work meanwhile."""
        self._envelope = envelope
        self._verdict = self._retrying(envelope)

    def answer(self) -> Reply:
        """The server's verdict on the submitted message; a connection lost before it sends the message again."""
        if self._verdict is not None:
            return self._verdict
        try:
            return self._reply(Stage.DATA)
        except _DROPPED:
            self._drop()
            assert self._envelope is not None
            self._verdict = self._retrying(self._envelope, wait=True)
            assert self._verdict is not None
            return self._verdict

    def _retrying(self, envelope: Envelope, wait: bool = False) -> Reply | None:
        """A dropped connection is reopened and the message tried again, a few times.

        A server that cannot be reached raises ServerDown (connect). One that takes the connection
        again and drops it at this message every time has trouble with this message: it is deferred
        with the server to blame, so it neither stops every later run at the head of the queue nor
        costs its address anything, and several such in a row stop the batch (TROUBLE_IN_A_ROW).
        """
        for attempt in range(RECONNECTS_PER_MESSAGE + 1):
            if self.smtp is None:
                self.connect()
            try:
                verdict = self._begin(envelope)
                if verdict is None and wait:
                    return self._reply(Stage.DATA)
                return verdict
            except _DROPPED as exc:
                self._drop()
                dropped = f"{type(exc).__name__}: {exc}"
        return Reply(451, f"4.4.2 the connection dropped at this message, again after {RECONNECTS_PER_MESSAGE} "
                          f"reconnects ({dropped})", Stage.DATA, "4.4.2", Verdict.SERVER,
                     "the connection dropped at this message")

    def _reply(self, stage: Stage, payload: bytes | None = None) -> Reply:
        """Send payload if any, then read one answer; after a 421 the server hangs up, so do we."""
        assert self.smtp is not None
        if payload is not None:
            self.smtp.send(payload)
        reply = _read(*self.smtp.getreply(), stage)
        if reply.code == 421:
            self._drop()  # the next message reconnects
        return reply

    def _begin(self, envelope: Envelope) -> Reply | None:
        """Start one transaction: its verdict if already known, None while the server reads the content."""
        assert self.smtp is not None
        if self.pipelining and envelope.sender.isascii():  # an internationalized sender needs sendmail's SMTPUTF8
            return self._begin_pipelined(envelope)
        try:
            refused = self.smtp.sendmail(envelope.sender, [envelope.recipient], envelope.data)
        except smtplib.SMTPRecipientsRefused as exc:
            code, response = exc.recipients[envelope.recipient]
            return self._refusal(code, response, Stage.RCPT)
        except smtplib.SMTPSenderRefused as exc:
            return self._refusal(exc.smtp_code, exc.smtp_error, Stage.MAIL)
        except smtplib.SMTPResponseException as exc:  # SMTPDataError among them
            return self._refusal(exc.smtp_code, exc.smtp_error, Stage.DATA)
        if refused:
            code, response = refused[envelope.recipient]
            return self._refusal(code, response, Stage.RCPT)
        return _read(250, "accepted", Stage.DATA)

    def _refusal(self, code: int, response: bytes | str, stage: Stage) -> Reply:
        if code == 421:
            self._drop()  # smtplib has closed it already; the next message reconnects
        return _read(code, response, stage)

    def _begin_pipelined(self, envelope: Envelope) -> Reply | None:
        """RFC 2920: MAIL, RCPT and DATA in one write, then the content: two round trips instead of four."""
        smtp = self.smtp
        assert smtp is not None
        # the recipient passed tasks.mime's checks and the sender the settings': no need for smtplib's parser
        smtp.send(f"MAIL FROM:<{envelope.sender}>\r\nRCPT TO:<{envelope.recipient}>\r\nDATA\r\n".encode("ascii"))
        replies = []
        for stage in (Stage.MAIL, Stage.RCPT, Stage.DATA):
            reply = self._reply(stage)
            if reply.code == 421:
                return reply  # the server hung up: no more answers are coming
            replies.append(reply)
        mail, rcpt, data = replies
        if data.code == 354:
            if mail.code == 250 and rcpt.code in (250, 251):
                smtp.send(_content(envelope.data))
                return None
            # the server opened DATA for a refused envelope: an empty message closes it
            if self._reply(Stage.DATA, b".\r\n").code == 421:
                return next(r for r in replies if r.code not in (250, 251, 354))
        # the first refusal; a server that answers DATA with anything but 354 has refused it
        refusal = next((reply for reply in replies if reply.code not in (250, 251, 354)), data)
        try:
            smtp.rset()  # a clean transaction for the next message
        except _DROPPED:
            self._drop()  # the next message reconnects; this one's verdict stands
        return refusal


_DROPPED = (smtplib.SMTPServerDisconnected, ConnectionError, socket.timeout, OSError)


def _content(data: bytes) -> bytes:
    """The DATA payload (RFC 5321 4.5.2): each leading dot doubled, then the closing dot; data ends lines in CRLF."""
    data = data.replace(b"\r\n.", b"\r\n..")
    return (b"." + data if data.startswith(b".") else data) + (b".\r\n" if data.endswith(b"\r\n") else b"\r\n.\r\n")


# --- connections a run reuses -------------------------------------------------------


class ConnectionPool:
    """The SMTP connections one run reuses across its batches (the spec's pooling), at most `size` at once."""

    def __init__(self, settings: Settings, size: int) -> None:
        self.settings = settings
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[SmtpConnection] = []
        self._lock = threading.Lock()

    @contextmanager
    def connection(self) -> Iterator[SmtpConnection]:
        """An open connection: an idle one if any, else a new one (a dropped one reconnects as it sends)."""
        with self._slots:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                connection = SmtpConnection(self.settings)
                connection.connect()
            try:
                yield connection
            except BaseException:
                connection.close()  # a batch that failed leaves the conversation in an unknown state
                raise
            with self._lock:
                self._idle.append(connection)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


# pools of the runs in this process, by a key deliver_due hands its batch tasks (a Prefect task's
# parameters are data, not live sockets)
_POOLS: dict[str, ConnectionPool] = {}


@contextmanager
def _pool(key: str | None, settings: Settings) -> Iterator[ConnectionPool]:
    if key in _POOLS:
        yield _POOLS[key]
        return
    own = ConnectionPool(settings, 1)  # a batch run on its own (a test, a retry in another process)
    try:
        yield own
    finally:
        own.close()


# --- the delivery task: claim due mail chunk by chunk, compose, sign, send, record -----------


class OutcomeLog:
    """Buffers outcomes and commits them in groups on a writer thread, one commit at a time.

    A commit per message would cap delivery near the database's commit rate. Outcomes that arrive
    while a commit runs wait for the next one, so a group is as large as the commit was slow
    (group commit), at least MIN_GROUP or MAX_AGE old, and never larger than MAX_PENDING: past that
    the sender waits for the writer. What a crash can lose is the record of at most MAX_PENDING
    outcomes waiting plus the group being committed; a message the server accepted in that window
    goes again after the claim's lease, with the same Message-ID. Writing on a thread of its own
    lets the SMTP conversation go on while the database commits.
    """

    MIN_GROUP = 10
    MAX_AGE = 0.05  # seconds an outcome waits for company before it is committed alone
    MAX_PENDING = 25

    def __init__(self) -> None:
        self.pending: list[outbox.Outcome] = []
        self.counts: Counter[str] = Counter()
        self.attempted: set[int] = set()
        self.oldest = 0.0
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outcomes")
        self._write: Future[None] | None = None

    def add(self, outcome: outbox.Outcome, kind: str) -> None:
        if not self.pending:
            self.oldest = time.monotonic()
        self.pending.append(outcome)
        self.attempted.add(outcome.message_id)
        self.counts[kind] += 1
        if len(self.pending) >= self.MAX_PENDING:
            self.flush()  # waits for the commit in progress: the unrecorded stay few
        elif ((self._write is None or self._write.done())
              and (len(self.pending) >= self.MIN_GROUP or time.monotonic() - self.oldest >= self.MAX_AGE)):
            self.flush()

    @staticmethod
    def _write_group(outcomes: list[outbox.Outcome]) -> None:
        with transaction() as session:
            outbox.record(session, outcomes)

    def flush(self) -> None:
        """Start committing what is pending, after the commit in progress (a failed one raises here)."""
        if self._write is not None:
            write, self._write = self._write, None
            write.result()
        if self.pending:
            group, self.pending = self.pending, []
            self._write = self._writer.submit(self._write_group, group)

    def close(self) -> None:
        """Write what is left and wait for every write; raises the first failure."""
        try:
            self.flush()
            if self._write is not None:
                self._write.result()
        finally:
            self._writer.shutdown(wait=True)


def _outcome(message: outbox.Claimed, subject: str, reply: Reply, at: datetime) -> tuple[outbox.Outcome, str]:
    """The message's new state after the server's answer, and the run summary's word for it."""
    answer = (message, at, reply.code, reply.text, reply.status)
    if reply.verdict is Verdict.SENT:
        return outbox.sent(message, at, subject, str(reply)), "sent"
    if reply.verdict is Verdict.BOUNCED:
        return outbox.bounced(*answer), "bounced"
    if reply.verdict is Verdict.BLOCKED:
        return outbox.blocked(*answer), "blocked"
    if reply.verdict is Verdict.REJECTED:
        return outbox.refused(*answer), "failed"
    outcome = outbox.deferred(*answer)  # DEFERRED, and SERVER: the server's trouble is never the address's
    return outcome, outcome.status  # deferred, or failed once out of retries


def _salvage(log: OutcomeLog, token: str | None, claimed: list[int], lease: timedelta) -> None:
    """After a failed batch: record what was sent and put the rest back in the queue, if the database lets us."""
    try:
        log.close()
        if token is None:
            return
        with transaction() as session:
            # only messages never handed to the server: one whose outcome was lost keeps its claim
            released = outbox.release(session, token, [m for m in claimed if m not in log.attempted])
        run_logger().warning("delivery batch stopped; %d unsent messages back in the queue", released)
    except SQLAlchemyError as exc:
        # the claim's lease hands these messages to a later run
        run_logger().error("delivery batch stopped and the database is unreachable (%s); %d outcomes "
                           "unrecorded, the batch's claim expires in %s", type(exc).__name__, len(log.pending), lease)


# the emails that ask for a session's feedback: once it is given, one still queued must not go
FEEDBACK_REQUESTS = frozenset({"feedback_invitation", "feedback_reminder"})


def _unwanted_now(session, messages: list[outbox.Claimed]) -> dict[int, str]:
    """Messages that must not go out after all: their recipient opted out, was suppressed, or (for a
    feedback request) gave the feedback since the message was planned; a deferred retry can wait hours."""
    prefs = queries.preferences_for(session, (m.recipient_email for m in messages if m.recipient_email))
    asks = {m.message_id: m.message_metadata.get("session_id") for m in messages if m.template_type in FEEDBACK_REQUESTS}
    answered = outbox.sessions_with_feedback(session, {sid for sid in asks.values() if isinstance(sid, int)})
    reasons: dict[int, str] = {}
    for m in messages:
        reason = preference_skip(prefs.get((m.recipient_email or "").lower()), Category(m.category))
        if reason is None and asks.get(m.message_id) in answered:
            reason = SkipReason.FEEDBACK_GIVEN
        if reason is not None:
            reasons[m.message_id] = reason
    return reasons


class Pace:
    """How fast this batch sends: a 421 or 4.7.x "slow down" halves it for the rest of the batch."""

    SLOWEST = 8

    def __init__(self) -> None:
        self.slower = 1

    def heard(self, reply: Reply) -> None:
        if reply.slow_down:
            self.slower = min(self.SLOWEST, self.slower * 2)

    def rest(self, chunk_seconds: float, deadline: float | None) -> None:
        """After a chunk that took chunk_seconds: wait so that it took `slower` times as long."""
        if self.slower > 1:
            wait = chunk_seconds * (self.slower - 1)
            time.sleep(max(0.0, min(wait, deadline - time.time())) if deadline else wait)


@dataclass
class _Chunk:
    token: str
    messages: list[outbox.Claimed]


def _claim(now: datetime | None, limit: int, types: list[str] | None, lease: timedelta,
           counts: Counter[str]) -> _Chunk:
    """Claim up to limit due messages, and skip those no longer wanted (counted as withdrawn)."""
    token = uuid.uuid4().hex
    with transaction() as session:
        at = now or datetime.now(timezone.utc)
        claimed = outbox.claim(session, at, limit, token, types, lease=lease)
        unwanted = _unwanted_now(session, claimed)
        outbox.withdraw(session, token, unwanted, at)
    counts["claimed"] += len(claimed)
    if unwanted:
        counts["withdrawn"] += len(unwanted)
    return _Chunk(token, [m for m in claimed if m.message_id not in unwanted])


@task(
    name="deliver-batch",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=10),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_on(ServerDown, *DATABASE_DOWN),
)
def deliver_batch(now: datetime | None = None, limit: int = 500, template_types: list[str] | None = None,
                  deadline: float | None = None, pool: str | None = None) -> dict[str, Any]:
    """Send up to limit due messages over one SMTP connection, claimed a chunk at a time, under the send-rate limit.

    With SMTP_RATE_LIMIT set, a chunk is about a second's worth of the limit; its slots are taken
    before it is claimed, so mail that became due at a higher priority while the runner waited for
    slots is in the very next chunk. Stops at `deadline` (epoch seconds) between chunks.
    """
    settings = get_settings()
    rate = send_rate.SendRate(settings.smtp_rate_limit) if settings.smtp_rate_limit else None
    lease = timedelta(seconds=settings.claim_lease_seconds)
    counts: Counter[str] = Counter()
    log = OutcomeLog()
    compose = Composer(settings, now)
    signing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dkim") if compose.signer else None
    clock = (lambda: now) if now else (lambda: datetime.now(timezone.utc))
    pace = Pace()
    trouble = 0
    chunk: _Chunk | None = None
    in_flight: tuple[outbox.Claimed, str] | None = None

    def settle(flight: tuple[outbox.Claimed, str], reply: Reply) -> None:
        nonlocal trouble
        log.add(*_outcome(*flight, reply, clock()))
        pace.heard(reply)
        trouble = trouble + 1 if reply.verdict is Verdict.SERVER else 0
        if trouble >= TROUBLE_IN_A_ROW:
            # the full answers are on the messages; the task's error names the rule, not a recipient
            raise ServerTrouble(f"{trouble} answers in a row blamed the SMTP server, the last "
                                f"{reply.code} {reply.status or ''} ({reply.rule})")

    def send(messages: list[outbox.Claimed], connection: SmtpConnection) -> None:
        nonlocal in_flight
        # a few messages are built and signed ahead: OpenSSL signs on its thread, without the GIL,
        # while this one builds the next and the server reads the last
        ahead: deque[tuple[outbox.Claimed, str, Envelope | Future[Envelope]]] = deque()
        pending = iter(messages)

        def prepare() -> None:
            for message in pending:
                prepared = compose(message)
                if isinstance(prepared, str):
                    log.add(outbox.failed(message, clock(), prepared), "failed")
                    continue
                envelope, subject = prepared
                ahead.append((message, subject, signing.submit(compose.sign, envelope) if signing else envelope))
                return

        for _ in range(SIGN_AHEAD if signing else 1):
            prepare()
        while ahead:
            message, subject, envelope = ahead.popleft()
            if isinstance(envelope, Future):
                envelope = envelope.result()
            if in_flight is not None:
                flight, in_flight = in_flight, None
                settle(flight, connection.answer())
            connection.submit(envelope)
            in_flight = (message, subject)
            prepare()
        if in_flight is not None:
            flight, in_flight = in_flight, None
            settle(flight, connection.answer())

    try:
        with _pool(pool, settings) as connections, ExitStack() as held:
            connection: SmtpConnection | None = None  # taken from the pool once there is mail to send
            while counts["claimed"] < limit and not (deadline and time.time() >= deadline):
                wanted = min(rate.chunk if rate else limit, limit - counts["claimed"])
                before = counts["claimed"]
                if rate:  # slots first, then the claim: mail that became due during the wait goes first
                    log.flush()  # what was sent is on record before a wait that may be long
                    send_rate.acquire(rate, wanted)
                chunk = _claim(now, wanted, template_types, lease, counts)
                if chunk.messages:
                    connection = connection or held.enter_context(connections.connection())
                    started = time.monotonic()
                    send(chunk.messages, connection)
                    pace.rest(time.monotonic() - started, deadline)
                chunk = None
                if counts["claimed"] - before < wanted:
                    break  # nothing more is due
    except BaseException as exc:
        if in_flight is not None and not isinstance(exc, ServerDown):
            log.attempted.add(in_flight[0].message_id)  # the server may have taken it: it keeps its claim
        _salvage(log, chunk.token if chunk else None, [m.message_id for m in chunk.messages] if chunk else [], lease)
        raise
    finally:
        if signing is not None:
            signing.shutdown(wait=True)
    log.close()
    counts.update(log.counts)
    return {"counts": dict(counts), "render_ms": compose.render_ms}


@task(name="apply-send-rate-limit", retries=2, retry_delay_seconds=5)
def apply_send_rate() -> str | None:
    """Create or update the shared send-rate limit from SMTP_RATE_LIMIT (nothing to do when it is unset)."""
    per_minute = get_settings().smtp_rate_limit
    if per_minute is None:
        return None
    applied = send_rate.apply(per_minute)
    run_logger().info(applied)
    return applied


@task(name="read-queue", retries=2, retry_delay_seconds=5, retry_condition_fn=retry_on(*DATABASE_DOWN))
def read_queue(now: datetime) -> QueueState:
    """The queue after this run: counts by priority, type and status; the oldest due; the next retry; stuck claims."""
    settings = get_settings()
    with transaction() as session:
        return queue.state(session, now, datetime.now(timezone.utc), timedelta(seconds=settings.claim_lease_seconds))


@dataclass
class DeliveryReport:
    counts: Counter[str] = field(default_factory=Counter)
    render_ms: list[float] = field(default_factory=list)
    error: str | None = None


def deliver_due(now: datetime | None, batch_size: int, template_types: list[str] | None = None,
                budget_seconds: float | None = None) -> DeliveryReport:
    """Deliver due messages until none are left (or the budget is spent): batches side by side, one connection each.

    Up to SMTP_CONNECTIONS batch task runs at a time, each on a connection of this run's pool, so
    the run holds no more than that many connections; a round of batches that found the queue
    empty, or ran out of time, is the last.
    """
    settings = get_settings()
    report = DeliveryReport()
    deadline = time.time() + budget_seconds if budget_seconds else None
    key = uuid.uuid4().hex
    _POOLS[key] = ConnectionPool(settings, settings.smtp_connections)
    try:
        while True:
            futures = [deliver_batch.submit(now=now, limit=batch_size, template_types=template_types,
                                            deadline=deadline, pool=key) for _ in range(settings.smtp_connections)]
            full = True
            for future in futures:
                future.wait()
                state = future.state
                if state.is_failed():
                    # the batch's unsent messages went back to the queue; a later run delivers them
                    report.error = report.error or str(state.message or "delivery failed")
                    full = False
                    continue
                result = state.result()
                report.counts.update(result["counts"])
                report.render_ms.extend(result["render_ms"])
                full = full and result["counts"].get("claimed", 0) >= batch_size
            if not full or (deadline and time.time() >= deadline):
                return report
    finally:
        _POOLS.pop(key).close()
