"""The tracker under a real gunicorn, driven over HTTP on loopback."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, update

from db.models import EmailMessage, EmailTrackingEvent, SurveyResponse
from db.session import transaction
from tutormax.links import Links
from tutormax.settings import load_settings
from tutormax.tokens import Purpose

CONCURRENT_OPENS = 64


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_gunicorn_serves_pixel_click_and_one_click_unsubscribe(db_url, sent_message, tmp_path, serving):
    mid = sent_message("sam@example.com")
    with serving(db_url, tmp_path) as base:
        links = Links(load_settings())
        token = links.signer.sign
        pixel = urllib.request.urlopen(urllib.request.Request(
            f"{base}/o/{token(Purpose.OPEN, mid)}.gif", headers={"User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1)"}))
        assert pixel.status == 200 and pixel.headers["Content-Type"] == "image/gif"
        # opens in flight together share a commit (group commit): every one is counted, once
        def fetch(_):
            with urllib.request.urlopen(f"{base}/o/{token(Purpose.OPEN, mid)}.gif", timeout=30) as response:
                return response.status

        with ThreadPoolExecutor(max_workers=16) as pool:
            assert set(pool.map(fetch, range(CONCURRENT_OPENS))) == {200}
        opener = urllib.request.build_opener(NoRedirect)
        try:
            opener.open(f"{base}/c/{token(Purpose.CLICK, mid, 1, b'cta' + bytes([10]) + b'https://example.com/a')}")
            raise AssertionError("expected a redirect")
        except urllib.error.HTTPError as redirect:
            assert redirect.code == 302 and redirect.headers["Location"] == "https://example.com/a"
        unsubscribed = urllib.request.urlopen(urllib.request.Request(
            f"{base}/u/{token(Purpose.UNSUBSCRIBE, mid)}", data=urllib.parse.urlencode({"List-Unsubscribe": "One-Click"}).encode()))
        assert unsubscribed.status == 200
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{base}/c/not-a-token")
        assert missing.value.code == 404
    with transaction(db_url) as s:
        kinds = sorted(e.event_type for e in s.scalars(select(EmailTrackingEvent)))
        message = s.get(EmailMessage, mid)
    assert kinds == ["clicked"] + ["opened"] * (1 + CONCURRENT_OPENS) + ["unsubscribed"]
    assert (message.open_count, message.click_count) == (1 + CONCURRENT_OPENS, 1)
    assert message.unsubscribed_at is not None


def test_a_concerning_survey_answer_reaches_prefect_from_a_gevent_worker(db_url, platform, enqueue, tmp_path,
                                                                         prefect_harness, serving):
    """Prefect's event client runs a thread with its own event loop; under gevent that thread is a greenlet."""
    from prefect.settings import get_current_settings

    api = get_current_settings().api.url
    tutor = platform.tutor()
    session_id = platform.session(tutor, platform.student(), ended_ago=timedelta(hours=3))
    mid = enqueue("tutor@example.com", entity_id=session_id)
    with transaction(db_url) as s:
        s.execute(update(EmailMessage).where(EmailMessage.message_id == mid).values(recipient_id=tutor))
    survey = Links(load_settings()).signer.sign(Purpose.SURVEY, mid)
    # the Prefect server lives for the whole session, and the other database's run files the same ids
    since = datetime.now(timezone.utc).isoformat()
    with serving(db_url, tmp_path, PREFECT_API_URL=api) as base:
        answer = urllib.request.urlopen(f"{base}/s/{survey}", data=urllib.parse.urlencode(
            {"rating": "1", "engaged": "no"}).encode(), timeout=30)
        assert answer.status == 200
    with transaction(db_url) as s:
        survey_id = s.scalar(select(SurveyResponse.id))
    query = json.dumps({"filter": {"occurred": {"since": since}, "event": {"name": ["tutormax.survey.concerning"]},
                                   "resource": {"id": [f"tutormax.survey.{survey_id}"]}}}).encode()
    for _ in range(100):  # the server files events a moment after it receives them
        request = urllib.request.Request(f"{api}/events/filter", data=query, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            events = json.load(response)["events"]
        if events:
            break
        time.sleep(0.1)
    assert [e["payload"] for e in events] == [{"survey_id": survey_id}]
