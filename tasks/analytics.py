"""The analytics report: database aggregates -> pandas metrics, success metrics, A/B verdicts, charts and files."""

from __future__ import annotations

import base64
import html
import io
import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from db import analytics
from db.models import EmailCampaign
from tutormax.metrics import COUNTS, rates_of, ratio, with_rates
from tutormax.settings import get_settings

TTO_ORDER = ["under 1 hour", "1-4 hours", "4-24 hours", "1-3 days", "over 3 days"]


@dataclass
class Report:
    """Everything the analytics flow publishes for one date range."""

    start: datetime
    end: datetime
    tz: ZoneInfo  # what a day is: by_day, events_by_day and the title count local days in this zone
    overall: dict[str, Any]
    by_template: pd.DataFrame
    by_version: pd.DataFrame
    by_campaign: pd.DataFrame
    by_day: pd.DataFrame
    events_by_day: pd.DataFrame
    time_to_open: pd.DataFrame
    clients: pd.DataFrame
    success: pd.DataFrame
    ab_tests: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def days(self) -> pd.DatetimeIndex:
        """Every local day of [start, end), in order."""
        first = self.start.astimezone(self.tz).date()
        last = (self.end - timedelta(microseconds=1)).astimezone(self.tz).date()
        return pd.date_range(first, last, freq="D", name="day")


def render_ms_p50(samples_per_type: int = 50) -> float:
    """Measured, not assumed: median milliseconds to render each template type with sample data."""
    from tasks.render import Renderer, message_context
    from tasks.samples import NOW, SAMPLES
    from tutormax.links import Links
    from tutormax.settings import get_settings

    settings = get_settings()
    renderer, links = Renderer(settings.timezone), Links(settings)
    timings = []
    for template_type, name in renderer.available():
        recipient, metadata = SAMPLES[template_type]
        for i in range(samples_per_type):
            started = time.perf_counter()
            context = message_context(template_type=template_type, message_id=i + 1, recipient_name=recipient,
                                      metadata=metadata, settings=settings, links=links, now=NOW)
            renderer.render(template_type, name, context)
            timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def success_metrics(session: Session, frame: pd.DataFrame, start: datetime, end: datetime,
                    render_ms: float) -> pd.DataFrame:
    """The product's success-metrics table, from real data, each with its target and a pass/fail mark."""
    totals = frame[["attempted", "delivered", "opened_human", "clicked_human"]].sum() if len(frame) else {}
    critical = frame[frame["template_type"].isin(analytics.CRITICAL_TYPES)]
    reminded, answered = analytics.feedback_after_reminders(session, start, end)
    checkins, responded = analytics.checkin_engagement(session, start, end)

    rows = [
        ("Email delivery rate", ratio(totals.get("delivered", 0), totals.get("attempted", 0)), "> 95%", 0.95, True),
        ("Open rate, critical alerts (human)", ratio(critical["opened_human"].sum(), critical["delivered"].sum()),
         "> 70%", 0.70, True),
        ("Click-through rate (human)", ratio(totals.get("clicked_human", 0), totals.get("delivered", 0)), "> 40%", 0.40, True),
        ("Feedback completion after reminders", ratio(answered, reminded), "> 60%", 0.60, True),
        ("Tutor engagement with check-ins", ratio(responded, checkins), "> 40%", 0.40, True),
        ("Template rendering time (p50)", render_ms, "< 50 ms", 50.0, False),
    ]
    table = []
    for name, value, target, threshold, higher in rows:
        passed = None if value is None else (value > threshold if higher else value < threshold)
        shown = "no data" if value is None else (f"{value * 100:.1f}%" if higher else f"{value:.2f} ms")
        table.append({"metric": name, "value": value, "shown": shown, "target": target,
                      "status": "no data" if passed is None else ("pass" if passed else "fail")})
    return pd.DataFrame(table)


