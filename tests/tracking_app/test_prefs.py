"""Unsubscribe (RFC 8058 one-click, footer link) and the preferences page."""

from __future__ import annotations

import re

import pytest

from db import tracking
from db.session import transaction
from tutormax.tokens import Purpose


def _pref(url, email):
    with transaction(url) as s:
        return tracking.preference(s, email)


def test_get_only_asks(client, sent_message, token, db_url):
    mid = sent_message("Sam@Example.com")
    response = client.get(f"/u/{token(Purpose.UNSUBSCRIBE, mid)}")
    assert response.status_code == 200 and b"Unsubscribe?" in response.data
    assert _pref(db_url, "sam@example.com") is None


@pytest.mark.parametrize("route", ["u", "p"])
def test_head_only_asks_even_with_a_form_that_would_act(client, sent_message, token, db_url, events, stored_message,
                                                        route):
    # link scanners and mail gateways prefetch with HEAD: only a POST may act (RFC 8058)
    mid = sent_message("sam@example.com")
    url = f"/{route}/{token(Purpose(route), mid)}"
    get = client.get(url)
    csrf = re.search(rb'name="csrf" value="([^"]+)"', get.data)
    form = {"List-Unsubscribe": "One-Click", "scope": "all", "unsubscribed_all": "on",
            **({"csrf": csrf.group(1).decode()} if csrf else {})}
    head = client.head(url, data=form)
    assert (head.status_code, head.data) == (200, b"")
    assert [head.headers[h] for h in ("Content-Type", "Content-Length")] == \
        [get.headers[h] for h in ("Content-Type", "Content-Length")]
    assert _pref(db_url, "sam@example.com") is None
    assert events(mid) == [] and stored_message(mid).unsubscribed_at is None


@pytest.mark.parametrize("encoding", ["form", "multipart"])
def test_one_click_post_unsubscribes_from_the_category_at_once(client, sent_message, token, db_url, encoding):
    mid = sent_message("sam@example.com")
    url = f"/u/{token(Purpose.UNSUBSCRIBE, mid)}"
    data = {"List-Unsubscribe": "One-Click"}
    response = (client.post(url, data=data) if encoding == "form"
                else client.post(url, data=data, content_type="multipart/form-data"))
    assert response.status_code == 200 and "Location" not in response.headers
    assert "Set-Cookie" not in response.headers
    pref = _pref(db_url, "sam@example.com")
    assert pref.feedback_reminders is False and pref.unsubscribed_all is False and pref.weekly_digests is True


def test_footer_page_can_unsubscribe_from_everything(client, sent_message, token, db_url):
    mid = sent_message("sam@example.com")
    assert client.post(f"/u/{token(Purpose.UNSUBSCRIBE, mid)}", data={"scope": "all"}).status_code == 200
    pref = _pref(db_url, "sam@example.com")
    assert pref.unsubscribed_all and pref.unsubscribed_at is not None


def test_unsubscribe_is_recorded_as_an_event(client, sent_message, token, db_url):
    from sqlalchemy import select

    from db.models import EmailMessage, EmailTrackingEvent

    mid = sent_message()
    client.post(f"/u/{token(Purpose.UNSUBSCRIBE, mid)}", data={"List-Unsubscribe": "One-Click"})
    with transaction(db_url) as s:
        event = s.scalar(select(EmailTrackingEvent).where(EmailTrackingEvent.message_id == mid))
        assert s.get(EmailMessage, mid).unsubscribed_at is not None
    assert event.event_type == "unsubscribed" and event.event_data["one_click"] is True


def test_an_unsubscribe_with_nul_bytes_in_its_user_agent_is_recorded_without_them(client, sent_message, token, events):
    mid = sent_message()
    response = client.post(f"/u/{token(Purpose.UNSUBSCRIBE, mid)}", data={"List-Unsubscribe": "One-Click"},
                           headers={"User-Agent": "Evil\x00Mail/1.0"})
    assert response.status_code == 200
    assert [(e.event_type, e.user_agent) for e in events(mid)] == [("unsubscribed", "EvilMail/1.0")]


