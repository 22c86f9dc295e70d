"""Performance reports under Prefect: last month's figures to every active tutor, against the month before, once a
month."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from flows.performance_reports import performance_reports

FIRST = datetime(2026, 12, 1, 15, tzinfo=timezone.utc)  # the 1st, 10:00 EST, when the schedule runs it
COVERS = "the November 2026, Sun 2026-11-01 to Mon 2026-11-30"


@pytest.fixture
def tutors(platform):
    """Tara taught two sessions in November and one in October; Ted only in October. Tara's id."""
    tara, ted, sam = platform.tutor("Tara Tutor"), platform.tutor("Ted Tutor"), platform.student()
    platform.session(tara, sam, ended_ago=timedelta(days=1))
    platform.session(tara, sam, ended_ago=timedelta(days=2), number=2)
    platform.session(tara, sam, ended_ago=timedelta(days=30), number=3)
    platform.session(ted, sam, ended_ago=timedelta(days=30), number=4)
    return tara


def test_dry_run_writes_and_sends_nothing(run_flow, waiting, tutors, outbox, received, summary_of, heading_of):
    run = run_flow(performance_reports, now=FIRST, dry_run=True)
    assert run.figures == summary_of("performance-reports", FIRST, COVERS, dry_run=True, planned=1)
    assert run.name == "performance-reports 2026-12-01 10:00 EST (dry run)"
    assert run.heading == heading_of("performance-reports", "Tue 2026-12-01 10:00 EST", COVERS, dry_run=True)
    assert (outbox(), received()) == ([waiting], [])


def test_each_tutor_gets_one_report_a_month(run_flow, waiting, tutors, outbox, received, summary_of, heading_of):
    first = run_flow(performance_reports, now=FIRST)
    assert first.figures == summary_of("performance-reports", FIRST, COVERS, planned=1, sent=1)
    assert first.name == "performance-reports 2026-12-01 10:00 EST"
    assert first.heading == heading_of("performance-reports", "Tue 2026-12-01 10:00 EST", COVERS)
    sent = [waiting, ("performance_report", "tutor", f"tutor{tutors}@example.com", "sent", None)]
    # sessions and hours are up on October; the rest are flat (no feedback, no no-shows, no reschedules)
    delivered = [(f"tutor{tutors}@example.com", "Your November 2026 tutoring report: 2 numbers trending the right way")]
    assert (outbox(), received()) == (sent, delivered)

    again = run_flow(performance_reports, now=FIRST)
    later = run_flow(performance_reports, now=FIRST + timedelta(minutes=5))
    assert again.figures == summary_of("performance-reports", FIRST, COVERS)
    assert later.figures == summary_of("performance-reports", FIRST + timedelta(minutes=5), COVERS)
    assert later.name == "performance-reports 2026-12-01 10:05 EST"
    assert (outbox(), received()) == (sent, delivered)
