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
from datetime import datetime, timedelta, timezone
from email import policy

from tutormax.settings import var_dir


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _step(text: str) -> float:
    print(f"==> {text}", flush=True)
    return time.perf_counter()


def demo_times(url: str, now: datetime) -> dict[str, datetime]:
    """A moment for each automation at which a platform generated at now gives it work."""
    from sqlalchemy import func, select

    from db.models import Feedback, TutoringSession
    from db.session import transaction
    from tutormax.settings import get_settings

    tz = get_settings().tz
    local = now.astimezone(tz)
    monday = (local - timedelta(days=local.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    with transaction(url) as s:
        unrated = ~select(Feedback.id).where(Feedback.session_id == TutoringSession.id).exists()
        # the latest session that nobody rated, so the invitation window (0-2 hours after) finds it
        last_unrated = s.scalar(select(func.max(TutoringSession.ended_at)).where(
            TutoringSession.ended_at <= now - timedelta(days=3), TutoringSession.status == "completed", unrated))
    return {
        "feedback-invitations": (last_unrated or now) + timedelta(minutes=30),
        "feedback-reminders": now,
        "first-session-checkins": now,
        "rescheduling-alerts": now,
        "weekly-digests": monday + timedelta(hours=9),
        "manager-digests": monday + timedelta(hours=8),
        "monthly-summaries": first + timedelta(hours=9),
        "performance-reports": first + timedelta(hours=10),
    }


def run_demo(sessions: int = 20000) -> None:
    """Reset the embedded database and Maildir, generate a platform, run every automation, simulate recipients."""
    started = time.perf_counter()
    state = var_dir()
    if os.environ.get("DATABASE_URL"):
        sys.exit("the demo runs on the embedded SQLite database; unset DATABASE_URL (it would fill that database)")
    maildir = state / "maildir"
    for path in (state / "tutormax.db", state / "tutormax.db-wal", state / "tutormax.db-shm"):
        path.unlink(missing_ok=True)
    shutil.rmtree(maildir, ignore_errors=True)
    # the sink and the tracker take free ports so a second demo, or a real MTA on 8025, is no obstacle
    port, tracker_port = free_port(), free_port()
    os.environ.update(SMTP_HOST="127.0.0.1", SMTP_PORT=str(port), SMTP_USE_TLS="false", SMTP_USER="",
                      TRACKING_BASE_URL=f"http://127.0.0.1:{tracker_port}")

    from db.demo_data import PlatformSize, generate_platform
    from db.migrate import upgrade
    from flows.registry import FLOWS
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
    _step("starting an A/B test on feedback reminders: v1 against v1_b's subject and button, 50/50")
    from db.models import EmailCampaign
    from db.session import transaction

    with transaction() as session:
        session.add(EmailCampaign(campaign_id="reminder-subject-test", campaign_name="Reminder subject test",
                                  campaign_type="automation_ab", template_type="feedback_reminder",
                                  template_version="v1", ab_test_enabled=True, status="active", created_by="demo",
                                  started_at=now))
    _step(f"starting the local SMTP sink on 127.0.0.1:{port} -> {maildir}")
    sink = start_sink(maildir, port=port)
    summaries = {}
    try:
        for name, at in demo_times(settings.database_url, now).items():
            t = _step(f"running {name} through Prefect as of {at.astimezone(settings.tz):%a %Y-%m-%d %H:%M %Z}")
            summaries[name] = FLOWS[name](now=at)
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
        _step("running checkin-escalations (the sweep) for concerning survey answers")
        summaries["checkin-escalations"] = FLOWS["checkin-escalations"](now=now)
        _step("running cleanup-old-tracking-events")
        cleanup = FLOWS["cleanup-old-tracking-events"](now=now)
        _step("running email-analytics over the last 60 days")
        analytics = FLOWS["email-analytics"](now=now + timedelta(days=1), days=61)
    finally:
        sink.stop()

    box = mailbox.Maildir(maildir, create=False)
    keys = sorted(box.keys())
    print(f"\n{'automation':<24}{'planned':>8}{'sent':>7}{'deferred':>9}{'failed':>7}{'skipped':>8}{'render p50':>12}")
    for name, summary in summaries.items():
        print(f"{name:<24}{summary['planned']:>8,}{summary['sent']:>7,}{summary['deferred']:>9,}"
              f"{summary['failed'] + summary['bounced']:>7,}{summary['skipped']:>8,}"
              f"{(str(summary['render_ms_p50']) + ' ms') if summary['render_ms_p50'] else '-':>12}")
    print(f"cleanup-old-tracking-events: {cleanup['deleted']} events older than {cleanup['cutoff'][:10]} deleted")
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
        print(f"\nIts HTML part: {preview}; every template with sample data: tutormax preview")
    _print_tracking(settings.database_url, tally)
    _print_analytics(analytics)
    print(f"\nDemo finished in {time.perf_counter() - started:.0f} s.")


def _print_analytics(result: dict) -> None:
    def pct(value):
        return "—" if value is None else f"{value * 100:.1f}%"

    print("\nEmail analytics (human opens exclude machine opens; a human click counts as an open):")
    print(f"    messages {result['messages']:,}, delivery {pct(result['delivery_rate'])}, "
          f"opens {pct(result['open_rate_human'])} human / {pct(result['open_rate_all'])} all, "
          f"clicks {pct(result['click_through_rate'])}, click-to-open {pct(result['click_to_open_rate'])}")
    print("    success metrics: " + ", ".join(f"{name} {status}" for name, status in result["success"].items()))
    for campaign, verdict in result["ab_tests"].items():
        print(f"    A/B {campaign}: {verdict['reason']}")
    print(f"    report: {result['report']} (CSV exports beside it)")


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