def test_an_unsubscribe_whose_commit_went_unconfirmed_is_journaled_and_recorded_once(
        app, client, sent_message, token, db_url, events, commit_answer_lost):
    mid = sent_message()
    undo = commit_answer_lost()
    assert client.post(f"/u/{token(Purpose.UNSUBSCRIBE, mid)}", data={"List-Unsubscribe": "One-Click"}).status_code == 200
    undo()
    result = app.config["JOURNAL"].ingest(db_url)
    assert (result["events"], result["inserted"]) == (1, 0)
    assert [e.event_type for e in events(mid)] == ["unsubscribed"]


def test_preferences_page_shows_and_saves_with_csrf(client, sent_message, token, db_url):
    mid = sent_message("sam@example.com")
    url = f"/p/{token(Purpose.PREFERENCES, mid)}"
    page = client.get(url)
    assert page.status_code == 200 and b"Weekly digests" in page.data
    assert b"sam@example.com" not in page.data  # the page does not reveal the address either
    csrf = re.search(rb'name="csrf" value="([^"]+)"', page.data).group(1).decode()
    saved = client.post(url, data={"csrf": csrf, "weekly_digests": "on", "feedback_reminders": "on",
                                   "system_notifications": "on"})
    assert saved.status_code == 200 and b"Saved." in saved.data
    pref = _pref(db_url, "sam@example.com")
    assert (pref.weekly_digests, pref.feedback_reminders, pref.marketing_emails, pref.system_notifications) == \
        (True, True, False, True)


def test_saving_the_page_keeps_an_opt_out_of_system_notices_the_page_showed(client, sent_message, token, db_url):
    mid = sent_message("sam@example.com", category="system_notifications")
    assert client.post(f"/u/{token(Purpose.UNSUBSCRIBE, mid)}", data={"List-Unsubscribe": "One-Click"}).status_code == 200
    url = f"/p/{token(Purpose.PREFERENCES, mid)}"
    page = client.get(url).data.decode()
    assert not re.search(r'name="system_notifications" checked', page)
    # the recipient saves the page as shown, changing only the digests
    form = dict(re.findall(r'name="(\w+)" (?:value="([^"]+)"|checked)', page))
    form = {k: v or "on" for k, v in form.items() if k != "weekly_digests"}
    assert client.post(url, data=form).status_code == 200
    pref = _pref(db_url, "sam@example.com")
    assert (pref.system_notifications, pref.weekly_digests, pref.feedback_reminders) == (False, False, True)


def test_preferences_post_without_the_form_secret_is_refused(client, sent_message, token, db_url):
    mid = sent_message("sam@example.com")
    url = f"/p/{token(Purpose.PREFERENCES, mid)}"
    assert client.post(url, data={"unsubscribed_all": "on"}).status_code == 403
    assert client.post(url, data={"unsubscribed_all": "on", "csrf": "0" * 32}).status_code == 403
    assert client.post(url, data={"unsubscribed_all": "on", "csrf": "\u00e9" * 32}).status_code == 403  # not a 500
    assert _pref(db_url, "sam@example.com") is None


def test_an_unsubscribe_token_spelled_any_other_way_is_404(client, sent_message, token, db_url, events):
    mid = sent_message("sam@example.com")
    good = token(Purpose.UNSUBSCRIBE, mid)
    for other in (f"{good}~", f"{good}%3D%3D", f"{good[:8]}.{good[8:]}"):
        assert client.get(f"/u/{other}").status_code == 404
        assert client.post(f"/u/{other}", data={"List-Unsubscribe": "One-Click"}).status_code == 404
    assert _pref(db_url, "sam@example.com") is None and events(mid) == []


def test_tokens_for_other_routes_do_not_work_here(client, sent_message, token):
    mid = sent_message()
    assert client.post(f"/u/{token(Purpose.PREFERENCES, mid)}", data={"scope": "all"}).status_code == 404
    assert client.get(f"/p/{token(Purpose.UNSUBSCRIBE, mid)}").status_code == 404
