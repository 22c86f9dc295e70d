"""Monthly summaries under Prefect: last month to every active student, a child's to the consenting parent, once a
month."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from flows.monthly_summaries import monthly_summaries

FIRST = datetime(2026, 12, 1, 14, tzinfo=timezone.utc)  # the 1st, 09:00 EST, when the schedule runs it
COVERS = "the November 2026, Sun 2026-11-01 to Mon 2026-11-30"


@pytest.fixture
def month(platform):
    """November: Sam had two sessions and Mia (a child whose parent consents) one; Zoe's only one was in October.
    Sam's id."""
    tara, sam = platform.tutor(), platform.student(name="Sam Student")
    mia = platform.student(age=10, name="Mia", parent_email="parent@example.org", parent_consent=True)
    platform.session(tara, sam, ended_ago=timedelta(days=1))
    platform.session(tara, sam, ended_ago=timedelta(days=2), number=2)
    platform.session(tara, mia, ended_ago=timedelta(days=3))
    platform.session(tara, platform.student(name="Zoe"), ended_ago=timedelta(days=30))
    return sam


def test_dry_run_writes_and_sends_nothing(run_flow, waiting, month, outbox, received, summary_of, heading_of):
    run = run_flow(monthly_summaries, now=FIRST, dry_run=True)
    assert run.figures == summary_of("monthly-summaries", FIRST, COVERS, dry_run=True, planned=2)
    assert run.name == "monthly-summaries 2026-12-01 09:00 EST (dry run)"
    assert run.heading == heading_of("monthly-summaries", "Tue 2026-12-01 09:00 EST", COVERS, dry_run=True)
    assert (outbox(), received()) == ([waiting], [])


def test_each_student_gets_one_summary_a_month(run_flow, waiting, month, outbox, received, summary_of, heading_of):
    first = run_flow(monthly_summaries, now=FIRST)
    assert first.figures == summary_of("monthly-summaries", FIRST, COVERS, planned=2, sent=2)
    assert first.name == "monthly-summaries 2026-12-01 09:00 EST"
    assert first.heading == heading_of("monthly-summaries", "Tue 2026-12-01 09:00 EST", COVERS)
    sent = [waiting, ("monthly_summary", "parent", "parent@example.org", "sent", None),
            ("monthly_summary", "student", f"student{month}@example.com", "sent", None)]
    delivered = [("parent@example.org", "Mia's November 2026 at TutorMax: 1 session"),
                 (f"student{month}@example.com", "Your November 2026 at TutorMax: 2 sessions")]
    assert (outbox(), received()) == (sent, delivered)

    again = run_flow(monthly_summaries, now=FIRST)
    later = run_flow(monthly_summaries, now=FIRST + timedelta(minutes=5))
    assert again.figures == summary_of("monthly-summaries", FIRST, COVERS)
    assert later.figures == summary_of("monthly-summaries", FIRST + timedelta(minutes=5), COVERS)
    assert later.name == "monthly-summaries 2026-12-01 09:05 EST"
    assert (outbox(), received()) == (sent, delivered)
