"""The analytics API: bearer token, metrics from real rows, preferences by body never by URL."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from db.models import EmailCampaign, EmailMessage
from db.session import transaction
from tutormax.tokens import Purpose

AUTH = {"Authorization": "Bearer api-token-for-tests"}
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


@pytest.mark.parametrize("path", ["/api/email-analytics/metrics/overall", "/api/email-analytics/campaigns",
                                  "/api/email-analytics/metrics/template/feedback_reminder"])
@pytest.mark.parametrize("header", [None, "Bearer wrong", "api-token-for-tests", "Basic YTpi"])
def test_without_a_valid_token_401(client, path, header):
    response = client.get(path, headers={"Authorization": header} if header else {})
    assert (response.status_code, response.json, response.headers["WWW-Authenticate"]) == (
        401, {"error": "unauthorized", "detail": "send Authorization: Bearer <ANALYTICS_API_TOKEN>"},
        'Bearer realm="email-analytics"')


def test_preferences_are_not_readable_without_a_token_or_by_url(client):
    assert client.post("/api/email-analytics/preferences/lookup", json={"email": "a@example.com"}).status_code == 401
    assert client.get("/api/email-analytics/preferences/a@example.com", headers=AUTH).status_code == 404


def test_overall_metrics_count_humans_and_all(client, sent_message, token):
    opened, clicked, _ = sent_message("a@example.com"), sent_message("b@example.com"), sent_message("c@example.com")
    client.get(f"/o/{token(Purpose.OPEN, opened)}.gif", headers={"User-Agent": CHROME})
    client.get(f"/o/{token(Purpose.OPEN, clicked)}.gif", headers={"User-Agent": "Mozilla/5.0"})  # Apple MPP
    client.get(f"/c/{token(Purpose.CLICK, clicked, 1, b'cta' + bytes([10]) + b'https://example.com/')}",
               headers={"User-Agent": CHROME})
    body = client.get("/api/email-analytics/metrics/overall", headers=AUTH).json
    assert body["counts"]["delivered"] == 3 and body["counts"]["opened_all"] == 2 and body["counts"]["clicked_human"] == 1
    assert body["counts"]["opened_human"] == 2  # the MPP open is machine, but that message was clicked by a human
    assert body["rates"]["open_rate_all"] == pytest.approx(2 / 3)
    assert body["rates"]["click_through_rate"] == pytest.approx(1 / 3)
    assert body["rates"]["delivery_rate"] == 1.0
    per_type = client.get("/api/email-analytics/metrics/template/feedback_reminder", headers=AUTH).json
    assert per_type["counts"]["delivered"] == 3
    assert client.get("/api/email-analytics/metrics/template/weekly_digest", headers=AUTH).json["rates"]["open_rate_all"] is None


def test_preferences_round_trip_through_the_body(client):
    put = client.put("/api/email-analytics/preferences", headers=AUTH,
                     json={"email": "Pat@Example.org", "weekly_digests": False})
    assert put.status_code == 200 and put.json["weekly_digests"] is False and put.json["email"] == "pat@example.org"
    got = client.post("/api/email-analytics/preferences/lookup", headers=AUTH, json={"email": "pat@example.org"}).json
    assert got["weekly_digests"] is False and got["feedback_reminders"] is True
    assert client.post("/api/email-analytics/unsubscribe", headers=AUTH,
                       json={"email": "pat@example.org"}).json["unsubscribed_all"] is True
    for bad in ({"email": "not an address"}, {"email": 7}, {}, {"email": "pat@example.org", "weekly_digests": "no"}):
        response = client.put("/api/email-analytics/preferences", headers=AUTH, json=bad)
        assert (response.status_code, response.json) == (400, {"error": "bad_request"}), bad


def test_campaign_endpoints(client, db_url):
    with transaction(db_url) as s:
        s.add(EmailCampaign(campaign_id="camp_1", campaign_name="Spring", campaign_type="announcement",
                            template_type="feedback_reminder", ab_test_enabled=True,
                            created_at=datetime(2026, 3, 1, tzinfo=timezone.utc)))
        s.flush()
        for i, status in enumerate(["sent", "sent", "skipped", "queued"]):
            s.add(EmailMessage(idempotency_key=f"k{i}", campaign_id="camp_1", recipient_type="tutor",
                               template_type="feedback_reminder", category="marketing_emails", status=status,
                               skip_reason="suppressed" if status == "skipped" else None, metadata={}))
    listing = client.get("/api/email-analytics/campaigns", headers=AUTH).json
    assert [c["campaign_id"] for c in listing["campaigns"]] == ["camp_1"]
    (listed,) = listing["campaigns"]
    assert {k: listed["counts"][k] for k in ("recipients", "planned", "sent", "skipped", "queued")} == {
        "recipients": 4, "planned": 3, "sent": 2, "skipped": 1, "queued": 1}
    detail = client.get("/api/email-analytics/campaigns/camp_1", headers=AUTH).json
    assert detail["campaign"]["campaign_name"] == "Spring" and detail["counts"]["messages"] == 4
    assert detail["campaign"]["counts"] == listed["counts"] and detail["campaign"]["excluded"] == {"suppressed": 1}
    page = client.get("/api/email-analytics/campaigns/camp_1/messages?limit=3", headers=AUTH).json
    assert [m["status"] for m in page["messages"]] == ["sent", "sent", "skipped"]
    assert page["next_after"] == page["messages"][2]["message_id"]
    assert client.get("/api/email-analytics/campaigns/camp_1/ab-test", headers=AUTH).json["ab_test_enabled"] is True
    assert client.get("/api/email-analytics/campaigns/nope", headers=AUTH).status_code == 404
    assert client.get("/api/email-analytics/campaigns/camp_1/messages?after=x", headers=AUTH).status_code == 400


def test_the_api_and_the_report_agree(client, sent_message, token, db_url):
    from db.session import transaction
    from tasks.analytics import build_report

    for i in range(4):
        mid = sent_message(f"r{i}@example.com")
        client.get(f"/o/{token(Purpose.OPEN, mid)}.gif", headers={"User-Agent": CHROME if i % 2 else "Mozilla/5.0"})
    api = client.get("/api/email-analytics/metrics/overall", headers=AUTH).json
    with transaction(db_url) as s:
        report = build_report(s, datetime(2000, 1, 1, tzinfo=timezone.utc), datetime(2100, 1, 1, tzinfo=timezone.utc))
    for name, value in api["rates"].items():
        assert report.overall[name] == (pytest.approx(value) if value is not None else None), name


def test_paths_the_api_does_not_know_answer_json_too(client):
    for headers in ({}, AUTH):
        response = client.get("/api/email-analytics/nothing-here", headers=headers)
        assert (response.status_code, response.json) == (404, {"error": "not_found"})
    assert client.get("/nothing-here").mimetype == "text/html"
