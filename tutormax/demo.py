"""`make demo`: a demo platform, a local SMTP sink and the feedback-reminder flow, start to finish."""

from __future__ import annotations

import email
import mailbox
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from email import policy

from tutormax.settings import var_dir


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _step(text: str) -> float:
    print(f"==> {text}", flush=True)
    return time.perf_counter()


def run_demo(sessions: int = 20000) -> None:
    """Reset the embedded database and Maildir, generate a platform, run the flow, print what happened."""
    started = time.perf_counter()
    state = var_dir()
    if os.environ.get("DATABASE_URL"):
        sys.exit("the demo runs on the embedded SQLite database; unset DATABASE_URL (it would fill that database)")
    maildir = state / "maildir"
    for path in (state / "tutormax.db", state / "tutormax.db-wal", state / "tutormax.db-shm"):
        path.unlink(missing_ok=True)
    shutil.rmtree(maildir, ignore_errors=True)
    # the sink and the tracker take free ports so a second demo, or a real MTA on 8025, is no obstacle
    port, tracker_port = _free_port(), _free_port()
    os.environ.update(SMTP_HOST="127.0.0.1", SMTP_PORT=str(port), SMTP_USE_TLS="false", SMTP_USER="",
                      TRACKING_BASE_URL=f"http://127.0.0.1:{tracker_port}")

    from db.demo_data import PlatformSize, generate_platform
    from db.migrate import upgrade
    from tutormax.settings import get_settings
    from tutormax.sink import start_sink

    get_settings.cache_clear()
    settings = get_settings()
    now = datetime.now(timezone.utc).replace(microsecond=0)

    t = _step(f"migrating {settings.safe_database_url()}")
    upgrade(settings.database_url)
    t = _step(f"generating a demo platform ({sessions:,} sessions over 60 days)")
    counts = generate_platform(settings.database_url, size=PlatformSize.for_sessions(sessions), now=now)
    print("    " + ", ".join(f"{table}: {n:,}" for table, n in counts.items()), f"({time.perf_counter() - t:.1f} s)")
    _step(f"starting the local SMTP sink on 127.0.0.1:{port} -> {maildir}")
    sink = start_sink(maildir, port=port)
    try:
        t = _step("running the feedback-reminders flow through Prefect (local server)")
        from flows.feedback_reminders import feedback_reminders

        summary = feedback_reminders(now=now)
        print(f"    flow finished in {time.perf_counter() - t:.1f} s")
    finally:
        sink.stop()

    t = _step(f"starting the tracker under gunicorn on 127.0.0.1:{tracker_port}")
    tracker = _start_tracker(tracker_port)
    try:
        # opens within seconds of sending count as machine opens: let a moment pass, as in real life
        time.sleep(max(0.0, 3.0 - (time.perf_counter() - t)))
        _step("simulating recipients over HTTP: desktop, phone, Apple Mail Privacy Protection, a link scanner")
        from tutormax.simulate import simulate

        tally = simulate(maildir)
    finally:
        tracker.terminate()
        tracker.wait(timeout=30)

    box = mailbox.Maildir(maildir, create=False)
    keys = sorted(box.keys())
    print("\nFeedback reminders")
    for figure in ("planned", "sent", "deferred", "failed", "bounced", "skipped", "already_planned"):
        print(f"    {figure:<16}{summary[figure]:>7,}")
    print(f"    {'render p50 ms':<16}{summary['render_ms_p50']!s:>7}")
    print(f"\nDelivered messages: {len(keys):,} in the Maildir {maildir}")
    if keys:
        example = email.message_from_bytes(box.get_bytes(keys[0]), policy=policy.default)
        print("\nOne of them, as the recipient's client sees it:\n")
        for header in ("From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post"):
            print(f"    {header}: {example[header]}")
        print()
        for line in example.get_body(("plain",)).get_content().splitlines():
            print(f"    {line}")
        preview = state / "example.html"
        preview.write_text(example.get_body(("html",)).get_content())
        print(f"\nIts HTML part: {preview}")
    _print_tracking(settings.database_url, tally)
    print(f"\nDemo finished in {time.perf_counter() - started:.0f} s.")


def _start_tracker(port: int) -> subprocess.Popen:
    from tutormax.settings import PROJECT_ROOT

    env = {**os.environ, "TRACKER_BIND": f"127.0.0.1:{port}", "TRACKER_WORKERS": "2"}
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(PROJECT_ROOT / "tracking_app/gunicorn.conf.py"),
                               "--log-level", "warning", "tracking_app.wsgi:app"], cwd=PROJECT_ROOT, env=env)
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return server
        except OSError:
            time.sleep(0.1)
    server.terminate()
    sys.exit("the tracker did not start")


def _print_tracking(url: str, tally) -> None:
    from sqlalchemy import func, select

    from db.models import EmailPreference, EmailTrackingEvent, Feedback
    from db.session import transaction

    e = EmailTrackingEvent
    with transaction(url) as s:
        rows = s.execute(select(e.event_type, e.is_machine, e.machine_reason, func.count())
                         .where(e.event_type.in_(["opened", "clicked", "unsubscribed"]))
                         .group_by(e.event_type, e.is_machine, e.machine_reason)
                         .order_by(e.event_type, e.is_machine, e.machine_reason)).all()
        devices = s.execute(select(e.device, func.count()).where(e.event_type == "opened", e.is_machine.is_(False))
                            .group_by(e.device).order_by(func.count().desc())).all()
        feedback = s.scalar(select(func.count()).select_from(Feedback).where(Feedback.message_id.is_not(None)))
        opted_out = s.scalar(select(func.count()).select_from(EmailPreference)
                             .where(EmailPreference.feedback_reminders.is_(False)))
    print("\nSimulated recipients: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.items())))
    print("What the tracker recorded:")
    for kind, machine, reason, count in rows:
        print(f"    {kind:<13}{'machine (' + reason + ')' if machine else 'human':<36}{count:>5}")
    print("    human opens by device: " + ", ".join(f"{d} {n}" for d, n in devices))
    print(f"    feedback given from reminder links: {feedback}; addresses opted out of reminders: {opted_out}")
