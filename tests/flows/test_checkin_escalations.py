"""Check-in escalations under Prefect: a concerning answer reaches the tutor's manager once, by the event or the
sweep."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from db.models import EmailMessage, SurveyResponse
from db.session import transaction
from flows.checkin_escalations import checkin_escalations
from flows.first_session_checkins import plan_first_session_checkins

SWEEP = "every concerning check-in answer not yet escalated"


@pytest.fixture
def answers(platform, db_url, now):
    """Tara's check-in answer is concerning, Theo's is not: (Tara's id, Theo's id, the concerning survey's id)."""
    tara, theo = platform.tutor("Tara Tutor"), platform.tutor("Theo Tutor")
    sessions = {tara: platform.session(tara, platform.student(name="Mia"), ended_ago=timedelta(hours=3)),
                theo: platform.session(theo, platform.student(name="Leo"), ended_ago=timedelta(hours=3))}
    plan_first_session_checkins.fn(now)  # the check-in emails the answers came from (left queued)
    with transaction(db_url) as s:
        checkins = dict(s.execute(select(EmailMessage.recipient_id, EmailMessage.message_id)).all())
        concerning = SurveyResponse(message_id=checkins[tara], tutor_id=tara, session_id=sessions[tara], rating=1,
                                    student_engaged="no", concern=True, comment="Mia was upset", concerning=True)
        s.add_all([concerning, SurveyResponse(message_id=checkins[theo], tutor_id=theo, session_id=sessions[theo],
                                              rating=4, student_engaged="yes", concerning=False)])
        s.flush()
        return tara, theo, concerning.id


def _checkins(tara, theo):
    # the check-ins stay queued: this flow sends its own type only
    return [("first_session_checkin", "tutor", f"tutor{tara}@example.com", "queued", None),
            ("first_session_checkin", "tutor", f"tutor{theo}@example.com", "queued", None)]


def test_dry_run_writes_and_sends_nothing(run_flow, answers, now, outbox, received, summary_of, heading_of):
    tara, theo, _ = answers
    run = run_flow(checkin_escalations, now=now, dry_run=True)
    assert run.figures == summary_of("checkin-escalations", now, SWEEP, dry_run=True, planned=1)
    assert run.name == "checkin-escalations 2026-11-20 10:00 EST (dry run)"
    assert run.heading == heading_of("checkin-escalations", "Fri 2026-11-20 10:00 EST", SWEEP, dry_run=True)
    assert (outbox(), received()) == (_checkins(tara, theo), [])


def test_the_event_escalates_once_and_the_sweep_finds_nothing_more(run_flow, answers, now, outbox, received,
                                                                    summary_of, heading_of):
    tara, theo, survey = answers
    event = run_flow(checkin_escalations, survey_id=survey, now=now)
    assert event.figures == summary_of("checkin-escalations", now, f"check-in survey {survey}", planned=1, sent=1)
    assert event.name == "checkin-escalations 2026-11-20 10:00 EST"
    assert event.heading == heading_of("checkin-escalations", "Fri 2026-11-20 10:00 EST", f"check-in survey {survey}")
    manager = f"mona{tara - 1}@example.com"  # Platform.tutor() makes each tutor's manager just before the tutor
    sent = _checkins(tara, theo) + [("intervention_notification", "manager", manager, "sent", None)]
    delivered = [(manager, "Check in with Tara Tutor: first session with Mia flagged")]
    assert (outbox(), received()) == (sent, delivered)

    duplicate = run_flow(checkin_escalations, survey_id=survey, now=now)
    sweep = run_flow(checkin_escalations, now=now + timedelta(minutes=5))
    assert duplicate.figures == summary_of("checkin-escalations", now, f"check-in survey {survey}")
    assert sweep.figures == summary_of("checkin-escalations", now + timedelta(minutes=5), SWEEP)
    assert sweep.name == "checkin-escalations 2026-11-20 10:05 EST"
    assert (outbox(), received()) == (sent, delivered)
