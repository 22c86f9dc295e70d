"""Tracker fixtures: the app on each database, a test client, a sent message and its tokens."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import update

from db.models import EmailMessage
from db.session import transaction
from tracking_app import create_app
from tutormax.tokens import Purpose


@pytest.fixture
def app(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("TUTORMAX_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("ANALYTICS_API_TOKEN", "api-token-for-tests")
    app = create_app({"database_url": db_url})
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def sent_message(enqueue, db_url):
    """A feedback reminder sent an hour ago; returns (message_id, token maker)."""

    def make(email: str = "sam@example.com", sent_ago: timedelta = timedelta(hours=1), **meta) -> int:
        mid = enqueue(email)
        with transaction(db_url) as s:
            s.execute(update(EmailMessage).where(EmailMessage.message_id == mid).values(
                status="sent", sent_at=datetime.now(timezone.utc) - sent_ago))
        return mid

    return make


@pytest.fixture
def token(app):
    def make(purpose: Purpose, message_id: int, link: int = 0, extra: bytes = b"") -> str:
        return app.config["LINKS"].signer.sign(purpose, message_id, link, extra)

    return make
