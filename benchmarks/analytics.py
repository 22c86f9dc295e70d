"""Analytics report time on 1,000,000 messages and 3,000,000 events in PostgreSQL.

The floor, measured in the same run: one plain SQL GROUP BY of the same headline
counts (per template type: delivered, opened, human-opened, clicked). Prints one
JSON line per figure; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from common import emit, fresh_database, log

DB_NAME = "tutormax_bench_analytics"
TYPES = ["feedback_invitation", "feedback_reminder", "first_session_checkin", "rescheduling_alert", "weekly_digest",
         "monthly_summary", "performance_report", "manager_digest", "parent_notification", "intervention_notification"]





def generate(url: str, n: int) -> None:
    """n messages over 30 days, three events each (two opens, then an open or a click), made server-side."""
    from sqlalchemy import text

    from db.session import get_engine

    types = "ARRAY[" + ",".join(f"'{t}'" for t in TYPES) + "]"
    with get_engine(url).begin() as conn:
        conn.execute(text(f"""
            INSERT INTO email_messages (message_id, idempotency_key, recipient_email, recipient_type, template_type,
                template_version, ab_variant, campaign_id, category, status, priority, scheduled_at, sent_at,
                created_at, updated_at, retry_count, open_count, click_count, metadata, opened_at, first_clicked_at,
                bounced_at, bounce_type, unsubscribed_at)
            SELECT g, 'bench:' || g, 'r' || g || '@example.com', 'student', ({types})[1 + g % 10], 'v1',
                   CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, NULL, 'feedback_reminders',
                   CASE WHEN g % 50 = 0 THEN 'failed' ELSE 'sent' END, 2, ts, ts, ts, ts, 0,
                   CASE WHEN g % 3 = 0 THEN 2 ELSE 3 END, CASE WHEN g % 3 = 0 THEN 1 ELSE 0 END, '{{}}'::jsonb,
                   ts + (g % 7200) * interval '1 second',
                   CASE WHEN g % 3 = 0 THEN ts + interval '2 hours' END,
                   CASE WHEN g % 50 = 0 THEN ts END, CASE WHEN g % 50 = 0 THEN 'hard' END,
                   CASE WHEN g % 200 = 0 THEN ts + interval '3 hours' END
            FROM generate_series(1, :n) AS g,
                 LATERAL (SELECT timestamp '2026-10-01' + (g % 2592000) * interval '1 second' AS ts) AS t"""), {"n": n})
        conn.execute(text("""
            INSERT INTO email_tracking_events (message_id, event_type, event_time, user_agent, is_machine,
                machine_reason, device, browser, os, event_data, created_at)
            SELECT m, CASE WHEN k = 2 AND m % 3 = 0 THEN 'clicked' ELSE 'opened' END,
                   timestamp '2026-10-01' + (m % 2592000) * interval '1 second' + (k * 3600 + m % 7200) * interval '1 second',
                   NULL, k = 0 AND m % 4 = 0, CASE WHEN k = 0 AND m % 4 = 0 THEN 'apple_mpp_user_agent' END,
                   (ARRAY['desktop','mobile','tablet'])[1 + m % 3], (ARRAY['Chrome 120','Apple Mail','Outlook'])[1 + m % 3],
                   (ARRAY['Windows 10','iOS 17.1','Mac OS X 14'])[1 + m % 3], '{}'::jsonb, now()
            FROM generate_series(0, 2) AS k, generate_series(1, :n) AS m"""), {"n": n})
    with get_engine(url).connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))


FLOOR_SQL = """
SELECT m.template_type, count(*) AS messages, sum((m.status = 'sent')::int) AS delivered,
       sum((m.opened_at IS NOT NULL)::int) AS opened, sum(coalesce(h.human, 0)) AS opened_human,
       sum((m.first_clicked_at IS NOT NULL)::int) AS clicked
FROM email_messages m
LEFT JOIN (SELECT message_id, max((NOT is_machine)::int) AS human FROM email_tracking_events GROUP BY message_id) h
       ON h.message_id = m.message_id
GROUP BY m.template_type"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000, help="messages (events are three times as many)")
    args = parser.parse_args()
    os.environ.setdefault("SECRET_KEY", "bench-secret")
    url = fresh_database(DB_NAME)
    os.environ["DATABASE_URL"] = url

    from sqlalchemy import text

    from db.migrate import upgrade
    from db.session import get_engine, transaction
    from tasks.analytics import build_report, write_report

    upgrade(url)
    log(f"generating {args.n:,} messages and {3 * args.n:,} events in PostgreSQL")
    started = time.perf_counter()
    generate(url, args.n)
    log(f"  generated in {time.perf_counter() - started:.1f} s")
    start, end = datetime(2026, 10, 1, tzinfo=timezone.utc), datetime(2026, 11, 1, tzinfo=timezone.utc)

    log("floor: one plain SQL GROUP BY of the headline counts")
    with get_engine(url).connect() as conn:
        conn.execute(text(FLOOR_SQL)).all()  # warm the cache so both timings read the same pages
        t = time.perf_counter()
        floor_rows = conn.execute(text(FLOOR_SQL)).all()
        floor = time.perf_counter() - t

    log("the full report: aggregates, metrics, success metrics, A/B, charts, HTML and CSV files")
    t = time.perf_counter()
    with transaction(url) as session:
        report = build_report(session, start, end)
    with tempfile.TemporaryDirectory() as folder:
        write_report(report, Path(folder))
    elapsed = time.perf_counter() - t
    if report.overall["messages"] != sum(r.messages for r in floor_rows):
        sys.exit(f"report counted {report.overall['messages']} messages, SQL {sum(r.messages for r in floor_rows)}")

    emit("report_s", round(elapsed, 2), "s", **{k: round(v, 2) for k, v in report.timings.items()})
    emit("sql_floor_s", round(floor, 2), "s")
    emit("ratio_to_floor", round(elapsed / floor, 2), "ratio", baseline="sql_floor_s")
    emit("peak_rss_mb", round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), "MB")
    emit("messages", report.overall["messages"], "messages")
    with get_engine(url).connect() as conn:
        emit("events", conn.execute(text("SELECT count(*) FROM email_tracking_events")).scalar(), "events")


if __name__ == "__main__":
    main()
