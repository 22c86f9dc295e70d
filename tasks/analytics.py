"""The analytics report: database aggregates -> pandas metrics, success metrics, A/B verdicts, charts and files."""

from __future__ import annotations

import base64
import html
import io
import re
import statistics
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from numbers import Integral
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy.orm import Session

from db import analytics, campaigns
from db.events import CampaignType
from tasks.email_types import critical_types
from tutormax.metrics import COUNTS, RATES, rates_of, ratio, with_rates
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
    bounce_reasons: pd.DataFrame
    domains: pd.DataFrame
    ab_tests: list[dict[str, Any]] = field(default_factory=list)
    campaigns: pd.DataFrame = field(default_factory=pd.DataFrame)  # campaign_table: counts from their messages
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def days(self) -> pd.DatetimeIndex:
        """Every local day of [start, end), in order."""
        first = self.start.astimezone(self.tz).date()
        last = (self.end - timedelta(microseconds=1)).astimezone(self.tz).date()
        return pd.date_range(first, last, freq="D", name="day")


def render_ms_p50(samples_per_type: int = 50) -> float:
    """Measured, not assumed: median milliseconds to render each template type with sample data."""
    from tasks.email_types import SAMPLE_NOW, all_types
    from tasks.render import Renderer, message_context
    from tutormax.links import Links
    from tutormax.settings import get_settings

    settings = get_settings()
    renderer, links = Renderer(settings.timezone), Links(settings)
    timings = []
    for template_type, name in renderer.available():
        recipient, metadata = all_types()[template_type].sample
        for i in range(samples_per_type):
            started = time.perf_counter()
            context = message_context(template_type=template_type, message_id=i + 1, recipient_name=recipient,
                                      metadata=metadata, settings=settings, links=links, now=SAMPLE_NOW)
            renderer.render(template_type, name, context)
            timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def success_metrics(session: Session, frame: pd.DataFrame, start: datetime, end: datetime,
                    render_ms: float) -> pd.DataFrame:
    """The product's success-metrics table, from real data, each with its target and a pass/fail mark."""
    totals = frame[["attempted", "delivered", "opened_human", "clicked_human"]].sum() if len(frame) else {}
    critical = frame[frame["template_type"].isin(critical_types())]
    reminded, answered = analytics.feedback_after_reminders(session, start, end)
    checkins, responded = analytics.checkin_engagement(session, start, end)

    rows = [
        ("Email delivery rate", ratio(totals.get("delivered", 0), totals.get("attempted", 0)), "> 95%", 0.95, True),
        ("Open rate, critical alerts (human)", ratio(critical["opened_human"].sum(), critical["delivered"].sum()),
         "> 70%", 0.70, True),
        ("Click-through rate (human)", ratio(totals.get("clicked_human", 0), totals.get("delivered", 0)), "> 40%", 0.40, True),
        ("Feedback completion after reminders", ratio(answered, reminded), "> 60%", 0.60, True),
        ("Tutor engagement with check-ins", ratio(responded, checkins), "> 40%", 0.40, True),
        ("Spam complaint rate", ratio(frame["complained"].sum(), totals.get("delivered", 0)) if len(frame) else None,
         "< 0.1% (never 0.3%)", COMPLAINT_LINES[0], False),
        ("Template rendering time (p50)", render_ms, "< 50 ms", 50.0, False),
    ]
    table = []
    for name, value, target, threshold, higher in rows:
        passed = None if value is None else (value > threshold if higher else value < threshold)
        shown = ("no data" if value is None else f"{value:.2f} ms" if target.endswith("ms")
                 else f"{value * 100:.2f}%" if threshold < 0.01 else f"{value * 100:.1f}%")
        table.append({"metric": name, "value": value, "shown": shown, "target": target,
                      "status": "no data" if passed is None else ("pass" if passed else "fail")})
    return pd.DataFrame(table)


