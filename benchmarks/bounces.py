"""process-bounces over 10,000 reports in a Maildir, on PostgreSQL, through the Prefect flow.

The reports are what a bounce mailbox holds: Postfix DSNs (the sink's), Gmail and Microsoft 365
DSNs, delay notices, ARF complaints, a non-standard (qmail) bounce, out-of-office replies and
unknown mail, each about one of 10,000 messages sent with a VERP envelope sender. Prints
reports_per_s (target >= 500), peak_rss_mb and reports, one JSON line each; progress on stderr.
"""

from __future__ import annotations

import argparse
import mailbox
import os
import resource
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from common import ROOT, emit, fresh_database, log

DB_NAME = "tutormax_bench_bounces"
FIXTURES = ROOT / "tests" / "fixtures" / "bounces"
SECRET = "bench-secret"
BOUNCE_ADDRESS = "bounces@bounce.tutormax.example"
# the fixtures name message 42 by its tag (under the tests' secret) and by this Message-ID; each report
# here is rewritten to name its own message
FIXTURE_TAG = "bounces+aaaaaaaaaaacuu4joaquj2hn7pfrk@bounce.tutormax.example"
FIXTURE_ID = b"<42.0123456789abcdef@tutormax.example>"
MIX = [("sink", 40), ("gmail_no_such_user.eml", 10), ("microsoft365_recipient_not_found.eml", 10),
       ("postfix_mailbox_full.eml", 10), ("postfix_delayed.eml", 8), ("arf_yahoo_abuse.eml", 8),
       ("qmail_no_mailbox.eml", 6), ("out_of_office.eml", 4), ("unknown_spam.eml", 4)]


def messages(url: str, n: int, now: datetime) -> None:
    """n sent messages, one recipient each."""
    from sqlalchemy import text

    from db.session import get_engine

    with get_engine(url).begin() as conn:
        conn.execute(text("""
            INSERT INTO email_messages (message_id, idempotency_key, recipient_email, recipient_type, template_type,
                template_version, category, status, priority, scheduled_at, sent_at, created_at, updated_at,
                retry_count, open_count, click_count, metadata)
            SELECT i, 'bench:' || i, 'r' || i || '@example.com', 'student', 'weekly_digest', 'v1', 'weekly_digests',
                'sent', 3, :now, :now, :now, :now, 0, 0, 0, '{}'::jsonb
            FROM generate_series(1, :n) AS i"""), {"n": n, "now": now.replace(tzinfo=None)})


def reports(folder: Path, n: int, now: datetime) -> int:
    """n reports into the Maildir, one per message, in the MIX's proportions; how many were written."""
    import hashlib

    from tutormax.sink import dsn
    from tutormax.verp import Verp

    verp = Verp(BOUNCE_ADDRESS, SECRET.encode())
    box = mailbox.Maildir(folder, create=True)
    templates = {name: (FIXTURES / name).read_bytes() for name, _ in MIX if name != "sink"}
    cycle = [name for name, share in MIX for _ in range(share)]
    for i in range(1, n + 1):
        name = cycle[i % len(cycle)]
        tag = verp.address(i)
        ours = f"<{i}.{hashlib.sha256(f'bench:{i}'.encode()).hexdigest()[:16]}@tutormax.example>".encode()
        if name == "sink":
            raw = dsn(tag, f"r{i}@example.com", b"Message-ID: " + ours + b"\r\nSubject: Your week\r\n\r\n", now)
        else:
            raw = (templates[name].replace(FIXTURE_TAG.encode(), tag.encode()).replace(FIXTURE_ID, ours)
                   .replace(b"Message-ID: <", f"Message-ID: <b{i}.".encode(), 1))  # each report its own id
        box.add(raw)
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tutormax-bounces-"))
    os.environ.update(SECRET_KEY=SECRET, BOUNCE_ADDRESS=BOUNCE_ADDRESS, BOUNCE_MAILDIR=str(work / "bounces"),
                      PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING",
                      TUTORMAX_VAR_DIR=str(work / "var"))
    Path(os.environ.setdefault("PREFECT_HOME", str(ROOT / "var" / "prefect"))).mkdir(parents=True, exist_ok=True)
    url = fresh_database(DB_NAME)
    os.environ["DATABASE_URL"] = url
    from db.migrate import upgrade
    from flows.deliver_outbox import deliver_outbox
    from flows.process_bounces import process_bounces

    now = datetime.now(timezone.utc) - timedelta(hours=1)
    log(f"migrating; {args.n:,} sent messages; {args.n:,} reports into {work / 'bounces'}")
    upgrade(url)
    messages(url, args.n, now)
    written = reports(work / "bounces", args.n, now)
    log("warming up Prefect (the local server starts on first use)")
    deliver_outbox(dry_run=True)
    log("process-bounces over the Maildir")
    started = time.perf_counter()
    result = process_bounces()
    elapsed = time.perf_counter() - started
    if result["reports"] != written:
        sys.exit(f"expected {written} reports read, got {result}")
    log(f"done in {elapsed:.1f} s: {result}")
    emit("reports_per_s", round(written / elapsed, 1), "reports/s", seconds=round(elapsed, 2),
         **{k: result[k] for k in ("hard", "soft", "delayed", "complaint", "auto_reply", "unknown", "suppressed")})
    emit("peak_rss_mb", round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), "MB")
    emit("reports", written, "reports")


if __name__ == "__main__":
    main()
