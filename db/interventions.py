"""Rescheduling patterns: who is due an alert, and whether alerts helped."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Row, and_, case, exists, func, select, update
from sqlalchemy.orm import Session

from db.models import EmailWorkflowState, Manager, RescheduleEvent, Tutor, TutoringSession
from db.queries import PAGE

ALERT_WORKFLOW = "rescheduling_alert"
INTERVENTION_WORKFLOW = "rescheduling_intervention"
ALERT_THRESHOLD_7D = 3
INTERVENTION_THRESHOLD_14D = 6
COOLDOWN = timedelta(days=7)
EFFECT_WINDOW = timedelta(days=14)


def due_rescheduling_alerts(session: Session, now: datetime, *, after_id: int = 0, limit: int = PAGE) -> Sequence[Row]:
    """Tutors with >= 3 reschedules of their own in the trailing 7 days and no alert in the last 7 days.

    Windows are (now - 7 days, now] and (now - 14 days, now]; only reschedules the tutor asked for count.
    """
    r = RescheduleEvent
    last_7 = func.sum(case((r.rescheduled_at > now - timedelta(days=7), 1), else_=0))
    cooling = exists().where(and_(EmailWorkflowState.workflow_type == ALERT_WORKFLOW,
                                  EmailWorkflowState.entity_type == "tutor", EmailWorkflowState.entity_id == Tutor.id,
                                  EmailWorkflowState.created_at > now - COOLDOWN))
    return session.execute(
        select(Tutor.id.label("tutor_id"), Tutor.name.label("tutor_name"), Tutor.email.label("tutor_email"),
               Manager.id.label("manager_id"), Manager.name.label("manager_name"), Manager.email.label("manager_email"),
               last_7.label("reschedules_7d"), func.count().label("reschedules_14d"))
        .select_from(r).join(Tutor, Tutor.id == r.tutor_id).outerjoin(Manager, Manager.id == Tutor.manager_id)
        .where(r.initiated_by == "tutor", r.rescheduled_at > now - timedelta(days=14), r.rescheduled_at <= now,
               Tutor.id > after_id, ~cooling)
        .group_by(Tutor.id, Tutor.name, Tutor.email, Manager.id, Manager.name, Manager.email)
        .having(last_7 >= ALERT_THRESHOLD_7D)
        .order_by(Tutor.id).limit(limit)
    ).all()


def alerts_awaiting_effect(session: Session, now: datetime) -> Sequence[EmailWorkflowState]:
    """Alerts whose 14 days afterwards are over and whose effect is not measured yet."""
    w = EmailWorkflowState
    return list(session.scalars(select(w).where(w.workflow_type == ALERT_WORKFLOW, w.status == "triggered",
                                                w.created_at <= now - EFFECT_WINDOW).order_by(w.workflow_id)))


def reschedule_rate(session: Session, tutor_id: int, start: datetime, end: datetime) -> tuple[int, int]:
    """(tutor-initiated reschedules, sessions scheduled) in [start, end)."""
    reschedules = session.scalar(select(func.count()).select_from(RescheduleEvent).where(
        RescheduleEvent.tutor_id == tutor_id, RescheduleEvent.initiated_by == "tutor",
        RescheduleEvent.rescheduled_at >= start, RescheduleEvent.rescheduled_at < end))
    sessions = session.scalar(select(func.count()).select_from(TutoringSession).where(
        TutoringSession.tutor_id == tutor_id, TutoringSession.scheduled_start >= start,
        TutoringSession.scheduled_start < end))
    return int(reschedules or 0), int(sessions or 0)


def store_effect(session: Session, workflow_id: int, effect: dict, now: datetime) -> None:
    """Keep the measured effect on the alert's workflow row and mark it completed."""
    state = session.get(EmailWorkflowState, workflow_id)
    session.execute(update(EmailWorkflowState).where(EmailWorkflowState.workflow_id == workflow_id).values(
        context_data={**(state.context_data or {}), "effect": effect}, status="completed", completed_at=now,
        updated_at=now))
