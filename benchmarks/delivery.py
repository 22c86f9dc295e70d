"""Delivery throughput: plan, render, build and send N feedback reminders against PostgreSQL.

The ceiling, measured in the same run: the same number of pre-built messages
sent with plain smtplib over one connection into the same sink. The sink is
Postfix's smtp-sink (C; `make smtp-sink` installs it), fast enough not to be
the bottleneck. The same flow then sends N more into a fresh database with
DKIM signing on (a 2048-bit RSA key), against the unsigned run; a few more,
sent the same way into a sink that keeps them, must verify with dkimpy.
Prints one JSON line per figure; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import smtplib
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from common import ROOT, CpuUse, emit, free_port, fresh_database, log, percentile, start_sink

DB_NAME = "tutormax_bench_delivery"
DKIM_DOMAIN, DKIM_SELECTOR = "tutormax.example", "bench2026"
CHECKED = 3  # messages sent into the keeping sink and verified with dkimpy


def due_platform(url: str, n: int, now: datetime, first: int = 1) -> None:
    """n completed sessions (ids from first) that ended 24-48 hours ago with no feedback: n reminders due.

    The first set (first=1) brings the manager and the tutors; a later set goes to tutor 1.
    """
    from sqlalchemy import insert

    from db.models import Manager, Student, Tutor, TutoringSession
    from db.session import get_engine

    tutors = max(1, n // 100) if first == 1 else 1
    with get_engine(url).begin() as conn:
        if first == 1:
            conn.execute(insert(Manager), [{"id": 1, "name": "Mona Manager", "email": "mona@example.com"}])
            conn.execute(insert(Tutor), [{"id": t, "name": f"Tutor {t}", "email": f"tutor{t}@example.com",
                                          "manager_id": 1, "created_at": now} for t in range(1, tutors + 1)])
        for start in range(first - 1, first - 1 + n, 10000):
            ids = range(start + 1, min(first - 1 + n, start + 10000) + 1)
            conn.execute(insert(Student), [{"id": i, "name": f"Student {i}", "email": f"student{i}@example.com",
                                            "birth_date": date(2008, 1, 1), "parent_consent": False} for i in ids])
            conn.execute(insert(TutoringSession), [{
                "id": i, "tutor_id": 1 + i % tutors, "student_id": i, "session_number": 3, "subject": "Algebra",
                "scheduled_start": now - timedelta(hours=31), "started_at": now - timedelta(hours=31),
                "ended_at": now - timedelta(hours=24, minutes=i % 1400), "status": "completed"} for i in ids])


def render_and_mime_figures(samples: int) -> tuple[list[float], list[float]]:
    from tasks import mime
    from tasks.render import get_renderer, message_context
    from tutormax.links import Links
    from tutormax.settings import get_settings

    settings = get_settings()
    renderer, links = get_renderer(settings.timezone), Links(settings)
    now = datetime.now(timezone.utc)
    render_ms, mime_ms = [], []
    for i in range(samples):
        t0 = time.perf_counter()
        context = message_context(
            template_type="feedback_reminder", message_id=i + 1, recipient_name=f"Student {i}",
            metadata={"student_name": f"Student {i}", "tutor_name": "Tutor", "subject_name": "Algebra",
                      "session_ended_at": (now - timedelta(hours=30)).isoformat(), "is_parent": i % 10 == 0},
            settings=settings, links=links, now=now)
        rendered = renderer.render("feedback_reminder", "v1", context)
        t1 = time.perf_counter()
        mime.build(message_id=i + 1, idempotency_key=f"bench:{i}", from_email=settings.smtp_from_email,
                   from_name=settings.smtp_from_name, to_email=f"student{i}@example.com", to_name=f"Student {i}",
                   subject=rendered.subject, html=rendered.html, text=rendered.text,
                   unsubscribe_url=context["unsubscribe_url"], list_id="feedback-reminder.tutormax.example", date=now)
        t2 = time.perf_counter()
        render_ms.append((t1 - t0) * 1000)
        mime_ms.append((t2 - t1) * 1000)
    return render_ms, mime_ms


def ceiling(port: int, n: int) -> float:
    """Plain smtplib: n pre-built messages of the same size over one connection."""
    from tasks import mime

    envelope = mime.build(message_id=1, idempotency_key="ceiling", from_email="noreply@tutormax.example",
                          from_name="TutorMax", to_email="student1@example.com", to_name="Student 1",
                          subject="How was your Algebra session?", html="<p>" + "x" * 4400 + "</p>",
                          text="y" * 600, unsubscribe_url="http://127.0.0.1/u/x", list_id="x.example",
                          date=datetime.now(timezone.utc))
    messages = [envelope.data] * n
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        for i, data in enumerate(messages):
            smtp.sendmail("noreply@tutormax.example", [f"student{i}@example.com"], data)
    return n / (time.perf_counter() - started)


def dkim_on(folder: Path) -> bytes:
    """Turn DKIM signing on with a fresh 2048-bit RSA key (a file, as DKIM_PRIVATE_KEY may be); its DNS record."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from tasks.dkim import public_record
    from tutormax.settings import get_settings

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = folder / "dkim.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    os.environ.update(DKIM_DOMAIN=DKIM_DOMAIN, DKIM_SELECTOR=DKIM_SELECTOR, DKIM_PRIVATE_KEY=str(pem))
    get_settings.cache_clear()
    return public_record(key).encode()


