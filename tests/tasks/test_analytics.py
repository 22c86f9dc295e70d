"""Analytics: every metric against a hand-computed fixture, zero denominators, files and artifacts."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from sqlalchemy import update

from db import outbox, tracking
from db.models import EmailCampaign, EmailMessage
from db.session import transaction
from tasks.analytics import LABELS, build_report, complaint_mark, daily_events, write_report
from tutormax.metrics import COUNTS, RATES

NOW = datetime(2026, 11, 20, 15, tzinfo=timezone.utc)
START, END = NOW - timedelta(days=7), NOW + timedelta(days=1)
NEW_YORK = ZoneInfo("America/New_York")


def _message(url, key, template_type, status, email=None, **values) -> int:
    planned = outbox.PlannedMessage(
        workflow_type=template_type, entity_type="x", entity_id=key, step="s", template_type=template_type,
        category="feedback_reminders", recipient_type="student", recipient_email=email or f"r{key}@example.com",
        recipient_name="R", recipient_id=key)
    with transaction(url) as s:
        outbox.plan(s, [planned], NOW - timedelta(hours=5))
    with transaction(url) as s:
        mid = s.query(EmailMessage.message_id).filter(EmailMessage.idempotency_key == planned.idempotency_key).scalar()
        s.execute(update(EmailMessage).where(EmailMessage.message_id == mid).values(
            **{"status": status, "sent_at": NOW - timedelta(hours=4) if status == "sent" else None, **values}))
    return mid


def _event(url, mid, kind, machine=False, after=timedelta(hours=1), device="desktop"):
    with transaction(url) as s:
        tracking.record_event(s, {"message_id": mid, "event_type": kind, "event_time": NOW - timedelta(hours=4) + after,
                                  "is_machine": machine, "device": device, "browser": "Chrome 120", "os": "Windows 10",
                                  "created_at": NOW, "event_data": {}})


@pytest.fixture
def fixture_data(db_url):
    m1 = _message(db_url, 1, "feedback_reminder", "sent")
    _event(db_url, m1, "opened", after=timedelta(minutes=30), device="mobile")
    _event(db_url, m1, "clicked", after=timedelta(minutes=31))
    m2 = _message(db_url, 2, "feedback_reminder", "sent")
    _event(db_url, m2, "opened", machine=True, after=timedelta(seconds=1))   # Apple MPP
    _message(db_url, 3, "feedback_reminder", "failed", bounced_at=NOW, bounce_type="hard")
    m4 = _message(db_url, 4, "feedback_reminder", "sent")
    _event(db_url, m4, "unsubscribed")
    alert = _message(db_url, 5, "rescheduling_alert", "sent")
    _event(db_url, alert, "opened", after=timedelta(hours=30))
    _message(db_url, 6, "weekly_digest", "skipped", skip_reason="unsubscribed_all")
    _message(db_url, 7, "monthly_summary", "failed", bounce_type="blocked", failure_reason="550 5.7.1 blocked")
    return db_url


def test_every_metric_by_hand(fixture_data):
    with transaction(fixture_data) as s:
        report = build_report(s, START, END)
    o = report.overall
    # 4 sent + 1 bounced + 1 blocked = 6 attempted; the skipped digest is no attempt
    assert (o["messages"], o["attempted"], o["delivered"], o["bounced"], o["blocked"], o["skipped"]) == (7, 6, 4, 1, 1, 1)
    assert o["delivery_rate"] == pytest.approx(4 / 6) and o["bounce_rate"] == pytest.approx(1 / 6)
    assert o["block_rate"] == pytest.approx(1 / 6)
    assert o["open_rate_human"] == pytest.approx(2 / 4)   # m1 and the alert; the MPP open is a machine's
    assert o["open_rate_all"] == pytest.approx(3 / 4)
    assert o["click_through_rate"] == pytest.approx(1 / 4)
    assert o["click_to_open_rate"] == pytest.approx(1 / 2)
    assert o["unsubscribe_rate"] == pytest.approx(1 / 4)
    assert o["complaint_rate"] == 0.0
    by_type = report.by_template.set_index("template_type")
    assert by_type.loc["feedback_reminder", "open_rate_human"] == pytest.approx(1 / 3)
    assert pd.isna(by_type.loc["weekly_digest", "delivery_rate"])  # zero denominator: no rate, no crash
    # first opens by people only (the MPP open is a machine's), every bucket in order, empty ones 0
    assert list(zip(report.time_to_open["bucket"], report.time_to_open["messages"])) == [
        ("under 1 hour", 1), ("1-4 hours", 0), ("4-24 hours", 0), ("1-3 days", 1), ("over 3 days", 0)]
    devices = report.clients.groupby("device")["opens"].sum().to_dict()
    assert devices == {"mobile": 1, "desktop": 1}
    success = report.success.set_index("metric")
    assert success.loc["Email delivery rate", "status"] == "fail"              # 80% < 95%
    assert success.loc["Open rate, critical alerts (human)", "status"] == "pass"  # 1 of 1 alert opened by a person
    assert success.loc["Feedback completion after reminders", "value"] == 0.0   # 3 reminded sessions, none rated
    assert success.loc["Tutor engagement with check-ins", "status"] == "no data"
    assert success.loc["Template rendering time (p50)", "status"] == "pass"


def test_empty_range_gives_no_data_not_errors(db_url, tmp_path):
    with transaction(db_url) as s:
        report = build_report(s, START, END)
    assert report.overall == dict.fromkeys(
        ("delivery_rate", "bounce_rate", "hard_bounce_rate", "soft_bounce_rate", "block_rate", "open_rate_human",
         "open_rate_all", "click_through_rate", "click_to_open_rate", "unsubscribe_rate", "complaint_rate"))
    # only the rendering time is measured without messages
    assert dict(zip(report.success["metric"], report.success["status"])) == {
        "Email delivery rate": "no data", "Open rate, critical alerts (human)": "no data",
        "Click-through rate (human)": "no data", "Feedback completion after reminders": "no data",
        "Tutor engagement with check-ins": "no data", "Spam complaint rate": "no data",
        "Template rendering time (p50)": "pass"}
    page = write_report(report, tmp_path / "r").read_text()
    assert "<div><b>—</b><span>Delivery rate</span></div>" in page
    assert "<h2>By template type</h2><p class=note>Nothing in this range.</p>" in page
    assert daily_events(report).to_numpy().sum() == 0 and len(daily_events(report)) == len(report.days) == 9


def test_report_files(fixture_data, tmp_path):
    with transaction(fixture_data) as s:
        report = build_report(s, START, END)
    path = write_report(report, tmp_path / "r")
    text = path.read_text()
    assert text.count("data:image/png;base64,") == 3 and "Success metrics" in text
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [
        "ab_tests.csv", "bounce_reasons.csv", "by_campaign.csv", "by_day.csv", "by_template.csv",
        "by_version_variant.csv", "campaigns.csv", "clients.csv", "domains.csv", "report.html", "success_metrics.csv",
        "time_to_open.csv"]
    assert pd.read_csv(tmp_path / "r" / "by_template.csv")["delivered"].sum() == 4


def test_ab_campaign_verdict_in_the_report(db_url):
    with transaction(db_url) as s:
        s.add(EmailCampaign(campaign_id="camp_ab", campaign_name="Reminder subject test", campaign_type="automation_ab",
                            template_type="feedback_reminder", ab_test_enabled=True, status="active"))
    for i in range(150):
        for variant, clicks in (("a", 40), ("b", 70)):
            mid = _message(db_url, 1000 * (variant == "b") + i + 10, "feedback_reminder", "sent",
                           campaign_id="camp_ab", ab_variant=variant)
            if i < clicks:
                _event(db_url, mid, "clicked")
    with transaction(db_url) as s:
        report = build_report(s, START, END)
    (test,) = report.ab_tests
    assert test["variants"]["a"]["clicks"] == 40 and test["variants"]["b"]["clicks"] == 70
    assert test["result"]["winner"] == "b" and test["result"]["significant"]
    # the campaign's own row, its counts as its messages say
    (row,) = report.campaigns.to_dict("records")
    assert {k: row[k] for k in ("campaign_id", "status", "recipients", "sent", "delivered", "clicked_human",
                                "opened_human")} == {"campaign_id": "camp_ab", "status": "active", "recipients": 300,
                                                     "sent": 300, "delivered": 300, "clicked_human": 110,
                                                     "opened_human": 110}


def test_an_announcements_decided_test_shows_the_verdict_it_was_decided_on(db_url):
    verdict = {"variants": {"a": {"variant": "a", "sent": 200, "delivered": 200, "human_opens": 50, "clicks": 20},
                            "b": {"variant": "b", "sent": 200, "delivered": 200, "human_opens": 60, "clicks": 40}},
               "compare": {"p_value": 0.004, "winner": "b", "reason": "b wins: ..."}, "winner": "b",
               "sent_to_rest": "b", "reason": "b wins: clicks b 20.0% vs a 10.0%", "looks": 1}
    with transaction(db_url) as s:
        s.add(EmailCampaign(campaign_id="news", campaign_name="News", campaign_type="announcement",
                            template_type="announcement", ab_test_enabled=True, status="sending", ab_winner="b",
                            ab_verdict=verdict))
    for i in range(3):  # later messages (the rest) carry no variant: they are not part of the test
        _message(db_url, 5000 + i, "announcement", "sent", campaign_id="news")
    with transaction(db_url) as s:
        report = build_report(s, START, END)
    (test,) = report.ab_tests
    assert test["variants"]["b"]["clicks"] == 40 and test["result"]["reason"] == "b wins: clicks b 20.0% vs a 10.0%"
    assert report.campaigns.to_dict("records")[0]["winner"] == "b"


class _Tables(HTMLParser):
    """Every <table> in a page by the <h2> above it, as rows of cell texts, the header row first."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.heading, self.rows = "", None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        if tag == "h2":
            self.heading = ""
        elif tag == "table":
            self.rows = self.tables[self.heading] = []
        elif tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.rows[-1].append("")

    def handle_endtag(self, tag):
        if tag == "table":
            self.rows = None

    def handle_data(self, data):
        if self.rows:
            self.rows[-1][-1] += data
        elif self.lasttag == "h2":
            self.heading += data