def ab_tests(session: Session, frame: pd.DataFrame, alpha: float = 0.05) -> list[dict[str, Any]]:
    """Per A/B campaign: variant counts and the verdict the statistics support.

    An announcement's test is its test portion only (its rest got the winner), and once decided its
    verdict is the one stored when it was: the numbers the winner was picked on.
    """
    from tasks.abtest import VariantStats, compare

    results = []
    for campaign in campaigns.ab_tests(session):
        weights = {"a": campaign.ab_variant_a_weight, "b": campaign.ab_variant_b_weight}
        if campaign.ab_verdict and campaign.ab_verdict.get("sent_to_rest"):
            verdict = campaign.ab_verdict
            results.append({"campaign_id": campaign.campaign_id, "campaign_name": campaign.campaign_name,
                            "variants": verdict["variants"],
                            "result": {**verdict["compare"], "winner": verdict["winner"], "reason": verdict["reason"]}})
            continue
        if campaign.campaign_type == CampaignType.ANNOUNCEMENT:
            stats = {v: VariantStats(v, s.sent, s.delivered, s.human_opens, s.clicks)
                     for v, s in campaigns.test_portion(session, campaign).items()}
        else:
            rows = frame[frame["campaign_id"] == campaign.campaign_id]
            per_variant = rows.groupby("ab_variant")[["attempted", "delivered", "opened_human", "clicked_human"]].sum()
            stats = {v: VariantStats(variant=v, sent=int(r.attempted), delivered=int(r.delivered),
                                     human_opens=int(r.opened_human), clicks=int(r.clicked_human))
                     for v, r in per_variant.iterrows()}
        if not {"a", "b"} <= set(stats):
            continue
        verdict = compare(stats["a"], stats["b"], metric=campaign.winner_metric or "clicks", alpha=alpha,
                          weights=weights)
        results.append({"campaign_id": campaign.campaign_id, "campaign_name": campaign.campaign_name,
                        "variants": {v: s.__dict__ for v, s in stats.items()}, "result": verdict.__dict__})
    return results


def campaign_table(session: Session, frame: pd.DataFrame) -> pd.DataFrame:
    """The campaigns with messages in the range: status, audience, and their counts as their messages say."""
    ids = sorted(set(frame["campaign_id"]) - {""}) if len(frame) else []
    chosen = [c for c in (campaigns.by_id(session, cid) for cid in ids) if c is not None]
    counted = campaigns.counts_of(session, chosen)
    rows = [{"campaign_id": c.campaign_id, "campaign_name": c.campaign_name, "status": c.status,
             "audience": c.segment or c.template_type,
             **{column: counted[c.campaign_id][count] for count, column in CAMPAIGN_COUNTS.items()},
             "winner": c.ab_winner or ""} for c in chosen]
    return pd.DataFrame(rows, columns=["campaign_id", "campaign_name", "status", "audience", *CAMPAIGN_COUNTS.values(),
                                       "winner"])


# db.campaigns.counts -> the report's column (opens and clicks there are people's, as the report's columns say)
CAMPAIGN_COUNTS = {"recipients": "recipients", "sent": "sent", "delivered": "delivered", "bounced": "bounced",
                   "opened": "opened_human", "clicked": "clicked_human", "unsubscribed": "unsubscribed",
                   "complained": "complained"}


# Gmail's and Yahoo's 2024 sender rules: keep spam complaints under 0.1% of delivered mail, never reach 0.3%
COMPLAINT_LINES = (0.001, 0.003)

_ADDRESS = re.compile(r"<?[\w.+-]+@[\w-]+(\.[\w-]+)+>?")
_TOKEN = re.compile(r"\b(?=[\w-]*\d)[\w-]{10,}\b")  # queue ids and hosts' serials: no two bounces share them