def ab_tests(session: Session, frame: pd.DataFrame, alpha: float = 0.05) -> list[dict[str, Any]]:
    """Per A/B campaign: variant counts and the verdict the statistics support."""
    from tasks.abtest import VariantStats, compare

    results = []
    campaigns = session.scalars(select(EmailCampaign).where(EmailCampaign.ab_test_enabled.is_(True))).all()
    for campaign in campaigns:
        rows = frame[frame["campaign_id"] == campaign.campaign_id]
        per_variant = rows.groupby("ab_variant")[["attempted", "delivered", "opened_human", "clicked_human"]].sum()
        stats = {v: VariantStats(variant=v, sent=int(r.attempted), delivered=int(r.delivered),
                                 human_opens=int(r.opened_human), clicks=int(r.clicked_human))
                 for v, r in per_variant.iterrows()}
        if not {"a", "b"} <= set(stats):
            continue
        weights = {"a": campaign.ab_variant_a_weight, "b": campaign.ab_variant_b_weight}
        verdict = compare(stats["a"], stats["b"], alpha=alpha, weights=weights)
        results.append({"campaign_id": campaign.campaign_id, "campaign_name": campaign.campaign_name,
                        "variants": {v: s.__dict__ for v, s in stats.items()}, "result": verdict.__dict__})
    return results


def build_report(session: Session, start: datetime, end: datetime, tz: ZoneInfo | None = None) -> Report:
    """Aggregate in the database (GROUP BY), derive rates in pandas; days are local days in tz (default TIMEZONE)."""
    tz = tz or get_settings().tz
    timings = {}
    t = time.perf_counter()
    frame = analytics.message_counts(session, start, end, tz=tz)
    timings["message_counts_s"] = time.perf_counter() - t
    t = time.perf_counter()
    events = analytics.events_by_day(session, start, end + timedelta(days=30), tz=tz)
    tto = analytics.time_to_open(session, start, end)
    clients = analytics.client_breakdown(session, start, end + timedelta(days=30))
    timings["event_aggregates_s"] = time.perf_counter() - t
    overall_counts = frame[list(COUNTS)].sum().to_dict() if len(frame) else {}
    overall = {**{k: int(v) for k, v in overall_counts.items()}, **rates_of(overall_counts)}
    # every bucket, in order, empty ones as 0: a missing row reads as a gap in the data
    tto = tto.set_index("bucket").reindex(TTO_ORDER, fill_value=0).rename_axis("bucket").reset_index()
    report = Report(
        start=start, end=end, tz=tz, overall=overall,
        by_template=with_rates(frame, ["template_type"]),
        by_version=with_rates(frame, ["template_type", "template_version", "ab_variant"]),
        by_campaign=with_rates(frame[frame["campaign_id"] != ""], ["campaign_id", "ab_variant"]),
        by_day=with_rates(frame, ["day"]),
        events_by_day=events,
        time_to_open=tto,
        clients=clients.sort_values("opens", ascending=False),
        success=success_metrics(session, frame, start, end, render_ms_p50()),
        ab_tests=ab_tests(session, frame),
        timings=timings,
    )
    return report