def _page(fixture_data, folder, start=START, end=END):
    with transaction(fixture_data) as s:
        report = build_report(s, start, end, tz=NEW_YORK)
    return report, write_report(report, folder).read_text()


WIDE_HEADER = ["Sent (attempted)", "Delivered", "Delivery rate", "Hard bounces", "Soft bounces", "Open rate (people)",
               "Open rate (all)", "Click-through", "Click-to-open", "Unsubscribe rate", "Complaint rate"]


def test_the_page_shows_every_rate_as_a_percentage_under_readable_headers(fixture_data, tmp_path):
    report, page = _page(fixture_data, tmp_path / "r")
    tables = _Tables(page).tables
    assert list(tables) == ["Success metrics", "Bounce reasons", "Bounces and complaints by recipient domain",
                            "By template type", "By template version and variant", "By day sent",
                            "Time to first human open", "Devices"]
    # the fixture has no campaigns
    assert "<h2>By campaign and variant</h2><p class=note>Nothing in this range.</p>" in page
    assert "by variant.</p><p class=note>Nothing in this range.</p>" in page
    assert tables["By template type"][0] == ["Template", *WIDE_HEADER]
    assert tables["By template version and variant"][0] == ["Template", "Version", "Variant", *WIDE_HEADER]
    assert tables["By day sent"][0] == ["Day sent", *WIDE_HEADER]
    assert tables["Success metrics"][0] == ["Metric", "Value", "Target", "Status"]
    # all fixture messages went out on Friday 20 November, New York time: one row, the overall rates
    (day,) = [dict(zip(tables["By day sent"][0], row)) for row in tables["By day sent"][1:]]
    assert (day["Day sent"], day["Sent (attempted)"], day["Delivery rate"], day["Open rate (people)"],
            day["Open rate (all)"], day["Click-to-open"]) == ("Fri 2026-11-20", "6", "66.7%", "50.0%", "75.0%", "50.0%")
    rates = {LABELS[name] for name in RATES}
    for table in tables.values():
        for row in table[1:]:
            for header, cell in zip(table[0], row):
                if header in rates:  # a percentage (complaints to the hundredth), or a dash: nothing to divide by
                    places = 2 if header == "Complaint rate" else 1
                    assert re.fullmatch(rf"\d{{1,3}}\.\d{{{places}}}%|—", cell), (header, cell)
    by_template = tables["By template type"]
    digest = dict(zip(by_template[0], next(row for row in by_template[1:] if row[0] == "weekly_digest")))
    assert digest["Delivery rate"] == "—"  # skipped only: no attempt to divide by
    assert "_rate" not in page and "opened_human" not in page  # no machine names reach the page
    headline = re.findall(r"<b>([^<]*)</b><span>([^<]*)</span>", page)
    assert ("50.0%", "Open rate (people)") in headline and ("75.0%", "Open rate (all)") in headline


