"""Delivery throughput: plan, render, build and send N feedback reminders against PostgreSQL.

The ceiling, measured in the same run: the same number of pre-built messages
sent with plain smtplib over one connection into the same sink. The sink is
Postfix's smtp-sink (C; `make smtp-sink` installs it), fast enough not to be
the bottleneck. Prints one JSON line per figure; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import smtplib
import socket
import statistics
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from common import ROOT, emit, free_port, fresh_database, log

DB_NAME = "tutormax_bench_delivery"


def start_sink(port: int) -> subprocess.Popen:
    binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not Path(binary).exists():
        sys.exit("smtp-sink not found: run `make smtp-sink` (installs Debian's postfix package)")
    proc = subprocess.Popen([binary, "-u", "postfix", f"127.0.0.1:{port}", "256"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    sys.exit("smtp-sink did not start")


def due_platform(url: str, n: int, now: datetime) -> None:
    """n completed sessions that ended 24-48 hours ago with no feedback: n reminders due."""
    from sqlalchemy import insert

    from db.models import Manager, Student, Tutor, TutoringSession
    from db.session import get_engine

    tutors = max(1, n // 100)
    with get_engine(url).begin() as conn:
        conn.execute(insert(Manager), [{"id": 1, "name": "Mona Manager", "email": "mona@example.com"}])
        conn.execute(insert(Tutor), [{"id": t, "name": f"Tutor {t}", "email": f"tutor{t}@example.com", "manager_id": 1,
                                      "created_at": now} for t in range(1, tutors + 1)])
        for start in range(0, n, 10000):
            ids = range(start + 1, min(n, start + 10000) + 1)
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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


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
    url = fresh_database(DB_NAME)
    os.environ["DATABASE_URL"] = url
    sink = start_sink(port)
    try:
        from db.migrate import upgrade
        from flows.feedback_reminders import feedback_reminders

        now = datetime.now(timezone.utc)
        log(f"migrating and creating {args.n:,} due sessions in PostgreSQL")
        upgrade(url)
        due_platform(url, args.n, now)
        log("measuring render and MIME cost per message")
        render_ms, mime_ms = render_and_mime_figures(min(args.n, 5000))
        log("warming up Prefect (the local server starts on first use)")
        feedback_reminders(now=now - timedelta(days=30), dry_run=True)
        log("ceiling, first look: the same count of pre-built messages with plain smtplib")
        ceiling_before = ceiling(port, args.n)
        log(f"end to end: the feedback-reminders flow plans and sends {args.n:,} reminders")
        started = time.perf_counter()
        summary = feedback_reminders(now=now, batch_size=args.batch_size)
        elapsed = time.perf_counter() - started
        if summary["sent"] != args.n:
            sys.exit(f"expected {args.n} sent, got {summary}")
        log("ceiling, second look")
        # the machine is noisy: the better of two looks is the ceiling, so the ratio errs low
        ceiling_rate = max(ceiling_before, ceiling(port, args.n))
    finally:
        sink.terminate()
        sink.wait()

    end_to_end = args.n / elapsed
    emit("end_to_end_msgs_per_s", round(end_to_end, 1), "msg/s", seconds=round(elapsed, 2))
    emit("ceiling_msgs_per_s", round(ceiling_rate, 1), "msg/s")
    emit("ratio_to_ceiling", round(end_to_end / ceiling_rate, 3), "ratio", baseline="ceiling_msgs_per_s")
    emit("render_ms_p50", round(statistics.median(render_ms), 3), "ms")
    emit("render_ms_p99", round(percentile(render_ms, 0.99), 3), "ms")
    emit("mime_ms_p50", round(statistics.median(mime_ms), 3), "ms")
    emit("peak_rss_mb", round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), "MB")
    emit("messages", summary["sent"], "messages")


if __name__ == "__main__":
    main()