# --- files: CSV tables and one HTML report with its charts embedded ---------


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def charts(report: Report) -> dict[str, str]:
    """Opens and clicks over time, the delivery funnel, devices, and A/B click rates with intervals."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; set before pyplot is imported
    import matplotlib.pyplot as plt

    out = {}
    fig, ax = plt.subplots(figsize=(8, 3.2))
    daily = report.events_by_day
    if len(daily):
        for (kind, machine), part in daily.groupby(["event_type", "is_machine"]):
            part = part.sort_values("day")
            ax.plot(part["day"], part["events"], label=f"{kind} ({'machine' if machine else 'human'})",
                    linestyle="--" if machine else "-", marker="o", markersize=3)
        # a day either side, so a range of one or two days is not drawn across years
        ax.set_xlim(min(daily["day"]) - timedelta(days=1), max(daily["day"]) + timedelta(days=1))
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
    ax.set_title("Opens and clicks per day")
    fig.autofmt_xdate()
    out["opens_clicks"] = _png(fig)

    fig, ax = plt.subplots(figsize=(6, 3))
    o = report.overall
    stages = ["attempted", "delivered", "opened_human", "clicked_human"]
    ax.barh(["sent", "delivered", "opened (human)", "clicked (human)"][::-1], [o.get(s, 0) for s in stages][::-1],
            color="#2563eb")
    ax.set_title("Delivery funnel")
    out["funnel"] = _png(fig)

    fig, ax = plt.subplots(figsize=(6, 3))
    devices = report.clients.groupby("device")["opens"].sum().sort_values()
    ax.barh(devices.index.astype(str), devices.values, color="#10b981")
    ax.set_title("Human opens by device")
    out["devices"] = _png(fig)

    if report.ab_tests:
        fig, ax = plt.subplots(figsize=(6, 0.6 + 0.9 * len(report.ab_tests)))
        labels, rates, errors = [], [], []
        for test in report.ab_tests:
            for variant, stats in sorted(test["variants"].items()):
                from tasks.abtest import wilson_interval

                low, high = wilson_interval(stats["clicks"], stats["delivered"])
                rate = stats["clicks"] / stats["delivered"] if stats["delivered"] else 0
                labels.append(f"{test['campaign_id']} {variant}")
                rates.append(rate)
                errors.append((rate - low, high - rate))
        ax.errorbar(rates, labels, xerr=list(zip(*errors)), fmt="o", capsize=4)
        ax.set_title("A/B click rate with 95% intervals")
        out["ab"] = _png(fig)
    return out


def _table(frame: pd.DataFrame, percent: tuple[str, ...] = ()) -> str:
    shown = frame.copy()
    for column in shown.columns:
        if column in percent or column.endswith("_rate"):
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v * 100:.1f}%")
    return shown.to_html(index=False, border=0, classes="t", na_rep="")


def write_report(report: Report, folder: Path) -> Path:
    """reports/<range>/report.html with embedded charts, and every table as CSV beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    tables = {"by_template": report.by_template, "by_version_variant": report.by_version,
              "by_campaign": report.by_campaign, "by_day": report.by_day, "time_to_open": report.time_to_open,
              "clients": report.clients, "success_metrics": report.success,
              "ab_tests": pd.json_normalize([{"campaign_id": t["campaign_id"], **t["result"]} for t in report.ab_tests])}
    for name, frame in tables.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    images = charts(report)
    o = report.overall

    def pct(key):
        return "—" if o.get(key) is None else f"{o[key] * 100:.1f}%"

    headline = "".join(f"<div class=k><b>{pct(k)}</b><span>{label}</span></div>" for k, label in (
        ("delivery_rate", "delivered"), ("open_rate_human", "opened by people"), ("open_rate_all", "opened, all"),
        ("click_through_rate", "clicked"), ("click_to_open_rate", "click-to-open"), ("unsubscribe_rate", "unsubscribed")))
    verdicts = "".join(f"<li><b>{html.escape(t['campaign_name'])}</b>: {html.escape(t['result']['reason'])}</li>"
                       for t in report.ab_tests) or "<li>No A/B campaigns in this range.</li>"
    body = f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Email analytics</title>
<style>body{{font-family:system-ui,sans-serif;margin:32px;color:#1f2937}} .k{{display:inline-block;margin:0 24px 16px 0}}
.k b{{display:block;font-size:28px}} .k span{{color:#6b7280}} table.t{{border-collapse:collapse;font-size:13px;margin-bottom:24px}}
table.t td,table.t th{{padding:4px 10px;border-bottom:1px solid #e5e7eb;text-align:right}} img{{max-width:100%}}</style></head><body>
<h1>Email analytics, {report.days[0]:%Y-%m-%d} to {report.days[-1]:%Y-%m-%d}</h1>
<p>{o.get('messages', 0):,} messages; human opens exclude Apple Mail Privacy Protection, scanners and prefetchers
(a human click counts as an open). Rates are per delivered message.</p>{headline}
<h2>Success metrics</h2>{_table(report.success.drop(columns=["value"]))}
<h2>A/B tests</h2><ul>{verdicts}</ul>{f'<img src="data:image/png;base64,{images["ab"]}">' if "ab" in images else ""}
<h2>Opens and clicks over time</h2><img src="data:image/png;base64,{images['opens_clicks']}">
<h2>Delivery funnel</h2><img src="data:image/png;base64,{images['funnel']}">
<h2>Devices</h2><img src="data:image/png;base64,{images['devices']}">{_table(report.clients.head(15))}
<h2>By template type</h2>{_table(report.by_template)}
<h2>By template version and variant</h2>{_table(report.by_version)}
<h2>Time to first human open</h2>{_table(report.time_to_open)}
<h2>By day</h2>{_table(report.by_day)}
<p>CSV exports of every table are in this folder.</p></body></html>"""
    path = folder / "report.html"
    path.write_text(body)
    return path