def top_bounce_reasons(frame: pd.DataFrame, limit: int = 10) -> pd.DataFrame:
    """The commonest bounce and block reasons, addresses and one-off ids masked so alike answers group together."""
    if not len(frame):
        return pd.DataFrame(columns=["bounce_type", "reason", "messages"])
    reason = (frame["bounce_reason"].fillna("").map(lambda text: _TOKEN.sub("…", _ADDRESS.sub("<address>", text)))
              .str.slice(0, 160))
    grouped = (frame.assign(reason=reason).groupby(["bounce_type", "reason"], as_index=False)["messages"].sum()
               .sort_values(["messages", "bounce_type", "reason"], ascending=[False, True, True]))
    return grouped.head(limit).reset_index(drop=True)


def build_report(session: Session, start: datetime, end: datetime, tz: ZoneInfo | None = None) -> Report:
    """Aggregate in the database (GROUP BY), derive rates in pandas; days are local days in tz (default TIMEZONE)."""
    tz = tz or get_settings().tz
    timings = {}
    t = time.perf_counter()
    frame = analytics.message_counts(session, start, end, tz=tz)
    timings["message_counts_s"] = time.perf_counter() - t
    t = time.perf_counter()
    events = analytics.events_by_day(session, start, end, tz=tz)  # the chart draws the report's days, no later ones
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
        bounce_reasons=top_bounce_reasons(analytics.bounce_reasons(session, start, end)),
        domains=(with_rates(analytics.by_domain(session, start, end), ["domain"])
                 .sort_values(["attempted", "domain"], ascending=[False, True]).head(20).reset_index(drop=True)),
        ab_tests=ab_tests(session, frame),
        campaigns=campaign_table(session, frame),
        timings=timings,
    )
    return report


# --- files: CSV tables and one HTML report with its charts embedded ---------

# One label per column, shared by every table and the headline; the CSVs keep the machine names.
LABELS = {
    "template_type": "Template", "template_version": "Version", "ab_variant": "Variant", "campaign_id": "Campaign",
    "day": "Day sent", "messages": "Messages", "attempted": "Sent (attempted)", "delivered": "Delivered",
    "bounced": "Bounced", "bounced_hard": "Bounced (hard)", "bounced_soft": "Bounced (soft)", "blocked": "Blocked", "failed": "Failed", "skipped": "Skipped", "opened_all": "Opened (all)",
    "opened_human": "Opened (people)", "clicked_all": "Clicked (all)", "clicked_human": "Clicked (people)",
    "unsubscribed": "Unsubscribed", "complained": "Complained",
    "delivery_rate": "Delivery rate", "bounce_rate": "Bounce rate", "hard_bounce_rate": "Hard bounces",
    "soft_bounce_rate": "Soft bounces", "block_rate": "Block rate", "domain": "Recipient domain",
    "bounce_type": "Kind", "reason": "What the server said",
    "open_rate_human": "Open rate (people)", "open_rate_all": "Open rate (all)", "click_through_rate": "Click-through",
    "click_to_open_rate": "Click-to-open", "unsubscribe_rate": "Unsubscribe rate", "complaint_rate": "Complaint rate",
    "bucket": "First opened by a person", "device": "Device", "browser": "Browser", "os": "Operating system",
    "opens": "Human opens",
    "metric": "Metric", "shown": "Value", "target": "Target", "status": "Status",
    "campaign_name": "Name", "audience": "Audience", "recipients": "Recipients", "sent": "Sent",
    "winner": "A/B: sent to the rest",
}

# After a wide table's group columns, what an analyst reads first: how much went out and whether it arrived,
# whether people engaged (the human open rate leads, "all" beside it shows the machine inflation), and what it
# cost in unsubscribes and complaints. The counts behind the rates, skips and blocks stay in the CSV.
READ_FIRST = ("attempted", "delivered", "delivery_rate", "hard_bounce_rate", "soft_bounce_rate", "open_rate_human",
              "open_rate_all", "click_through_rate", "click_to_open_rate", "unsubscribe_rate", "complaint_rate")
# a domain's table: where the mail went and how each receiving system answered
DOMAIN_COLUMNS = ["domain", "attempted", "delivered", "delivery_rate", "hard_bounce_rate", "soft_bounce_rate",
                  "block_rate", "complained", "complaint_rate"]