def test_the_csv_keeps_every_column_by_its_machine_name(fixture_data, tmp_path):
    _page(fixture_data, tmp_path / "r")
    metrics = [*COUNTS, *RATES]
    assert list(pd.read_csv(tmp_path / "r" / "by_template.csv").columns) == ["template_type", *metrics]
    assert list(pd.read_csv(tmp_path / "r" / "by_day.csv").columns) == ["day", *metrics]
    assert list(pd.read_csv(tmp_path / "r" / "by_version_variant.csv").columns) == [
        "template_type", "template_version", "ab_variant", *metrics]
    assert pd.read_csv(tmp_path / "r" / "by_day.csv")["open_rate_human"].tolist() == [0.5]


def test_the_title_names_the_first_and_last_local_day(fixture_data, tmp_path):
    # what the flow passes: local midnights, the end exclusive
    start, end = datetime(2026, 11, 14, tzinfo=NEW_YORK), datetime(2026, 11, 21, tzinfo=NEW_YORK)
    _, page = _page(fixture_data, tmp_path / "r", start.astimezone(timezone.utc), end.astimezone(timezone.utc))
    assert "<h1>Email analytics, 2026-11-14 to 2026-11-20</h1>" in page


def test_the_chart_has_every_day_of_the_range_with_zeros(fixture_data):
    with transaction(fixture_data) as s:
        report = build_report(s, START, END, tz=NEW_YORK)
    daily = daily_events(report)
    # START and END are 10:00 in New York on the 13th and 21st: nine local days, each once, in order
    assert list(daily.index.date) == [date(2026, 11, 13) + timedelta(days=i) for i in range(9)]
    assert list(daily.columns) == ["Opens (people)", "Opens (machines)", "Clicks (people)", "Clicks (machines)"]
    # on the 20th: m1's open and click and the MPP open; the alert's open (21st 17:00 UTC) is after END
    assert daily.loc["2026-11-20"].tolist() == [1, 1, 1, 0]
    assert daily.drop(pd.Timestamp("2026-11-20")).to_numpy().sum() == 0


