"""Named selection queries, one function per question the automations ask."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import Row, and_, exists, select
from sqlalchemy.orm import Session

from db.events import SessionStatus
from db.models import EmailPreference, EmailWorkflowState, Feedback, Student, Tutor, TutoringSession

FEEDBACK_REMINDER_WORKFLOW = "feedback_reminder"


def due_feedback_reminders(session: Session, now: datetime, *, after_id: int = 0, limit: int = 5000) -> Sequence[Row]:
    """Completed sessions that ended 24-48 hours before now, with no feedback and no reminder yet.

    Both ends are inclusive: a session that ended exactly 24:00 or 48:00 ago is due.
    Keyset-paginated on the session id so a large backlog streams in batches.
    """
    no_feedback = ~exists().where(Feedback.session_id == TutoringSession.id)
    not_planned = ~exists().where(
        and_(
            EmailWorkflowState.workflow_type == FEEDBACK_REMINDER_WORKFLOW,
            EmailWorkflowState.entity_type == "session",
            EmailWorkflowState.entity_id == TutoringSession.id,
        )
    )
    query = (
        select(
            TutoringSession.id.label("session_id"),
            TutoringSession.ended_at,
            TutoringSession.subject.label("subject_name"),
            Tutor.name.label("tutor_name"),
            Student.id.label("student_id"),
            Student.name.label("student_name"),
            Student.email.label("student_email"),
            Student.birth_date,
            Student.parent_name,
            Student.parent_email,
            Student.parent_consent,
        )
        .join(Tutor, Tutor.id == TutoringSession.tutor_id)
        .join(Student, Student.id == TutoringSession.student_id)
        .where(
            TutoringSession.status == SessionStatus.COMPLETED,
            TutoringSession.ended_at >= now - timedelta(hours=48),
            TutoringSession.ended_at <= now - timedelta(hours=24),
            TutoringSession.id > after_id,
            no_feedback,
            not_planned,
        )
        .order_by(TutoringSession.id)
        .limit(limit)
    )
    return session.execute(query).all()


def preferences_for(session: Session, emails: Iterable[str]) -> dict[str, EmailPreference]:
    """Stored preferences by address; addresses are stored lower-cased (chunked under SQLite's parameter limit)."""
    wanted = sorted({e.lower() for e in emails if e})
    found: dict[str, EmailPreference] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        for pref in session.scalars(select(EmailPreference).where(EmailPreference.email.in_(chunk))):
            found[pref.email.lower()] = pref
    return found