def counting_signatures() -> list[bool]:
    """One entry for every signature the composer makes from now on: the signed run must sign every message."""
    from tasks.compose import Composer

    made: list[bool] = []
    sign = Composer.sign

    def counted(self, envelope):
        made.append(True)  # atomic: the signing threads need no lock
        return sign(self, envelope)

    Composer.sign = counted
    return made


def as_received(dump: bytes) -> bytes:
    """A message as the client sent it, from smtp-sink's dump: its own headers gone, lines ending in CRLF again."""
    lines = dump.split(b"\n")
    i = 0
    while lines[i].startswith((b"X-Client-", b"X-Helo-Args:", b"X-Mail-Args:", b"X-Rcpt-Args:")):
        i += 1
    if lines[i].startswith(b"Received:"):
        i += 1
        while lines[i].startswith(b"\t"):
            i += 1
    body = lines[i:]
    if body and body[-1] == b"":
        body = body[:-2] if len(body) > 1 and body[-2] == b"" else body[:-1]  # the dump's closing newline and line
    return b"\r\n".join(body) + b"\r\n"


def verify_signatures(folder: Path, record: bytes) -> int:
    """How many messages smtp-sink kept in folder; exits unless every one carries an rsa-sha256 signature that verifies."""
    import dkim

    name = f"{DKIM_SELECTOR}._domainkey.{DKIM_DOMAIN}.".encode()
    kept = sorted(folder.iterdir())
    if not kept:
        sys.exit("DKIM check: the keeping sink received nothing")
    for path in kept:
        message = as_received(path.read_bytes())
        if not message.startswith(b"DKIM-Signature: v=1; a=rsa-sha256;"):
            sys.exit(f"DKIM check: {path.name} does not start with an rsa-sha256 DKIM-Signature")
        if not dkim.verify(message, dnsfunc=lambda asked, timeout=5: record if asked == name else None):
            sys.exit(f"DKIM check: the signature of {path.name} does not verify against the public key")
    return len(kept)


def send_reminders(n: int, now: datetime, batch_size: int) -> CpuUse:
    """The feedback-reminders flow plans and sends the n reminders due at now; the time and CPU it took."""
    from flows.feedback_reminders import feedback_reminders

    with CpuUse() as use:
        summary = feedback_reminders(now=now, batch_size=batch_size)
    if summary["sent"] != n:
        sys.exit(f"expected {n} sent, got {summary}")
    return use


