"""Weekly digests under Prefect: last week to every active tutor and student, a child's to the consenting parent,
once a week."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from flows.weekly_digests import weekly_digests

MONDAY = datetime(2026, 11, 23, 14, tzinfo=timezone.utc)  # 09:00 EST, when the schedule runs it
COVERS = "the week of November 16, Mon 2026-11-16 to Sun 2026-11-22"


@pytest.fixture
def week(platform):
    """Last week: Tara taught Sam twice (one rated 4), Mia (a child whose parent consents) and Leo (a child with no
    parent's address); Zoe's only session was the week before. (Tara's id, Sam's id)."""
    tara, sam = platform.tutor("Tara Tutor"), platform.student(name="Sam Student")
    mia = platform.student(age=10, name="Mia", parent_email="parent@example.org", parent_consent=True)
    leo = platform.student(age=9, name="Leo")
    rated = platform.session(tara, sam, ended_ago=timedelta(days=1))
    platform.feedback(rated, sam, rating=4)
    platform.session(tara, sam, ended_ago=timedelta(days=2), number=2)
    platform.session(tara, mia, ended_ago=timedelta(days=3))
    platform.session(tara, leo, ended_ago=timedelta(days=3))
    platform.session(tara, platform.student(name="Zoe"), ended_ago=timedelta(days=8))
    return tara, sam


def test_dry_run_writes_and_sends_nothing(run_flow, waiting, week, outbox, received, summary_of, heading_of):
    run = run_flow(weekly_digests, now=MONDAY, dry_run=True)
    assert run.figures == summary_of("weekly-digests", MONDAY, COVERS, dry_run=True, planned=3, skipped=1)
    assert run.name == "weekly-digests 2026-11-23 09:00 EST (dry run)"
    assert run.heading == heading_of("weekly-digests", "Mon 2026-11-23 09:00 EST", COVERS, dry_run=True)
    assert (outbox(), received()) == ([waiting], [])


def test_each_recipient_gets_one_digest_a_week(run_flow, waiting, week, outbox, received, summary_of, heading_of):
    tara, sam = week
    first = run_flow(weekly_digests, now=MONDAY)
    assert first.figures == summary_of("weekly-digests", MONDAY, COVERS, planned=3, skipped=1, sent=3)
    assert first.name == "weekly-digests 2026-11-23 09:00 EST"
    assert first.heading == heading_of("weekly-digests", "Mon 2026-11-23 09:00 EST", COVERS)
    sent = [waiting, ("parent_notification", "parent", None, "skipped", "under_13_no_parent_email"),
            ("parent_notification", "parent", "parent@example.org", "sent", None),
            ("weekly_digest", "student", f"student{sam}@example.com", "sent", None),
            ("weekly_digest", "tutor", f"tutor{tara}@example.com", "sent", None)]
    delivered = [("parent@example.org", "Mia's week at TutorMax: 1 session"),
                 (f"student{sam}@example.com", "Your week at TutorMax: 2 sessions, 4.0 average rating"),
                 (f"tutor{tara}@example.com", "Your week at TutorMax: 4 sessions, 4.0 average rating")]
    assert (outbox(), received()) == (sent, delivered)

    again = run_flow(weekly_digests, now=MONDAY)
    later = run_flow(weekly_digests, now=MONDAY + timedelta(minutes=5))
    assert again.figures == summary_of("weekly-digests", MONDAY, COVERS)
    assert later.figures == summary_of("weekly-digests", MONDAY + timedelta(minutes=5), COVERS)
    assert later.name == "weekly-digests 2026-11-23 09:05 EST"
    assert (outbox(), received()) == (sent, delivered)
