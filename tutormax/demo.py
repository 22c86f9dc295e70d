"""`make demo`: a demo platform, a local SMTP sink and the feedback-reminder flow, start to finish."""

from __future__ import annotations

import email
import errno
import mailbox
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from email import policy
from pathlib import Path
from urllib.parse import urlsplit

from tutormax.prefect_server import PrefectServer, PrefectServerError, healthy
from tutormax.settings import var_dir

# Prefect's own temporary server allows 20 s, too few for its first start (it migrates its database)
# on a busy 2-core machine
PREFECT_STARTUP_SECONDS = 180.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _step(text: str) -> float:
    print(f"==> {text}", flush=True)
    return time.perf_counter()


# run after the recipients have answered (escalations of their concerning answers), or last
AFTER_RECIPIENTS = ("checkin-escalations", "process-bounces", "cleanup-old-tracking-events", "email-analytics")


def demo_times(url: str, now: datetime) -> dict[str, datetime]:
    """When each sending automation in prefect.yaml runs in the demo: `now`, but where the platform has work later.

    A platform generated at now has sessions that ended minutes and days ago; the digests, summaries
    and reports look at last week and last month, so they run as of this Monday and the 1st.
    """
    from db.demo_data import latest_unrated_session_end
    from db.session import transaction
    from flows.registry import deployment_specs
    from tutormax.settings import get_settings

    tz = get_settings().tz
    local = now.astimezone(tz)
    monday = (local - timedelta(days=local.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    with transaction(url) as s:
        # the latest session that nobody rated, so the invitation window (0-2 hours after) finds it
        last_unrated = latest_unrated_session_end(s, now - timedelta(days=3))
    later = {
        "feedback-invitations": (last_unrated or now) + timedelta(minutes=30),
        "weekly-digests": monday + timedelta(hours=9),
        "manager-digests": monday + timedelta(hours=8),
        "monthly-summaries": first + timedelta(hours=9),
        "performance-reports": first + timedelta(hours=10),
    }
    # a deployment without a schedule is an operator's form (manage-campaign), not a run on a clock
    return {spec["name"]: later.get(spec["name"], now) for spec in deployment_specs()
            if spec["name"] not in AFTER_RECIPIENTS and spec.get("schedules")}


def tracker_bind(base_url: str) -> str:
    """The demo tracker's gunicorn bind: TRACKING_BASE_URL's host and port, so the mail's links outlive the demo.

    Stops the demo, before it changes anything, when that address cannot be listened on.
    """
    parts = urlsplit(base_url)
    if parts.scheme != "http":
        sys.exit(f"the demo's tracker serves plain HTTP, so TRACKING_BASE_URL={base_url} cannot reach it; "
                 "try TRACKING_BASE_URL=http://127.0.0.1:8000 make demo")
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    in_url = f"[{host}]" if ":" in host else host
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family) as sock:
            # as gunicorn does: the previous demo's connections in TIME_WAIT do not make the port taken
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            other = port + 1 if port < 65535 else 8001
            sys.exit(f"port {port} on {host} is taken (is `make tracker` or another demo running?), and the demo's "
                     f"tracker must listen there to serve TRACKING_BASE_URL={base_url}. Stop what listens there, "
                     f"or pick another port: TRACKING_BASE_URL=http://{in_url}:{other} make demo")
        sys.exit(f"the demo's tracker cannot listen on {host}:{port}, the address of TRACKING_BASE_URL={base_url} "
                 f"({exc.strerror or exc}); try TRACKING_BASE_URL=http://127.0.0.1:8000 make demo")
    return f"{in_url}:{port}"


@contextmanager
def prefect_api(home: Path, log: Path) -> Iterator[tuple[Callable[[], None], str]]:
    """Where the demo's flow runs go: PREFECT_API_URL's server if it answers, else a local one started now.

    Yields a function that waits until the API answers, and where to browse the runs afterwards;
    a server started here stops on the way out.
    """
    configured = os.environ.get("PREFECT_API_URL")
    if configured and healthy(configured):
        yield (lambda: None), f"open {configured.rstrip('/').removesuffix('/api')}"
        return
    if configured:
        print(f"    PREFECT_API_URL={configured} does not answer; the demo starts a Prefect server of its own")
    server = PrefectServer.launch(free_port(), home=home, log=log)

    def ready() -> None:
        t = _step(f"waiting for the local Prefect server at {server.api_url} (a first start migrates its database)")
        try:
            server.wait_healthy(PREFECT_STARTUP_SECONDS)
        except PrefectServerError as exc:
            sys.exit(str(exc))
        print(f"    ready in {time.perf_counter() - t:.1f} s")

    # Prefect reads its settings from the environment when first imported; the tracker inherits them too
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):  # in case Prefect was imported already
            yield ready, "make ui, then open http://127.0.0.1:4200"
    finally:
        _drain_prefect()
        server.stop()
        if configured:
            os.environ["PREFECT_API_URL"] = configured
        else:
            del os.environ["PREFECT_API_URL"]


