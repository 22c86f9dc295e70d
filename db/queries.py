"""Named selection queries, one function per question the automations ask."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import ARRAY, Row, Text, and_, any_, bindparam, exists, select
from sqlalchemy.orm import Session

from db.events import SessionStatus
from db.models import (
    EmailCampaign,
    EmailPreference,
    EmailWorkflowState,
    Feedback,
    Manager,
    Student,
    SurveyResponse,
    Tutor,
    TutoringSession,
)

FEEDBACK_REMINDER_WORKFLOW = "feedback_reminder"
FEEDBACK_INVITATION_WORKFLOW = "feedback_invitation"
PAGE = 5000

# the columns tasks.recipients' audiences find a recipient by, under their conventional names
STUDENT_COLUMNS = (Student.id.label("student_id"), Student.name.label("student_name"),
                   Student.email.label("student_email"), Student.birth_date, Student.parent_name, Student.parent_email,
                   Student.parent_consent)
TUTOR_COLUMNS = (Tutor.id.label("tutor_id"), Tutor.name.label("tutor_name"), Tutor.email.label("tutor_email"))


def due_feedback_reminders(session: Session, earliest: datetime, latest: datetime, *, after_id: int = 0,
                           limit: int = PAGE) -> Sequence[Row]:
    """Completed sessions that ended between earliest and latest, with no feedback and no reminder yet.

    Both ends are inclusive (the reminder's window is 24-48 hours before now: a session that ended
    exactly 24:00 or 48:00 ago is due). Keyset-paginated on the session id, so a backlog streams in pages.
    """
    return _unrated_sessions(session, FEEDBACK_REMINDER_WORKFLOW, earliest, latest, after_id, limit)


def due_feedback_invitations(session: Session, earliest: datetime, latest: datetime, *, after_id: int = 0,
                             limit: int = PAGE) -> Sequence[Row]:
    """Completed sessions that ended between earliest and latest, with no feedback and no invitation yet."""
    return _unrated_sessions(session, FEEDBACK_INVITATION_WORKFLOW, earliest, latest, after_id, limit)


def _unrated_sessions(session: Session, workflow: str, earliest: datetime, latest: datetime, after_id: int,
                      limit: int) -> Sequence[Row]:
    no_feedback = ~exists().where(Feedback.session_id == TutoringSession.id)
    query = (
        select(
            TutoringSession.id.label("session_id"),
            TutoringSession.ended_at.label("session_ended_at"),
            TutoringSession.subject.label("subject_name"),
            Tutor.name.label("tutor_name"),
            *STUDENT_COLUMNS,
        )
        .join(Tutor, Tutor.id == TutoringSession.tutor_id)
        .join(Student, Student.id == TutoringSession.student_id)
        .where(
            TutoringSession.status == SessionStatus.COMPLETED,
            TutoringSession.ended_at >= earliest,
            TutoringSession.ended_at <= latest,
            TutoringSession.id > after_id,
            no_feedback,
            not_planned(workflow, "session", TutoringSession.id),
        )
        .order_by(TutoringSession.id)
        .limit(limit)
    )
    return session.execute(query).all()


def preferences_for(session: Session, emails: Iterable[str]) -> dict[str, EmailPreference]:
    """Stored preferences by address; addresses are stored lower-cased (chunked under SQLite's parameter limit)."""
    wanted = sorted({e.lower() for e in emails if e})
    found: dict[str, EmailPreference] = {}
    if session.get_bind().dialect.name == "postgresql":
        # one array parameter, not thousands: compiling an IN list of a campaign page's 5,000
        # addresses cost more than running the query
        query = select(EmailPreference).where(EmailPreference.email == any_(bindparam("emails", type_=ARRAY(Text))))
        for pref in session.scalars(query, {"emails": wanted}):
            found[pref.email.lower()] = pref
        return found
    for start in range(0, len(wanted), 500):  # under SQLite's parameter limit
        chunk = wanted[start : start + 500]
        for pref in session.scalars(select(EmailPreference).where(EmailPreference.email.in_(chunk))):
            found[pref.email.lower()] = pref
    return found


CHECKIN_WORKFLOW = "first_session_checkin"
ESCALATION_WORKFLOW = "checkin_escalation"


def not_planned(workflow: str, entity_type: str, entity_id):
    """No email of this workflow was planned for this entity yet (the planner's idempotency key says the same)."""
    return ~exists().where(and_(EmailWorkflowState.workflow_type == workflow, EmailWorkflowState.entity_type == entity_type,
                                EmailWorkflowState.entity_id == entity_id))


def due_first_session_checkins(session: Session, earliest: datetime, latest: datetime, *, after_id: int = 0,
                               limit: int = PAGE) -> Sequence[Row]:
    """First sessions of a tutor with a student that ended between earliest and latest, not checked in on yet.

    Both ends inclusive. Only completed sessions: a no-show or a cancellation never ended, so it never qualifies.
    """
    s = TutoringSession
    return session.execute(
        select(s.id.label("session_id"), s.ended_at.label("session_ended_at"), s.subject.label("subject_name"),
               *TUTOR_COLUMNS, Student.name.label("student_name"))
        .join(Tutor, Tutor.id == s.tutor_id).join(Student, Student.id == s.student_id)
        .where(s.status == SessionStatus.COMPLETED, s.session_number == 1,
               s.ended_at >= earliest, s.ended_at <= latest, s.id > after_id,
               not_planned(CHECKIN_WORKFLOW, "session", s.id))
        .order_by(s.id).limit(limit)
    ).all()


def unescalated_concerns(session: Session, *, survey_id: int | None = None, after_id: int = 0,
                         limit: int = PAGE) -> Sequence[Row]:
    """Concerning check-in answers whose manager has not been told yet (one survey, or all for the sweep)."""
    r = SurveyResponse
    query = (
        select(r.id.label("survey_id"), r.rating, r.comment, r.submitted_at, Tutor.id.label("tutor_id"),
               Tutor.name.label("tutor_name"), Manager.id.label("manager_id"), Manager.name.label("manager_name"),
               Manager.email.label("manager_email"), Student.name.label("student_name"))
        .join(Tutor, Tutor.id == r.tutor_id).join(Manager, Manager.id == Tutor.manager_id)
        .outerjoin(TutoringSession, TutoringSession.id == r.session_id)
        .outerjoin(Student, Student.id == TutoringSession.student_id)
        .where(r.concerning.is_(True), r.id > after_id, not_planned(ESCALATION_WORKFLOW, "survey", r.id))
        .order_by(r.id).limit(limit)
    )
    if survey_id is not None:
        query = query.where(r.id == survey_id)
    return session.execute(query).all()


def active_ab_campaigns(session: Session) -> dict[str, EmailCampaign]:
    """A/B tests running on automations, by the template type they split."""
    rows = session.scalars(select(EmailCampaign).where(EmailCampaign.ab_test_enabled.is_(True),
                                                       EmailCampaign.status.in_(["active", "sending"])))
    return {c.template_type: c for c in rows}
