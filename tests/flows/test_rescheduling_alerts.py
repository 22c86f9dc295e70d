"""Rescheduling alerts under Prefect: tutors at 3 in 7 days, their managers at 6 in 14, once a week at most; the
alerts' effect measured two weeks on."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flows.rescheduling_alerts import rescheduling_alerts

COVERS = "tutors' reschedules in the 7 and 14 days to Fri 2026-11-20 10:00 EST"
ALERT = "We noticed you've rescheduled often. Need help?"


@pytest.fixture
def tutors(platform, now):
    """Ana: 3 reschedules in 7 days and 3 more in 14; Ben: 3 in 7; Cal: 2 in 7. Their ids."""
    ids = []
    for name, recent, older in (("Ana Rivera", 3, 3), ("Ben Cho", 3, 0), ("Cal Diaz", 2, 0)):
        tutor = platform.tutor(name)
        session_id = platform.session(tutor, platform.student(), ended_ago=timedelta(days=1))
        for i in range(recent):
            platform.reschedule(tutor, session_id, now - timedelta(days=1, hours=i))
        for i in range(older):
            platform.reschedule(tutor, session_id, now - timedelta(days=8, hours=i))
        ids.append(tutor)
    return ids


def test_dry_run_writes_and_sends_nothing(run_flow, waiting, tutors, now, outbox, received, summary_of, heading_of):
    run = run_flow(rescheduling_alerts, now=now, dry_run=True)
    assert run.figures == {**summary_of("rescheduling-alerts", now, COVERS, dry_run=True, planned=3),
                           "interventions_measured": 0}
    assert run.name == "rescheduling-alerts 2026-11-20 10:00 EST (dry run)"
    assert run.heading == heading_of("rescheduling-alerts", "Fri 2026-11-20 10:00 EST", COVERS, dry_run=True)
    assert (outbox(), received()) == ([waiting], [])


def test_each_tutor_is_alerted_once_a_week_at_most(run_flow, waiting, tutors, now, outbox, received,
                                                   summary_of, heading_of):
    ana, ben, _ = tutors
    first = run_flow(rescheduling_alerts, now=now)
    assert first.figures == {**summary_of("rescheduling-alerts", now, COVERS, planned=3, sent=3),
                             "interventions_measured": 0}
    assert first.name == "rescheduling-alerts 2026-11-20 10:00 EST"
    assert first.heading == heading_of("rescheduling-alerts", "Fri 2026-11-20 10:00 EST", COVERS)
    manager = f"mona{ana - 1}@example.com"  # Platform.tutor() makes each tutor's manager just before the tutor
    sent = [waiting, ("intervention_notification", "manager", manager, "sent", None),
            ("rescheduling_alert", "tutor", f"tutor{ana}@example.com", "sent", None),
            ("rescheduling_alert", "tutor", f"tutor{ben}@example.com", "sent", None)]
    delivered = [(manager, "Check in with Ana Rivera: 6 reschedules in 14 days"),
                 (f"tutor{ana}@example.com", ALERT), (f"tutor{ben}@example.com", ALERT)]
    assert (outbox(), received()) == (sent, delivered)

    again = run_flow(rescheduling_alerts, now=now)
    later = run_flow(rescheduling_alerts, now=now + timedelta(minutes=5))
    assert again.figures == {**summary_of("rescheduling-alerts", now, COVERS), "interventions_measured": 0}
    assert later.figures == {**summary_of("rescheduling-alerts", now + timedelta(minutes=5),
                                          "tutors' reschedules in the 7 and 14 days to Fri 2026-11-20 10:05 EST"),
                             "interventions_measured": 0}
    assert later.name == "rescheduling-alerts 2026-11-20 10:05 EST"
    assert (outbox(), received()) == (sent, delivered)


def test_the_alerts_effect_is_measured_two_weeks_on(run_flow, tutors, now, summary_of):
    run_flow(rescheduling_alerts, now=now)
    later = now + timedelta(days=14)
    measured = run_flow(rescheduling_alerts, now=later)
    assert measured.figures == {**summary_of("rescheduling-alerts", later,
                                             "tutors' reschedules in the 7 and 14 days to Fri 2026-12-04 10:00 EST"),
                                "interventions_measured": 2}  # Ana's and Ben's alerts
