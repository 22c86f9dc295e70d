"""The demo platform: deterministic, realistic in the shares the automations depend on."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from db.demo_data import PlatformSize, generate_platform
from db.models import Base, Feedback, Student, TutoringSession
from db.queries import due_feedback_reminders
from db.session import get_engine, transaction
from tasks.recipients import age_on

NOW = datetime(2026, 11, 27, 15, tzinfo=timezone.utc)
SMALL = PlatformSize(managers=3, tutors=30, students=300, sessions=3000, days=60)


def _fingerprint(url: str) -> str:
    digest = hashlib.sha256()
    with get_engine(url).connect() as conn:
        for table in Base.metadata.sorted_tables:
            if table.name.startswith("email_"):
                continue
            for row in conn.execute(select(table).order_by(*table.primary_key.columns)):
                digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()


def test_same_seed_same_platform(db_url, empty_database):
    generate_platform(db_url, size=SMALL, seed=7, now=NOW)
    first = _fingerprint(db_url)
    empty_database(db_url)
    generate_platform(db_url, size=SMALL, seed=7, now=NOW)
    assert _fingerprint(db_url) == first
    empty_database(db_url)
    generate_platform(db_url, size=SMALL, seed=8, now=NOW)
    assert _fingerprint(db_url) != first


def test_shares_the_automations_rely_on(db_url):
    counts = generate_platform(db_url, size=SMALL, now=NOW)
    assert counts["tutoring_sessions"] == 3000 and counts["students"] == 300
    with transaction(db_url) as s:
        births = list(s.scalars(select(Student.birth_date)))
        under_13 = sum(age_on(b, NOW.date()) < 13 for b in births) / len(births)
        completed = s.scalar(select(func.count()).where(TutoringSession.status == "completed"))
        rated = s.scalar(select(func.count()).select_from(Feedback))
        due = due_feedback_reminders(s, NOW - timedelta(hours=48), NOW - timedelta(hours=24))
    assert 0.05 < under_13 < 0.15
    assert 0.5 < rated / completed < 0.7
    assert len(due) > 0


def test_refuses_a_database_that_has_data(db_url):
    generate_platform(db_url, size=SMALL, now=NOW)
    with pytest.raises(RuntimeError):
        generate_platform(db_url, size=SMALL, now=NOW)


def test_scales_for_benchmarks():
    # 50 times the default's sessions a day: 50 times its people
    assert PlatformSize.for_sessions(1_000_000) == PlatformSize(managers=600, tutors=10_000, students=100_000,
                                                                sessions=1_000_000, days=60)
