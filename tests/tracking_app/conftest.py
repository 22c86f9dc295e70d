"""Tracker fixtures: the app on each database, a test client, a sent message and its tokens, a real gunicorn."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from db.models import EmailMessage, EmailTrackingEvent
from db.session import transaction
from tracking_app.app import create_app
from tutormax.tokens import Purpose

ROOT = Path(__file__).resolve().parents[2]


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
def reminder(platform, db_url, now) -> tuple[int, int, int]:
    """A feedback reminder planned for a real session: (message_id, session_id, student_id)."""
    from flows.feedback_reminders import plan_feedback_reminders

    student = platform.student()
    session_id = platform.session(platform.tutor(), student, ended_ago=timedelta(hours=30))
    plan_feedback_reminders.fn(now)
    with transaction(db_url) as s:
        mid = s.scalar(select(EmailMessage.message_id))
    return mid, session_id, student


@pytest.fixture
def token(app):
    def make(purpose: Purpose, message_id: int, link: int = 0, extra: bytes = b"") -> str:
        return app.config["LINKS"].signer.sign(purpose, message_id, link, extra)

    return make


@pytest.fixture
def events(db_url):
    """A message's tracking events as stored, oldest first."""

    def read(mid: int) -> list[EmailTrackingEvent]:
        with transaction(db_url) as s:
            return list(s.scalars(select(EmailTrackingEvent).where(EmailTrackingEvent.message_id == mid)
                                  .order_by(EmailTrackingEvent.event_id)))

    return read


@pytest.fixture
def stored_message(db_url):
    """A message's row as stored, counters included."""

    def read(mid: int) -> EmailMessage:
        with transaction(db_url) as s:
            return s.get(EmailMessage, mid)

    return read


@pytest.fixture
def commit_answer_lost(monkeypatch):
    """Call to make every commit go through and then raise as if the connection dropped before its
    answer; returns the undo."""
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.orm import Session

    commit = Session.commit

    def commit_then_lose_the_connection(session):
        commit(session)
        raise OperationalError("COMMIT", None, ConnectionError("lost"))

    def lose():
        monkeypatch.setattr(Session, "commit", commit_then_lose_the_connection)
        return monkeypatch.undo

    return lose


@contextmanager
def _serving(db_url, tmp_path, **env):
    """The tracker under gunicorn with its own config on a free loopback port; yields its base URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": db_url, "TUTORMAX_VAR_DIR": str(tmp_path), "TRACKER_WORKERS": "2",
           "TRACKER_BIND": f"127.0.0.1:{port}", **env}
    # a file, not a pipe nobody reads: a pipe that fills up (tracebacks) would stall the workers
    with open(tmp_path / "gunicorn.log", "wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(ROOT / "tracking_app/gunicorn.conf.py"),
                                   "tracking_app.wsgi:app"], cwd=ROOT, env=env, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def serving():
    """`with serving(db_url, tmp_path, **env) as base_url:` runs the tracker under a real gunicorn."""
    return _serving
