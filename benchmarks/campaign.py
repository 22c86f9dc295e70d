"""Planning a campaign to 1,000,000 tutors on PostgreSQL, against a plain INSERT ... SELECT of the same rows.

The planner pages through the segment (keyset), resolves each recipient, checks preferences (2 % of
the tutors have stored ones, a quarter of those opted out of marketing), and writes each page with
its cursor in one transaction. The floor is the least any planner could do: one INSERT ... SELECT
of the same million messages, nothing checked, measured first in the same run on the same empty
table. Prints plan_s (target <= 60), recipients_per_s, peak_rss_mb (target <= 500: the audience is
streamed, never held), recipients, floor_s and ratio_to_floor, one JSON line each; progress on stderr.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from common import ROOT, CpuUse, emit, fresh_database, log

DB_NAME = "tutormax_bench_campaign"


def platform(url: str, n: int) -> None:
    """n tutors, and stored preferences for 2 % of them."""
    from sqlalchemy import text

    from db.session import get_engine

    with get_engine(url).begin() as conn:
        conn.execute(text("""
            INSERT INTO tutors (id, name, email, created_at)
            SELECT i, 'Tutor ' || i, 'tutor' || i || '@example.com', now() FROM generate_series(1, :n) AS i"""),
                     {"n": n})
        conn.execute(text("""
            INSERT INTO email_preferences (email, tutor_id, marketing_emails, created_at, updated_at)
            SELECT 'tutor' || i || '@example.com', i, (i - 1) % 200 <> 0, now(), now()
            FROM generate_series(1, :n, 50) AS i"""), {"n": n})
        conn.execute(text("ANALYZE"))


# every column the planner writes, from the same tutors: what a planner that checked nothing would insert
FLOOR = """
INSERT INTO email_messages (idempotency_key, campaign_id, recipient_email, recipient_name, recipient_id, recipient_type,
    template_type, template_version, category, status, priority, scheduled_at, retry_count, open_count, click_count,
    metadata, created_at, updated_at)
SELECT 'floor:' || id, :campaign, email, name, id, 'tutor', 'announcement', 'v1', 'marketing_emails', 'queued', 3,
    now(), 0, 0, 0, jsonb_build_object('campaign_id', :campaign, 'variant', 'a'), now(), now()
FROM tutors"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--page", type=int, default=None, help="page size (default: the planner's)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tutormax-campaign-"))
    os.environ.update(SECRET_KEY="bench-secret", PREFECT_SERVER_ANALYTICS_ENABLED="false",
                      PREFECT_LOGGING_LEVEL="WARNING", TUTORMAX_VAR_DIR=str(work / "var"))
    Path(os.environ.setdefault("PREFECT_HOME", str(ROOT / "var" / "prefect"))).mkdir(parents=True, exist_ok=True)
    url = fresh_database(DB_NAME)
    os.environ["DATABASE_URL"] = url
    from sqlalchemy import text

    from db import campaigns
    from db.migrate import upgrade
    from db.session import get_engine, transaction
    from tasks import campaign_control
    from tasks.campaign_control import CampaignForm, Content
    from tasks.plan_campaigns import PAGE, plan_campaign

    log(f"migrating; {args.n:,} tutors")
    upgrade(url)
    platform(url, args.n)
    now = datetime.now(timezone.utc)
    campaign = campaign_control.create(
        CampaignForm(name="Bench", segment="all-tutors", at=now,
                     content=Content(subject="News", body_markdown="Hello")), actor="bench", now=now)
    with transaction() as session:
        c = campaigns.locked(session, campaign.campaign_id)
        campaigns.transition(session, c, "sending", actor="bench", at=now)
        c.started_at = now

    log("floor: one INSERT ... SELECT of the same rows")
    engine = get_engine(url)
    with CpuUse() as floor, engine.begin() as conn:
        floor_rows = conn.execute(text(FLOOR), {"campaign": campaign.campaign_id}).rowcount
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE email_messages CASCADE"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE email_messages"))
    log(f"floor: {floor_rows:,} rows in {floor.seconds:.1f} s")

    log(f"planning the campaign, {args.page or PAGE:,} recipients a page")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with CpuUse() as plan:
        result = plan_campaign.fn(campaign.campaign_id, now, args.page or PAGE)
    with transaction() as session:
        planned = session.scalar(text("SELECT count(*) FROM email_messages WHERE campaign_id = :c"),
                                 {"c": campaign.campaign_id})
        distinct = session.scalar(text("SELECT count(DISTINCT recipient_email) FROM email_messages"))
    if planned != args.n or distinct != args.n or result["queued"] + result["skipped"] != args.n:
        sys.exit(f"expected {args.n:,} messages, one per tutor; got {planned:,} ({distinct:,} addresses), {result}")
    log(f"planned in {plan.seconds:.1f} s: {result}")
    emit("plan_s", round(plan.seconds, 2), "s", target="<= 60", pages=result["pages"], queued=result["queued"],
         skipped=result["skipped"], **{k: v for k, v in plan.figures().items() if k != "seconds"})
    emit("recipients_per_s", round(args.n / plan.seconds, 1), "recipients/s")
    emit("peak_rss_mb", round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), "MB", target="<= 500",
         before_planning_mb=round(rss_before, 1))
    emit("recipients", planned, "recipients")
    emit("floor_s", round(floor.seconds, 2), "s", rows=floor_rows)
    emit("ratio_to_floor", round(plan.seconds / floor.seconds, 2), "x",
         note="planning time over the floor's: how much the checks and the paging cost")


if __name__ == "__main__":
    main()
