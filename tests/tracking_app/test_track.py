"""Clicks through the Flask test client."""

from __future__ import annotations

import pytest

from tracking_app.pixel import GIF
from tutormax.links import link_id
from tutormax.tokens import Purpose

CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"


def test_a_user_agent_with_nul_bytes_is_recorded_without_them(client, sent_message, token, events):
    mid = sent_message()
    evil = {"User-Agent": "Evil\x00" + CHROME}
    response = client.get(f"/o/{token(Purpose.OPEN, mid)}.gif", headers=evil)
    assert response.status_code == 200 and response.data == GIF
    click = client.get(f"/c/{token(Purpose.CLICK, mid, 1, b'cta' + bytes([10]) + b'https://example.com/a')}", headers=evil)
    assert click.status_code == 302
    assert [e.user_agent for e in events(mid)] == ["Evil" + CHROME] * 2


def _click_token(token, mid, target="https://www.tutormax.example/help?a=1&b=2", name="cta"):
    return token(Purpose.CLICK, mid, link_id(name), f"{name}\n{target}".encode())


def test_click_redirects_to_the_signed_target_and_records(client, sent_message, token, events, stored_message):
    mid = sent_message()
    response = client.get(f"/c/{_click_token(token, mid)}", headers={"User-Agent": CHROME})
    assert response.status_code == 302
    assert response.headers["Location"] == "https://www.tutormax.example/help?a=1&b=2"
    message = stored_message(mid)
    assert message.click_count == 1 and message.first_clicked_at is not None
    assert message.opened_at is not None  # a click implies an open
    (event,) = events(mid)
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


def test_a_click_token_spelled_any_other_way_is_404(client, sent_message, token, events):
    mid = sent_message()
    good = _click_token(token, mid)
    for other in (f"{good}%3D%3D", f"{good}=", f"{good}~", f"~{good}", good.replace("-", "+").replace("_", "/")):
        if other != good:
            response = client.get(f"/c/{other}")
            assert response.status_code == 404 and "Location" not in response.headers, other
    assert events(mid) == []


def test_doubled_slashes_are_a_bad_link_not_a_redirect(client, sent_message, token):
    mid = sent_message()
    for path in (f"/c//{_click_token(token, mid)}", "/c//evil.example", "/c/%2F0"):
        response = client.get(path)
        assert response.status_code == 404 and "Location" not in response.headers


def test_bot_clicks_are_flagged(client, sent_message, token, events):
    mid = sent_message()
    url = f"/c/{_click_token(token, mid)}"
    assert client.head(url, headers={"User-Agent": CHROME}).status_code == 302
    client.get(url, headers={"User-Agent": "curl/8.4.0"})
    client.get(url, headers={"User-Agent": CHROME})
    client.get(f"/c/{_click_token(token, mid, target='https://www.tutormax.example/other', name='other')}",
               headers={"User-Agent": CHROME})
    reasons = [e.machine_reason for e in events(mid)]
    # the last two come within a second of the clicks before them
    assert reasons == ["head_request", "scanner_user_agent", "burst_of_clicks", "burst_of_clicks"]


def test_a_click_whose_commit_went_unconfirmed_is_journaled_and_counted_once(
        app, client, sent_message, token, db_url, events, stored_message, commit_answer_lost):
    mid = sent_message()
    undo = commit_answer_lost()
    assert client.get(f"/c/{_click_token(token, mid)}", headers={"User-Agent": CHROME}).status_code == 302
    undo()
    result = app.config["JOURNAL"].ingest(db_url)
    assert (result["events"], result["inserted"]) == (1, 0)
    assert stored_message(mid).click_count == 1 and len(events(mid)) == 1


def test_help_page_exists_for_the_links_in_emails(client):
    page = client.get("/help")
    assert page.status_code == 200 and b'id="scheduling"' in page.data
