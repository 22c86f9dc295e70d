"""The tracker with its database down: events go to the journal and are ingested later, once; pages say so."""

from __future__ import annotations

from sqlalchemy import select

from db.models import EmailMessage, EmailTrackingEvent
from db.session import transaction
from tracking_app.app import create_app
from tracking_app.pixel import GIF
from tutormax.tokens import Purpose


def test_events_survive_a_database_outage(app, db_url, sent_message, token, tmp_path):
    mid = sent_message()
    open_url = f"/o/{token(Purpose.OPEN, mid)}.gif"
    click_url = f"/c/{token(Purpose.CLICK, mid, 1, b'cta' + bytes([10]) + b'https://example.com/x')}"

    down = create_app({"database_url": "postgresql+psycopg2://postgres@127.0.0.1:1/unreachable"})
    down.config["LINKS"] = app.config["LINKS"]
    client = down.test_client()
    assert client.get(open_url).data == GIF
    response = client.get(click_url)
    assert response.status_code == 302 and response.headers["Location"] == "https://example.com/x"
    journal = down.config["JOURNAL"]
    assert journal.path.exists() and len(journal.path.read_text().splitlines()) == 2

    first = journal.ingest(db_url)
    assert (first["events"], first["inserted"]) == (2, 2)
    assert journal.pending() == []
    with transaction(db_url) as s:
        message = s.get(EmailMessage, mid)
        kinds = sorted(e.event_type for e in s.scalars(select(EmailTrackingEvent)))
    assert kinds == ["clicked", "opened"] and (message.open_count, message.click_count) == (1, 1)


def test_pages_that_need_the_database_answer_503_when_it_is_down(app, sent_message, token):
    mid = sent_message()
    down = create_app({"database_url": "postgresql+psycopg2://postgres@127.0.0.1:1/unreachable"})
    down.config["LINKS"] = app.config["LINKS"]
    response = down.test_client().get(f"/p/{token(Purpose.PREFERENCES, mid)}")
    assert response.status_code == 503 and b"try again" in response.data


def test_a_one_click_unsubscribe_during_an_outage_is_applied_later(app, db_url, sent_message, token):
    from db import tracking

    mid = sent_message("sam@example.com")
    down = create_app({"database_url": "postgresql+psycopg2://postgres@127.0.0.1:1/unreachable"})
    down.config["LINKS"] = app.config["LINKS"]
    response = down.test_client().post(f"/u/{token(Purpose.UNSUBSCRIBE, mid)}", data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    journal = down.config["JOURNAL"]
    journal.ingest(db_url)
    journal.ingest(db_url)
    with transaction(db_url) as s:
        assert tracking.preference(s, "sam@example.com").feedback_reminders is False
        assert [e.event_type for e in s.scalars(select(EmailTrackingEvent))] == ["unsubscribed"]