def test_days_are_local_days_in_the_table_and_the_chart(db_url):
    tokyo = ZoneInfo("Asia/Tokyo")
    # sent 16:00 UTC on the 20th, opened at 17:00: both on the 21st in Tokyo
    mid = _message(db_url, 1, "feedback_reminder", "sent", sent_at=datetime(2026, 11, 20, 16, tzinfo=timezone.utc))
    _event(db_url, mid, "opened", after=timedelta(hours=6))
    start, end = datetime(2026, 11, 14, tzinfo=tokyo), datetime(2026, 11, 22, tzinfo=tokyo)
    with transaction(db_url) as s:
        report = build_report(s, start.astimezone(timezone.utc), end.astimezone(timezone.utc), tz=tokyo)
    assert report.by_day["day"].tolist() == [date(2026, 11, 21)]
    assert report.events_by_day["day"].tolist() == [date(2026, 11, 21)]
    daily = daily_events(report)
    assert daily.index[0].date() == date(2026, 11, 14) and daily.index[-1].date() == date(2026, 11, 21)
    assert daily["Opens (people)"].tolist() == [0] * 7 + [1]


def test_every_column_has_a_label():
    assert set(COUNTS) | set(RATES) <= set(LABELS)
    assert len(set(LABELS.values())) == len(LABELS)  # two columns never read alike