def _drain_prefect() -> None:
    # the runs' last logs and events go now, while the server listens: at exit they would wait on a
    # stopped server (over a minute) and then be lost; Prefect's own test harness drains the same way
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=30)


def run_demo(sessions: int = 20000, prefect_home: Path | None = None) -> None:
    """Reset the embedded database and Maildir, generate a platform, run every automation, simulate recipients."""
    started = time.perf_counter()
    state = var_dir()
    if os.environ.get("DATABASE_URL"):
        sys.exit("the demo runs on the embedded SQLite database; unset DATABASE_URL (it would fill that database)")
    from tutormax.settings import get_settings, load_settings

    bind = tracker_bind(load_settings().tracking_base_url)
    # the sink takes a free port so a real MTA on 8025 is no obstacle: the Maildir keeps the mail either way
    port = free_port()
    # bounces come back to a tagged envelope sender (VERP) and land where process-bounces reads them
    os.environ.update(SMTP_HOST="127.0.0.1", SMTP_PORT=str(port), SMTP_USE_TLS="false", SMTP_USER="",
                      BOUNCE_ADDRESS="bounces@bounce.tutormax.example", BOUNCE_MAILDIR=str(state / "bounces"),
                      BOUNCE_IMAP_HOST="")
    get_settings.cache_clear()
    settings = get_settings()
    maildir = state / "maildir"
    for path in (state / "tutormax.db", state / "tutormax.db-wal", state / "tutormax.db-shm"):
        path.unlink(missing_ok=True)
    shutil.rmtree(maildir, ignore_errors=True)
    shutil.rmtree(state / "bounces", ignore_errors=True)
    with prefect_api(prefect_home or state / "prefect", state / "prefect-server.log") as (prefect_ready, browse):
        _run(settings, sessions, maildir, port, bind, prefect_ready)
    print(f"\nBrowse these runs in the Prefect UI: {browse}")
    tracker = "make tracker" if bind == "127.0.0.1:8000" else f"TRACKER_BIND={bind} make tracker"
    print(f"The links in {maildir} work while the tracker serves {settings.tracking_base_url}: {tracker}")
    print(f"Demo finished in {time.perf_counter() - started:.0f} s.")


def _run(settings, sessions: int, maildir: Path, port: int, bind: str, prefect_ready: Callable[[], None]) -> None:
    """The demo proper: a platform, every automation through Prefect, recipients over HTTP, the results."""
    from db.demo_data import PlatformSize, generate_platform, move_students_to
    from db.migrate import upgrade
    from flows.registry import load_all_flows
    from tutormax.sink import UNREACHABLE_DOMAIN, start_sink

    FLOWS = load_all_flows()
    state = var_dir()
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
    campaign_id = _schedule_campaign(now)
    with transaction() as session:
        gone = move_students_to(session, UNREACHABLE_DOMAIN, 5)
    _step(f"{len(gone)} students' addresses are at {UNREACHABLE_DOMAIN}: the sink takes their mail, then bounces it "
          f"into {settings.bounce_maildir}")
    _step(f"starting the local SMTP sink on 127.0.0.1:{port} -> {maildir}")
    sink = start_sink(maildir, port=port, bounce_maildir=Path(settings.bounce_maildir))
    summaries = {}
    try:
        prefect_ready()
        for name, at in demo_times(settings.database_url, now).items():
            t = _step(f"running {name} through Prefect as of {at.astimezone(settings.tz):%a %Y-%m-%d %H:%M %Z}")
            result = FLOWS[name](now=at)
            if name != "scheduled-campaigns":  # it plans; deliver-outbox, next, sends the campaign's test
                summaries[name] = result
        t = _step(f"starting the tracker under gunicorn on {bind} ({settings.tracking_base_url})")
        tracker = _start_tracker(bind, settings.tracking_base_url)
        try:
            # opens within seconds of sending count as machine opens: let a moment pass, as in real life
            time.sleep(max(0.0, 3.0 - (time.perf_counter() - t)))
            _step("simulating recipients over HTTP: desktop, phone, Apple Mail Privacy Protection, a link scanner")
            from tutormax.simulate import simulate

            tally = simulate(maildir, bounce_maildir=Path(settings.bounce_maildir))
        finally:
            tracker.terminate()
            tracker.wait(timeout=30)
        _step("running checkin-escalations (the sweep) for concerning survey answers")
        summaries["checkin-escalations"] = FLOWS["checkin-escalations"](now=now)
        _step(f"running process-bounces over {settings.bounce_maildir}: the bounces and a spam complaint")
        bounces = FLOWS["process-bounces"](now=now)
        later = now + timedelta(hours=1)
        _step("an hour on, the A/B test's wait is over: scheduled-campaigns picks what the rest get, "
              "deliver-outbox sends it, and the next run completes the campaign")
        FLOWS["scheduled-campaigns"](now=later)
        summaries["deliver-outbox +1 h"] = FLOWS["deliver-outbox"](now=later)
        FLOWS["scheduled-campaigns"](now=later + timedelta(minutes=15))
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
              f"{summary['failed'] + summary['bounced'] + summary['blocked']:>7,}{summary['skipped']:>8,}"
              f"{(str(summary['render_ms_p50']) + ' ms') if summary['render_ms_p50'] else '-':>12}")
    print(f"cleanup-old-tracking-events: {cleanup['deleted']} events older than {cleanup['cutoff'][:10]} deleted")
    _print_bounces(bounces)
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
    print("\nThe campaign (tutormax campaign show):")
    from tutormax.campaign_cli import show

    show(campaign_id, indent="    ")
    _print_analytics(analytics)


