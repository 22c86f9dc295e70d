"""Manager digests under Prefect: each manager's tutors last week with their flags, once a week, opt-outs kept."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from db.models import EmailPreference
from db.session import transaction
from flows.manager_digests import manager_digests

MONDAY = datetime(2026, 11, 23, 13, tzinfo=timezone.utc)  # 08:00 EST, when the schedule runs it
COVERS = "the week of November 16, Mon 2026-11-16 to Sun 2026-11-22"


@pytest.fixture
def managers(platform, db_url, now):
    """Three managers of one tutor each: Tara rescheduled 3 times last week, Theo was quiet, Uma's manager opted out
    of digests. The managers' addresses."""
    tara, theo, uma = platform.tutor("Tara Tutor"), platform.tutor("Theo Tutor"), platform.tutor("Uma Tutor")
    session_id = platform.session(tara, platform.student(), ended_ago=timedelta(days=1))
    for i in range(3):
        platform.reschedule(tara, session_id, now - timedelta(days=1, hours=i))
    # Platform.tutor() makes each tutor's manager just before the tutor
    addresses = [f"mona{tutor - 1}@example.com" for tutor in (tara, theo, uma)]
    with transaction(db_url) as s:
        s.add(EmailPreference(email=addresses[2], weekly_digests=False))
    return addresses


def test_dry_run_writes_and_sends_nothing(run_flow, waiting, managers, outbox, received, summary_of, heading_of):
    run = run_flow(manager_digests, now=MONDAY, dry_run=True)
    assert run.figures == summary_of("manager-digests", MONDAY, COVERS, dry_run=True, planned=2, skipped=1)
    assert run.name == "manager-digests 2026-11-23 08:00 EST (dry run)"
    assert run.heading == heading_of("manager-digests", "Mon 2026-11-23 08:00 EST", COVERS, dry_run=True)
    assert (outbox(), received()) == ([waiting], [])


def test_each_manager_gets_one_digest_a_week(run_flow, waiting, managers, outbox, received, summary_of, heading_of):
    taras, theos, umas = managers
    first = run_flow(manager_digests, now=MONDAY)
    assert first.figures == summary_of("manager-digests", MONDAY, COVERS, planned=2, skipped=1, sent=2)
    assert first.name == "manager-digests 2026-11-23 08:00 EST"
    assert first.heading == heading_of("manager-digests", "Mon 2026-11-23 08:00 EST", COVERS)
    sent = [waiting, ("manager_digest", "manager", taras, "sent", None),
            ("manager_digest", "manager", theos, "sent", None),
            ("manager_digest", "manager", umas, "skipped", "category_opt_out")]
    delivered = [(taras, "Your team's week: 1 tutor, 1 item to follow up on"),
                 (theos, "Your team's week: 1 tutor, all clear")]
    assert (outbox(), received()) == (sent, delivered)

    again = run_flow(manager_digests, now=MONDAY)
    later = run_flow(manager_digests, now=MONDAY + timedelta(minutes=5))
    assert again.figures == summary_of("manager-digests", MONDAY, COVERS)
    assert later.figures == summary_of("manager-digests", MONDAY + timedelta(minutes=5), COVERS)
    assert later.name == "manager-digests 2026-11-23 08:05 EST"
    assert (outbox(), received()) == (sent, delivered)