@pytest.fixture
def bounces_and_complaints(db_url):
    """400 sent to example.com (one complaint, 0.25%); 4 to far.example, 2 of them hard-bounced later, 1 soft;
    2 blocked at sending with the same answer but for its queue id; 1 complaint of 4 at far.example (25%)."""
    ids = [_message(db_url, 100 + i, "weekly_digest", "sent") for i in range(400)]
    _event(db_url, ids[0], "complained")
    far = [_message(db_url, 600 + i, "weekly_digest", "sent", email=f"f{i}@Far.example") for i in range(4)]
    with transaction(db_url) as s:
        for mid, kind, reason in ((far[0], "hard", "5.1.1 smtp; 550 5.1.1 <f0@far.example>: User unknown"),
                                  (far[1], "hard", "5.1.1 smtp; 550 5.1.1 <f1@far.example>: User unknown"),
                                  (far[2], "soft", "5.2.2 smtp; 552 5.2.2 Mailbox full")):
            s.execute(update(EmailMessage).where(EmailMessage.message_id == mid).values(
                bounced_at=NOW, bounce_type=kind, bounce_reason=reason))
    _event(db_url, far[3], "complained")
    for i, queue_id in enumerate(("AB12CD34EF56", "ZX98YV76WU54")):
        _message(db_url, 700 + i, "weekly_digest", "failed", bounce_type="blocked",
                 bounce_reason=f"550 5.7.1 Message {queue_id} rejected: blocked by policy")
    return db_url


def test_bounces_split_hard_and_soft_with_their_reasons_and_domains(bounces_and_complaints, tmp_path):
    report, page = _page(bounces_and_complaints, tmp_path / "r")
    o = report.overall
    # 406 attempted; of the 404 the relay took, 3 bounced later: 401 delivered
    assert (o["attempted"], o["delivered"], o["bounced_hard"], o["bounced_soft"], o["blocked"]) == (406, 401, 2, 1, 2)
    assert (o["hard_bounce_rate"], o["soft_bounce_rate"]) == (pytest.approx(2 / 406), pytest.approx(1 / 406))
    assert report.bounce_reasons.to_dict("records") == [
        {"bounce_type": "blocked", "reason": "550 5.7.1 Message … rejected: blocked by policy", "messages": 2},
        {"bounce_type": "hard", "reason": "5.1.1 smtp; 550 5.1.1 <address>: User unknown", "messages": 2},
        {"bounce_type": "soft", "reason": "5.2.2 smtp; 552 5.2.2 Mailbox full", "messages": 1}]
    tables = _Tables(page).tables
    domains = [dict(zip(tables["Bounces and complaints by recipient domain"][0], row))
               for row in tables["Bounces and complaints by recipient domain"][1:]]
    assert [(d["Recipient domain"], d["Sent (attempted)"], d["Delivered"], d["Hard bounces"], d["Soft bounces"],
             d["Complaint rate"]) for d in domains] == [("example.com", "402", "400", "0.0%", "0.0%", "0.25%"),
                                                        ("far.example", "4", "1", "50.0%", "25.0%", "100.00%")]


def test_the_complaint_rate_is_held_to_the_0_1_and_0_3_percent_lines(bounces_and_complaints, tmp_path):
    report, page = _page(bounces_and_complaints, tmp_path / "r")
    success = report.success.set_index("metric")
    # 2 complaints of 401 delivered: 0.50%, over both lines
    assert (success.loc["Spam complaint rate", "shown"], success.loc["Spam complaint rate", "target"],
            success.loc["Spam complaint rate", "status"]) == ("0.50%", "< 0.1% (never 0.3%)", "fail")
    assert '<div class=bad><b>0.50%</b><span>Complaint rate</span></div>' in page
    # example.com at 0.25% is over 0.1% (yellow); far.example at 100% is over 0.3% (red)
    assert re.search(r'<tr class=warn><td>example\.com</td>', page) and re.search(r'<tr class=bad><td>far\.example', page)
    assert complaint_mark(0.001) == "" and complaint_mark(0.0011) == "warn" and complaint_mark(0.003) == "bad"