CAMPAIGN_BODY = """Our support team keeps **shorter hours** over the winter break:

- December 22 to January 2: 9 am to 3 pm
- Sessions run as booked; rescheduling works as always

[See the winter calendar](https://tutormax.example/winter-hours) to plan your sessions around the holidays.
"""


def _schedule_campaign(now: datetime) -> str:
    """An announcement to active students, A/B testing two subjects on 30 % of them; the winner after an hour."""
    from tasks.campaign_control import ABTest, CampaignForm, Content, create

    form = CampaignForm(
        name="Winter break hours", segment="active-students", at=now,
        content=Content(subject="Winter break hours", preheader="Support 9 to 3 from December 22",
                        body_markdown=CAMPAIGN_BODY),
        ab_test=ABTest(b=Content(subject="Heads up: shorter support hours this winter",
                                 preheader="9 to 3 from December 22", body_markdown=CAMPAIGN_BODY),
                       fraction=0.3, winner_after="1h"))
    campaign = create(form, actor="demo", now=now)
    _step(f"scheduling campaign {campaign.campaign_id}: winter hours to active students (a child's to the parent), "
          "two subjects A/B-tested on 30 % of them, the winner to the rest after an hour")
    return campaign.campaign_id


def _print_bounces(result: dict) -> None:
    from db import suppressions
    from db.session import transaction

    print(f"process-bounces: {result.get('reports', 0)} reports read: {result.get('hard', 0)} hard bounces, "
          f"{result.get('soft', 0)} soft, {result.get('complaint', 0)} complaints, "
          f"{result.get('suppressed', 0)} addresses suppressed")
    with transaction() as session:
        rows = suppressions.in_force(session, datetime.now(timezone.utc))
    print("\nSuppressed, and why (tutormax suppressions list):")
    for row in rows:
        what = "marketing" if row.scope == "marketing" else "all mail"
        print(f"    {row.email:<48}{row.reason} ({row.source}), {what}: {(row.detail or '')[:70]}")


def _print_analytics(result: dict) -> None:
    def pct(value):
        return "—" if value is None else f"{value * 100:.1f}%"

    print("\nEmail analytics (human opens exclude machine opens; a human click counts as an open):")
    print(f"    messages {result['messages']:,}, delivery {pct(result['delivery_rate'])}, "
          f"opens {pct(result['open_rate_human'])} human / {pct(result['open_rate_all'])} all, "
          f"clicks {pct(result['click_through_rate'])}, click-to-open {pct(result['click_to_open_rate'])}")
    print("    success metrics (value, target):")
    for name, metric in result["success"].items():
        print(f"        {name:<40}{metric['value']:>10}  {metric['target']:<21}{metric['status']}")
    for campaign, verdict in result["ab_tests"].items():
        print(f"    A/B {campaign}: {verdict['reason']}")
    print(f"    report: {result['report']} (CSV exports beside it)")


def _start_tracker(bind: str, base_url: str) -> subprocess.Popen:
    from tutormax.settings import PROJECT_ROOT

    env = {**os.environ, "TRACKER_BIND": bind, "TRACKER_WORKERS": "2"}
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(PROJECT_ROOT / "tracking_app/gunicorn.conf.py"),
                               "--log-level", "warning", "tracking_app.wsgi:app"], cwd=PROJECT_ROOT, env=env)
    for _ in range(300):
        if server.poll() is not None:  # e.g. something took the port since the demo began
            sys.exit(f"the tracker exited at once (code {server.returncode}); is {bind} still free?")
        try:
            urllib.request.urlopen(f"{base_url}/healthz", timeout=1)
            return server
        except OSError:
            time.sleep(0.1)
    server.terminate()
    sys.exit("the tracker did not start")


def _print_tracking(url: str, tally) -> None:
    from db.demo_data import tracker_tally
    from db.session import transaction

    with transaction(url) as s:
        recorded = tracker_tally(s)
    print("\nSimulated recipients: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.items())))
    print("What the tracker recorded:")
    for kind, machine, reason, count in recorded["events"]:
        print(f"    {kind:<13}{'machine (' + reason + ')' if machine else 'human':<36}{count:>5}")
    print("    human opens by device: " + ", ".join(f"{d} {n}" for d, n in recorded["devices"]))
    print(f"    feedback given from reminder links: {recorded['feedback']}; "
          f"addresses opted out of reminders: {recorded['opted_out']}")
