"""Rescheduling alerts: 2 vs 3 in 7 days, 5 vs 6 in 14, tutor-initiated only, cooldown, effect."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select

from db.models import EmailMessage, EmailWorkflowState
from db.session import transaction
from tasks.plan_alerts import measure_intervention_effect, plan_rescheduling_alerts


def _sent(url):
    with transaction(url) as s:
        return Counter(s.scalars(select(EmailMessage.template_type)))


def _tutor_with(platform, now, recent: int, older: int = 0, by: str = "tutor") -> int:
    tutor = platform.tutor()
    session_id = platform.session(tutor, platform.student(), ended_ago=timedelta(days=1))
    for i in range(recent):  # within the last 7 days
        platform.reschedule(tutor, session_id, now - timedelta(days=1, hours=i), by)
    for i in range(older):   # 8-13 days ago: in 14 days, not in 7
        platform.reschedule(tutor, session_id, now - timedelta(days=8, hours=i), by)
    return tutor


@pytest.mark.parametrize(("recent", "older", "expected"), [
    (2, 0, {}),
    (3, 0, {"rescheduling_alert": 1}),
    (3, 2, {"rescheduling_alert": 1}),                                  # 5 in 14 days: no manager
    (3, 3, {"rescheduling_alert": 1, "intervention_notification": 1}),  # 6 in 14 days: manager too
    (2, 5, {}),                                                         # 7 in 14 but only 2 in 7: no alert
])
def test_thresholds(platform, db_url, now, recent, older, expected):
    _tutor_with(platform, now, recent, older)
    plan_rescheduling_alerts.fn(now)
    assert _sent(db_url) == expected


def test_student_reschedules_do_not_count(platform, db_url, now):
    _tutor_with(platform, now, 4, by="student")
    assert plan_rescheduling_alerts.fn(now)["queued"] == 0


def test_window_edges(platform, db_url, now):
    tutor = platform.tutor()
    session_id = platform.session(tutor, platform.student(), ended_ago=timedelta(days=1))
    platform.reschedule(tutor, session_id, now - timedelta(days=7))            # just outside (now-7d, now]
    platform.reschedule(tutor, session_id, now - timedelta(days=6, hours=23))
    platform.reschedule(tutor, session_id, now)
    assert plan_rescheduling_alerts.fn(now)["queued"] == 0
    platform.reschedule(tutor, session_id, now - timedelta(hours=1))
    assert plan_rescheduling_alerts.fn(now)["queued"] == 1


def test_cooldown_one_alert_per_tutor_per_seven_days(platform, db_url, now):
    _tutor_with(platform, now, 5, 3)
    assert plan_rescheduling_alerts.fn(now)["queued"] == 2
    assert plan_rescheduling_alerts.fn(now)["queued"] == 0                       # rerun, same day
    assert plan_rescheduling_alerts.fn(now + timedelta(days=1))["queued"] == 0   # still cooling down
    assert plan_rescheduling_alerts.fn(now + timedelta(days=6, hours=23))["queued"] == 0
    assert _sent(db_url) == {"rescheduling_alert": 1, "intervention_notification": 1}


def test_effect_is_measured_fourteen_days_on(platform, db_url, now):
    tutor = _tutor_with(platform, now, 4)
    plan_rescheduling_alerts.fn(now)
    assert measure_intervention_effect.fn(now + timedelta(days=13)) == []
    (effect,) = measure_intervention_effect.fn(now + timedelta(days=14))
    assert (effect["tutor_id"], effect["before_reschedules"], effect["after_reschedules"]) == (tutor, 4, 0)
    assert effect["before_rate"] == 4.0 and effect["after_rate"] is None  # no sessions scheduled after
    assert measure_intervention_effect.fn(now + timedelta(days=15)) == []  # measured once, stored
    with transaction(db_url) as s:
        state = s.scalar(select(EmailWorkflowState).where(EmailWorkflowState.workflow_type == "rescheduling_alert"))
    assert state.status == "completed" and state.context_data["effect"]["before_reschedules"] == 4
