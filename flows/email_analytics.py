"""Email analytics: daily (and on demand for a date range), events and messages into report artifacts."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from db.session import transaction
from flows.pipeline import run_name
from tasks.analytics import Report, build_report, write_report
from tasks.cleanup import ingest_journal
from tasks.plan import DB_RETRIES
from tasks.summary import heading
from tutormax.clock import resolve_now
from tutormax.settings import PROJECT_ROOT, get_settings


@task(name="build-analytics-report", **DB_RETRIES)
def compute(start: datetime, end: datetime) -> Report:
    """Aggregate messages and events for [start, end) and compute every metric."""
    with transaction() as session:
        return build_report(session, start, end)


@task(name="write-analytics-report")
def write_files(report: Report) -> str:
    """The HTML report with charts and the CSV exports under reports/."""
    first, last = report.days[0], report.days[-1]
    folder = PROJECT_ROOT / "reports" / f"email-analytics_{first:%Y-%m-%d}_{last:%Y-%m-%d}"
    return str(write_report(report, folder))


def _records(frame) -> list[dict[str, Any]]:
    return [{k: (None if v != v else v) for k, v in row.items()} for row in frame.astype(object).to_dict("records")]


@task(name="publish-analytics-artifacts")
def publish(report: Report, path: str, run_at: datetime, parameters: dict[str, Any]) -> dict[str, Any]:
    """Keyed artifacts, so each day's version lines up on the Artifacts page."""
    o = report.overall
    covers = f"messages created {report.days[0]:%a %Y-%m-%d} to {report.days[-1]:%a %Y-%m-%d} ({report.tz.key} days)"

    def pct(key):
        return "—" if o.get(key) is None else f"{o[key] * 100:.1f}%"

    success = "\n".join(f"| {r.metric} | {r.shown} | {r.target} | {r.status} |" for r in report.success.itertuples())
    verdicts = "\n".join(f"- **{t['campaign_name']}**: {t['result']['reason']}" for t in report.ab_tests) or "- none"
    create_markdown_artifact(key="email-analytics-summary", description="email analytics headline", markdown=(
        heading("email-analytics", run_at, parameters, covers) +
        f"{o.get('messages', 0):,} messages. Delivery {pct('delivery_rate')}, human opens {pct('open_rate_human')} "
        f"(all {pct('open_rate_all')}), clicks {pct('click_through_rate')}, click-to-open {pct('click_to_open_rate')}, "
        f"unsubscribes {pct('unsubscribe_rate')}, bounces {pct('bounce_rate')}.\n\n"
        f"| success metric | value | target | status |\n|---|---|---|---|\n{success}\n\n## A/B tests\n{verdicts}\n"))
    create_table_artifact(key="email-analytics-by-template", table=_records(report.by_template),
                          description="counts and rates per template type")
    create_table_artifact(key="email-analytics-success-metrics", table=_records(report.success),
                          description="the product's success metrics against their targets")
    create_table_artifact(key="email-analytics-ab-tests", description="A/B verdicts", table=[
        {"campaign_id": t["campaign_id"], **{k: v for k, v in t["result"].items() if k != "reason"}, "reason": t["result"]["reason"]}
        for t in report.ab_tests] or [{"campaign_id": None}])
    create_link_artifact(key="email-analytics-report", link=f"file://{path}", link_text="HTML report with charts",
                         description="open on the machine that ran the flow; CSV exports sit beside it")
    return {"report": path, **{k: o.get(k) for k in ("messages", "delivery_rate", "open_rate_human", "open_rate_all",
                                                       "click_through_rate", "click_to_open_rate")},
            "success": {r.metric: {"value": r.shown, "target": r.target, "status": r.status}
                        for r in report.success.itertuples()},
            "ab_tests": {t["campaign_id"]: {"winner": t["result"]["winner"], "reason": t["result"]["reason"]}
                         for t in report.ab_tests}}


@flow(name="email-analytics", flow_run_name=run_name)
def email_analytics(start: date | None = None, end: date | None = None, now: datetime | None = None,
                    days: int = 30) -> dict[str, Any]:
    """Report on messages created from start to end (local dates, end inclusive; default: the last `days` days)."""
    tz = get_settings().tz
    run_at = resolve_now(now) or datetime.now(timezone.utc)
    last = end or (run_at.astimezone(tz).date() - timedelta(days=1))
    first = start or (last - timedelta(days=days - 1))
    if first > last:
        raise ValueError(f"start {first} is after end {last}")
    ingest_journal()  # events the tracker journaled during an outage belong in the figures
    report = compute(datetime.combine(first, time(0), tzinfo=tz).astimezone(timezone.utc),
                     datetime.combine(last + timedelta(days=1), time(0), tzinfo=tz).astimezone(timezone.utc))
    return publish(report, write_files(report), run_at, {"start": start, "end": end, "days": days, "now": resolve_now(now)})