def use_database(name: str, n: int, now: datetime) -> str:
    """A fresh, migrated database with n reminders due at now, made the one the flows use; its URL."""
    from db.migrate import upgrade
    from tutormax.settings import get_settings

    url = fresh_database(name)
    upgrade(url)
    due_platform(url, n, now)
    os.environ["DATABASE_URL"] = url
    get_settings.cache_clear()
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()

    port = free_port()
    os.environ.update(SMTP_HOST="127.0.0.1", SMTP_PORT=str(port), SMTP_USE_TLS="false",
                      SECRET_KEY="bench-secret", PREFECT_SERVER_ANALYTICS_ENABLED="false",
                      PREFECT_LOGGING_LEVEL="WARNING")
    # on a fresh clone var/ does not exist yet, and Prefect won't create a missing parent folder
    Path(os.environ.setdefault("PREFECT_HOME", str(ROOT / "var" / "prefect"))).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="tutormax-bench-delivery-"))  # the DKIM key: removed at the end
    kept = Path(tempfile.mkdtemp(prefix="tutormax-bench-dkim-"))  # the keeping sink's messages
    sink = start_sink(port)
    try:
        from flows.feedback_reminders import feedback_reminders
        from tutormax.settings import get_settings

        now = datetime.now(timezone.utc)
        log(f"migrating and creating {args.n:,} due sessions in PostgreSQL")
        use_database(DB_NAME, args.n, now)
        log("measuring render and MIME cost per message")
        render_ms, mime_ms = render_and_mime_figures(min(args.n, 5000))
        log("warming up Prefect (the local server starts on first use)")
        feedback_reminders(now=now - timedelta(days=30), dry_run=True)
        log("ceiling, first look: the same count of pre-built messages with plain smtplib")
        ceiling_before = ceiling(port, args.n)
        log(f"end to end: the feedback-reminders flow plans and sends {args.n:,} reminders")
        plain = send_reminders(args.n, now, args.batch_size)
        log("ceiling, second look")
        # the machine is noisy: the better of two looks is the ceiling, so the ratio errs low
        ceiling_after = ceiling(port, args.n)
        ceiling_rate = max(ceiling_before, ceiling_after)

        log(f"DKIM on: a fresh database with the same {args.n:,} due sessions, rsa-sha256 with a 2048-bit key")
        url = use_database(f"{DB_NAME}_dkim", args.n, now)
        record = dkim_on(folder)
        signatures = counting_signatures()
        signed_run = send_reminders(args.n, now, args.batch_size)
        signed = len(signatures)
        if signed != args.n:
            sys.exit(f"DKIM on: {signed} signatures for {args.n} messages sent")
        log(f"DKIM check: {CHECKED} more reminders into a sink that keeps them, verified with dkimpy")
        keeping_port = free_port()
        keeping = start_sink(keeping_port, kept)
        try:
            due_platform(url, CHECKED, now, first=args.n + 1)
            os.environ["SMTP_PORT"] = str(keeping_port)
            get_settings.cache_clear()
            send_reminders(CHECKED, now, args.batch_size)
        finally:
            keeping.terminate()
            keeping.wait()
        verified = verify_signatures(kept, record)
        if verified != CHECKED:
            sys.exit(f"DKIM check: the sink kept {verified} of the {CHECKED} messages sent")
    finally:
        sink.terminate()
        sink.wait()
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(kept, ignore_errors=True)

    end_to_end = args.n / plain.seconds
    emit("end_to_end_msgs_per_s", round(end_to_end, 1), "msg/s", **plain.figures())
    emit("ceiling_msgs_per_s", round(ceiling_rate, 1), "msg/s", looks=[round(ceiling_before), round(ceiling_after)])
    emit("ratio_to_ceiling", round(end_to_end / ceiling_rate, 3), "ratio", baseline="ceiling_msgs_per_s")
    emit("render_ms_p50", round(statistics.median(render_ms), 3), "ms")
    emit("render_ms_p99", round(percentile(render_ms, 0.99), 3), "ms")
    emit("mime_ms_p50", round(statistics.median(mime_ms), 3), "ms")
    emit("peak_rss_mb", round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), "MB")
    emit("messages", args.n, "messages")
    dkim_rate = args.n / signed_run.seconds
    emit("dkim_msgs_per_s", round(dkim_rate, 1), "msg/s", **signed_run.figures(), signed=signed,
         algorithm="rsa-sha256", key_bits=2048)
    emit("dkim_ratio", round(dkim_rate / end_to_end, 3), "ratio", baseline="end_to_end_msgs_per_s")
    emit("dkim_verified", verified, "messages", checked_with="dkimpy")


if __name__ == "__main__":
    main()
