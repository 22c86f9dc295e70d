"""Check-in escalations: a concerning answer reaches the manager once, by the event or the sweep."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from db.models import EmailMessage, SurveyResponse
from db.session import transaction
from tasks.plan_checkins import plan_checkin_escalations


def _messages(url, template_type):
    with transaction(url) as s:
        return list(s.scalars(select(EmailMessage).where(EmailMessage.template_type == template_type)))


def _concern(platform, db_url, enqueue, concerning=True):
    tutor = platform.tutor()
    session_id = platform.session(tutor, platform.student(name="Mia"), ended_ago=timedelta(hours=3))
    mid = enqueue("tutor@example.com", entity_id=session_id)
    with transaction(db_url) as s:
        response = SurveyResponse(message_id=mid, tutor_id=tutor, session_id=session_id, rating=1, student_engaged="no",
                                  concern=True, comment="Student was upset", concerning=concerning)
        s.add(response)
        s.flush()
        return response.id


def test_escalation_once_event_then_sweep(platform, db_url, now, enqueue):
    survey = _concern(platform, db_url, enqueue)
    calm = _concern(platform, db_url, enqueue, concerning=False)
    assert plan_checkin_escalations.fn(now, survey_id=survey)["queued"] == 1    # the event path
    assert plan_checkin_escalations.fn(now, survey_id=survey)["queued"] == 0    # a duplicate event
    assert plan_checkin_escalations.fn(now)["queued"] == 0                      # the sweep finds nothing new
    assert plan_checkin_escalations.fn(now, survey_id=calm)["queued"] == 0      # not concerning: no escalation
    (message,) = _messages(db_url, "intervention_notification")
    assert message.recipient_type == "manager" and message.message_metadata["reason"] == "first_session_concern"
    assert message.message_metadata["survey_comment"] == "Student was upset"


def test_escalation_once_sweep_then_event(platform, db_url, now, enqueue):
    first = _concern(platform, db_url, enqueue)
    _concern(platform, db_url, enqueue)
    assert plan_checkin_escalations.fn(now)["queued"] == 2                      # a lost event: the sweep catches both
    assert plan_checkin_escalations.fn(now, survey_id=first)["queued"] == 0     # the late event changes nothing
    assert len(_messages(db_url, "intervention_notification")) == 2