# a campaign by its id (made from its name; the CSV has the name too) and what its messages say
CAMPAIGN_COLUMNS = ["campaign_id", "status", "audience", "recipients", "sent", "bounced", "opened_human", "clicked_human",
                    "unsubscribed", "complained", "winner"]

# text that may wrap on a phone; names, days and numbers stay on one line
WRAP = {"metric", "browser", "os", "reason"}

HEADLINE = ("delivery_rate", "open_rate_human", "open_rate_all", "click_through_rate", "click_to_open_rate",
            "unsubscribe_rate", "hard_bounce_rate", "complaint_rate")

# (event type, by a machine?) -> the chart's series: label, colour, line style
SERIES = {("opened", False): ("Opens (people)", "#2563eb", "-"),
          ("opened", True): ("Opens (machines)", "#93c5fd", "--"),
          ("clicked", False): ("Clicks (people)", "#ea580c", "-"),
          ("clicked", True): ("Clicks (machines)", "#fdba74", "--")}


def daily_events(report: Report) -> pd.DataFrame:
    """Opens and clicks on every local day of the report, one column a series; a day without events is 0."""
    events = report.events_by_day
    counts = pd.DataFrame()
    if len(events):
        series = [SERIES[kind, bool(machine)][0] for kind, machine in zip(events["event_type"], events["is_machine"])]
        counts = (events.assign(day=pd.to_datetime(events["day"]), series=series)
                  .groupby(["day", "series"])["events"].sum().unstack("series"))
    return counts.reindex(index=report.days, columns=[label for label, _, _ in SERIES.values()]).fillna(0).astype(int)


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def charts(report: Report) -> dict[str, str]:
    """Opens and clicks per day, the delivery funnel, devices, and A/B click rates with intervals."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; set before pyplot is imported
    import matplotlib.pyplot as plt

    # type large for the figure's size: a phone shows the images at under half their width
    with plt.rc_context({"font.size": 11, "axes.titlesize": 12, "legend.fontsize": 9}):
        return _draw(report)


def _draw(report: Report) -> dict[str, str]:
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    out = {}
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    daily = daily_events(report)
    for label, color, style in SERIES.values():
        ax.plot(daily.index, daily[label], label=label, color=color, linestyle=style, marker="o", markersize=3)
    # ticks on days, never hours: a tick a day over two weeks or less, else on Mondays
    weeks = -(-len(daily) // 70)  # about ten ticks at most
    locator = mdates.DayLocator() if len(daily) <= 14 else mdates.WeekdayLocator(byweekday=mdates.MO, interval=weeks)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%-d %b"))
    ax.set_xlim(daily.index[0] - timedelta(hours=12), daily.index[-1] + timedelta(hours=12))
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(ncols=2)
    ax.set_title(f"Opens and clicks per day ({report.tz.key})")
    fig.autofmt_xdate()
    out["opens_clicks"] = _png(fig)

    fig, ax = plt.subplots(figsize=(6, 3))
    o = report.overall
    stages = ["attempted", "delivered", "opened_human", "clicked_human"]
    bars = ax.barh([LABELS[s] for s in stages][::-1], [o.get(s, 0) for s in stages][::-1], color="#2563eb")
    ax.bar_label(bars, fmt="{:,.0f}", padding=3)
    ax.margins(x=0.12)
    ax.set_title("Delivery funnel")
    out["funnel"] = _png(fig)

    fig, ax = plt.subplots(figsize=(6, 3))
    devices = report.clients.groupby("device")["opens"].sum().sort_values()
    bars = ax.barh(devices.index.astype(str), devices.values, color="#10b981")
    ax.bar_label(bars, fmt="{:,.0f}", padding=3)
    ax.margins(x=0.12)
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
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_title("A/B click rate with 95% intervals")
        out["ab"] = _png(fig)
    return out


def _cell(column: str, value: Any) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "—"  # a rate with nothing to divide by
    if column == "complaint_rate":  # its lines are 0.1% and 0.3%: one decimal would hide them
        return f"{value * 100:.2f}%"
    if column in RATES:
        return f"{value * 100:.1f}%"
    if isinstance(value, (bool, str)):
        return str(value)
    if isinstance(value, Integral) or (isinstance(value, float) and value.is_integer()):
        return f"{int(value):,}"
    if isinstance(value, date):
        return f"{value:%a %Y-%m-%d}"
    return str(value)


def complaint_mark(rate: float | None) -> str:
    """A row's or a figure's class against the complaint lines: "bad" at 0.3% and over, "warn" over 0.1%."""
    if rate is None or pd.isna(rate):
        return ""
    return "bad" if rate >= COMPLAINT_LINES[1] else "warn" if rate > COMPLAINT_LINES[0] else ""


def _table(frame: pd.DataFrame, columns: list[str] | None = None) -> str:
    """frame as HTML: readable headers, rates as percentages, in a box that scrolls sideways on a narrow screen.

    A row whose complaint rate is over 0.1% is marked (class warn), at 0.3% and over more so (class bad).
    """
    shown = frame[columns] if columns else frame
    if not len(shown):
        return "<p class=note>Nothing in this range.</p>"
    classes = {c: " class=n" if c in RATES or pd.api.types.is_numeric_dtype(shown[c]) else " class=w" if c in WRAP else ""
               for c in shown.columns}

    def cells(tag: str, values) -> str:
        return "".join(f"<{tag}{classes[c]}>{html.escape(v)}</{tag}>" for c, v in zip(shown.columns, values))

    head = cells("th", (LABELS[c] for c in shown.columns))
    marks = [complaint_mark(rate) for rate in shown["complaint_rate"]] if "complaint_rate" in shown else [""] * len(shown)
    body = "".join(f"<tr{f' class={mark}' if mark else ''}>{cells('td', (_cell(c, v) for c, v in zip(shown.columns, row)))}"
                   "</tr>" for mark, row in zip(marks, shown.itertuples(index=False)))
    return f"<div class=scroll><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def _wide(frame: pd.DataFrame) -> str:
    """A counts-and-rates table: its group columns, then the columns an analyst reads first."""
    return _table(frame, [c for c in frame.columns if c not in COUNTS and c not in RATES] + list(READ_FIRST))


STYLE = """*{box-sizing:border-box}
body{font-family:system-ui,sans-serif;color:#1f2937;line-height:1.45;max-width:1280px;margin:0 auto;padding:24px 32px}
h1{font-size:26px;margin:0 0 8px} h2{font-size:20px;margin:32px 0 10px}
.kpis{display:flex;flex-wrap:wrap;gap:8px 32px;margin:16px 0} .kpis b{display:block;font-size:28px}
.kpis span{color:#6b7280;font-size:14px} .note{color:#4b5563;font-size:13px}
.scroll{overflow-x:auto;max-width:100%;margin-bottom:16px}
table{border-collapse:separate;border-spacing:0;font-size:13px}
th,td{padding:5px 8px;border-bottom:1px solid #e5e7eb;text-align:left;white-space:nowrap} td.w{white-space:normal;min-width:9em}
th{vertical-align:bottom;background:#f3f4f6;white-space:normal;min-width:5em}
td:first-child,th:first-child{position:sticky;left:0;background:#fff} th:first-child{background:#f3f4f6}
.n{text-align:right;font-variant-numeric:tabular-nums} img{display:block;max-width:100%;height:auto}
tr.warn td,.kpis .warn{background:#fef3c7} tr.bad td,.kpis .bad{background:#fee2e2} .kpis div{padding:2px 6px}
@media (max-width:600px){body{padding:12px 14px} h1{font-size:21px} .kpis{gap:6px 20px} .kpis b{font-size:22px}}"""


def write_report(report: Report, folder: Path) -> Path:
    """reports/<range>/report.html with embedded charts, and every table as CSV beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    tables = {"by_template": report.by_template, "by_version_variant": report.by_version,
              "campaigns": report.campaigns, "by_campaign": report.by_campaign, "by_day": report.by_day, "time_to_open": report.time_to_open,
              "clients": report.clients, "success_metrics": report.success,
              "bounce_reasons": report.bounce_reasons, "domains": report.domains,
              "ab_tests": pd.json_normalize([{"campaign_id": t["campaign_id"], **t["result"]} for t in report.ab_tests])}
    for name, frame in tables.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    pngs = charts(report)

    def image(name: str, alt: str) -> str:
        return f'<img alt="{alt}" src="data:image/png;base64,{pngs[name]}">' if name in pngs else ""

    o = report.overall
    headline = "".join(f"<div{f' class={complaint_mark(o.get(k))}' if k == 'complaint_rate' and complaint_mark(o.get(k)) else ''}>"
                       f"<b>{_cell(k, o.get(k))}</b><span>{LABELS[k]}</span></div>" for k in HEADLINE)
    definitions = "; ".join(f"{LABELS[rate]} = {LABELS[num].lower()} / {LABELS[den].lower()}"
                            for rate, (num, den) in RATES.items())
    verdicts = "".join(f"<li><b>{html.escape(t['campaign_name'])}</b>: {html.escape(t['result']['reason'])}</li>"
                       for t in report.ab_tests) or "<li>No A/B campaigns in this range.</li>"
    body = f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Email analytics</title>
<style>{STYLE}</style></head><body>
<h1>Email analytics, {report.days[0]:%Y-%m-%d} to {report.days[-1]:%Y-%m-%d}</h1>
<p>{o.get('messages', 0):,} messages created in this range; days are local days in {report.tz.key}. Human opens exclude
Apple Mail Privacy Protection, scanners and prefetchers (a human click counts as an open).</p>
<div class=kpis>{headline}</div>
<details class=note><summary>How each rate is computed</summary>{html.escape(definitions)}. A dash: nothing to divide
by.</details>
<h2>Success metrics</h2>{_table(report.success, ["metric", "shown", "target", "status"])}
<h2>A/B tests</h2><ul>{verdicts}</ul>{image("ab", "A/B click rate per variant with 95% intervals")}
<h2>Opens and clicks per day</h2>{image("opens_clicks", "Opens and clicks per day, people and machines")}
<h2>Delivery funnel</h2>{image("funnel", "Delivery funnel: sent, delivered, opened and clicked by people")}
<h2>Bounce reasons</h2><p class=note>Hard bounces suppress the address; soft ones (a full mailbox, a block after the relay took the message)
do after three in 30 days; blocks (policy or reputation) are refusals of the sender, not of the address. Gmail and
Yahoo want spam complaints under 0.1% of delivered mail, and never 0.3%: in every table, a row over 0.1% is marked
yellow, one at 0.3% or more red.</p>{_table(report.bounce_reasons)}
<h2>Bounces and complaints by recipient domain</h2>{_table(report.domains, DOMAIN_COLUMNS)}
<h2>By template type</h2>{_wide(report.by_template)}
<h2>By template version and variant</h2>{_wide(report.by_version)}
<h2>Campaigns</h2><p class=note>Each campaign's counts are all its messages', as <code>tutormax campaign show</code> gives
them; the table under it splits the messages created in this range by variant.</p>{_table(report.campaigns, CAMPAIGN_COLUMNS)}
<h2>By campaign and variant</h2>{_wide(report.by_campaign)}
<h2>By day sent</h2>{_wide(report.by_day)}
<h2>Time to first human open</h2>{_table(report.time_to_open)}
<h2>Devices</h2>{image("devices", "Human opens by device")}{_table(report.clients.head(15))}
<p class=note>This folder has every table as CSV, with every column: {", ".join(f"{n}.csv" for n in tables)}.</p>
</body></html>"""
    path = folder / "report.html"
    path.write_text(body)
    return path
