"""Opens and clicks through the Flask test client."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from db.models import EmailMessage, EmailTrackingEvent
from db.session import transaction
from tracking_app.track import GIF
from tutormax.links import link_id
from tutormax.tokens import Purpose

CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"


def _events(url, mid):
    with transaction(url) as s:
        return list(s.scalars(select(EmailTrackingEvent).where(EmailTrackingEvent.message_id == mid)
                              .order_by(EmailTrackingEvent.event_id)))


def _message(url, mid):
    with transaction(url) as s:
        return s.get(EmailMessage, mid)


def test_open_pixel_records_and_counts(client, sent_message, token, db_url):
    mid = sent_message()
    for _ in range(2):
        response = client.get(f"/o/{token(Purpose.OPEN, mid)}.gif", headers={"User-Agent": IPHONE})
        assert response.status_code == 200 and response.data == GIF
        assert response.headers["Content-Type"] == "image/gif"
        assert "no-store" in response.headers["Cache-Control"]
    message = _message(db_url, mid)
    assert message.open_count == 2 and message.opened_at is not None
    first, second = _events(db_url, mid)
    assert first.event_type == "opened" and not first.is_machine
    assert (first.device, first.os.split()[0]) == ("mobile", "iOS")
    assert second.event_time >= first.event_time
    assert message.opened_at == first.event_time  # the first open sets it, later ones do not move it


def test_bad_pixel_tokens_still_get_a_gif_and_record_nothing(client, sent_message, token, db_url):
    mid = sent_message()
    good = token(Purpose.OPEN, mid)
    for bad in (good[:-1] + ("A" if good[-1] != "A" else "B"), good[:20], token(Purpose.CLICK, mid), "x" * 40):
        response = client.get(f"/o/{bad}.gif")
        assert response.status_code == 200 and response.data == GIF
    assert _events(db_url, mid) == []


def test_a_user_agent_with_nul_bytes_is_recorded_without_them(client, sent_message, token, db_url):
    mid = sent_message()
    evil = {"User-Agent": "Evil\x00" + CHROME}
    response = client.get(f"/o/{token(Purpose.OPEN, mid)}.gif", headers=evil)
    assert response.status_code == 200 and response.data == GIF
    click = client.get(f"/c/{token(Purpose.CLICK, mid, 1, b'cta' + bytes([10]) + b'https://example.com/a')}", headers=evil)
    assert click.status_code == 302
    assert [e.user_agent for e in _events(db_url, mid)] == ["Evil" + CHROME] * 2


@pytest.mark.parametrize(
    ("headers", "sent_ago", "reason"),
    [
        ({"User-Agent": "Mozilla/5.0"}, timedelta(hours=1), "apple_mpp_user_agent"),
        ({"User-Agent": CHROME}, timedelta(seconds=0), "too_soon_after_send"),
        ({"User-Agent": "Mozilla/5.0 (compatible; Barracuda Sentinel)"}, timedelta(hours=1), "known_prefetcher"),
    ],
)
def test_machine_opens_are_flagged_not_dropped(client, sent_message, token, db_url, headers, sent_ago, reason):
    mid = sent_message(sent_ago=sent_ago)
    client.get(f"/o/{token(Purpose.OPEN, mid)}.gif", headers=headers)
    (event,) = _events(db_url, mid)
    assert (event.is_machine, event.machine_reason) == (True, reason)
    assert _message(db_url, mid).open_count == 1


def test_forwarded_for_only_behind_a_trusted_proxy(app, db_url, sent_message, token, monkeypatch):
    from tracking_app.classify import parse_networks

    mid = sent_message()
    url = f"/o/{token(Purpose.OPEN, mid)}.gif"
    headers = {"User-Agent": CHROME, "X-Forwarded-For": "203.0.113.9"}
    app.test_client().get(url, headers=headers, environ_base={"REMOTE_ADDR": "10.0.0.5"})
    app.config["TRUSTED_PROXIES"] = parse_networks("10.0.0.0/8")
    app.test_client().get(url, headers=headers, environ_base={"REMOTE_ADDR": "10.0.0.5"})
    # a spoofed header from an untrusted peer is ignored
    app.test_client().get(url, headers=headers, environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert [e.ip_address for e in _events(db_url, mid)] == ["10.0.0.5", "203.0.113.9", "198.51.100.7"]


def test_a_forwarded_ipv6_zone_is_dropped_not_stored(app, db_url, sent_message, token):
    """The zone comes from the client and can be any length; the column holds 45 characters."""
    from tracking_app.classify import parse_networks

    mid = sent_message()
    app.config["TRUSTED_PROXIES"] = parse_networks("10.0.0.0/8")
    response = app.test_client().get(f"/o/{token(Purpose.OPEN, mid)}.gif", environ_base={"REMOTE_ADDR": "10.0.0.5"},
                                     headers={"User-Agent": CHROME, "X-Forwarded-For": "fe80::1%" + "x" * 80})
    assert response.status_code == 200 and response.data == GIF
    assert [e.ip_address for e in _events(db_url, mid)] == ["fe80::1"]


def test_an_open_the_database_refuses_still_gets_its_gif(app, client, sent_message, token, db_url, monkeypatch):
    from sqlalchemy.exc import DataError

    def refuse(rows):
        raise DataError("EXECUTE tutormax_open_batch", None, ValueError("value too long"))

    mid = sent_message()
    monkeypatch.setattr(app.config["OPENS"], "_write", refuse)
    response = client.get(f"/o/{token(Purpose.OPEN, mid)}.gif", headers={"User-Agent": CHROME})
    assert response.status_code == 200 and response.data == GIF
    assert _events(db_url, mid) == [] and not app.config["JOURNAL"].pending()  # not journaled: it would fail again


def _click_token(token, mid, target="https://www.tutormax.example/help?a=1&b=2", name="cta"):
    return token(Purpose.CLICK, mid, link_id(name), f"{name}\n{target}".encode())


def test_click_redirects_to_the_signed_target_and_records(client, sent_message, token, db_url):
    mid = sent_message()
    response = client.get(f"/c/{_click_token(token, mid)}", headers={"User-Agent": CHROME})
    assert response.status_code == 302
    assert response.headers["Location"] == "https://www.tutormax.example/help?a=1&b=2"
    message = _message(db_url, mid)
    assert message.click_count == 1 and message.first_clicked_at is not None
    assert message.opened_at is not None  # a click implies an open
    (event,) = _events(db_url, mid)
    assert (event.event_type, event.link_name, event.is_machine) == ("clicked", "cta", False)
    assert event.link_url == "https://www.tutormax.example/help?a=1&b=2"


@pytest.mark.parametrize(
    "target", ["javascript:alert(1)", "//evil.example/", "ftp://evil.example/", "https://evil.example/\r\nSet-Cookie: x=1",
               "data:text/html,hi"],
)
def test_never_an_open_redirect(client, sent_message, token, target):
    mid = sent_message()
    response = client.get(f"/c/{_click_token(token, mid, target=target)}")
    assert response.status_code == 404 and "Location" not in response.headers


def test_tampered_truncated_or_unknown_click_tokens_are_404(client, sent_message, token):
    mid = sent_message()
    good = _click_token(token, mid)
    for bad in (good[:-2], good[:10], good.replace(good[5], "A" if good[5] != "A" else "B", 1),
                _click_token(token, 999_999), token(Purpose.OPEN, mid)):
        response = client.get(f"/c/{bad}")
        assert response.status_code == 404 and "Location" not in response.headers


def test_bot_clicks_are_flagged(client, sent_message, token, db_url):
    mid = sent_message()
    url = f"/c/{_click_token(token, mid)}"
    assert client.head(url, headers={"User-Agent": CHROME}).status_code == 302
    client.get(url, headers={"User-Agent": "curl/8.4.0"})
    client.get(url, headers={"User-Agent": CHROME})
    client.get(f"/c/{_click_token(token, mid, target='https://www.tutormax.example/other', name='other')}",
               headers={"User-Agent": CHROME})
    reasons = [e.machine_reason for e in _events(db_url, mid)]
    assert reasons[:2] == ["head_request", "scanner_user_agent"]
    assert reasons[3] == "burst_of_clicks"  # two links within a second


def test_help_page_exists_for_the_links_in_emails(client):
    page = client.get("/help")
    assert page.status_code == 200 and b'id="scheduling"' in page.data
