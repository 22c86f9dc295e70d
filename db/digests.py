"""Named aggregate queries for digests, summaries and reports: one GROUP BY per figure, per page of ids."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, exists, func, select
from sqlalchemy.orm import Session

from db.events import SessionStatus
from db.models import (
    EmailWorkflowState,
    Feedback,
    Manager,
    RescheduleEvent,
    Student,
    SurveyResponse,
    Tutor,
    TutoringSession,
)

PAGE = 500


def _not_planned(workflow: str, entity_type: str, entity_id, step: str):
    w = EmailWorkflowState
    return ~exists().where(and_(w.workflow_type == workflow, w.entity_type == entity_type, w.entity_id == entity_id,
                                w.step == step))


def active_tutors(session: Session, start: datetime, end: datetime, workflow: str, step: str, after_id: int,
                  limit: int = PAGE) -> Sequence[Row]:
    """Tutors with a session scheduled in [start, end) and no email of this workflow for the period yet."""
    s = TutoringSession
    had = exists().where(and_(s.tutor_id == Tutor.id, s.scheduled_start >= start, s.scheduled_start < end))
    return session.execute(
        select(Tutor.id, Tutor.name, Tutor.email, Tutor.manager_id)
        .where(Tutor.id > after_id, had, _not_planned(workflow, "tutor", Tutor.id, step))
        .order_by(Tutor.id).limit(limit)).all()


def active_students(session: Session, start: datetime, end: datetime, workflow: str, step: str, after_id: int,
                    limit: int = PAGE) -> Sequence[Row]:
    """Students with a session scheduled in [start, end) and no email of this workflow for the period yet."""
    s = TutoringSession
    had = exists().where(and_(s.student_id == Student.id, s.scheduled_start >= start, s.scheduled_start < end))
    return session.execute(
        select(Student.id, Student.name, Student.email, Student.birth_date, Student.parent_name, Student.parent_email,
               Student.parent_consent)
        .where(Student.id > after_id, had, _not_planned(workflow, "student", Student.id, step))
        .order_by(Student.id).limit(limit)).all()


def managers_page(session: Session, workflow: str, step: str, after_id: int, limit: int = PAGE) -> Sequence[Row]:
    """Managers without this period's digest yet."""
    return session.execute(
        select(Manager.id, Manager.name, Manager.email)
        .where(Manager.id > after_id, _not_planned(workflow, "manager", Manager.id, step))
        .order_by(Manager.id).limit(limit)).all()


def tutor_ids_of(session: Session, manager_ids: Sequence[int]) -> dict[int, list[Row]]:
    rows = session.execute(select(Tutor.id, Tutor.name, Tutor.manager_id).where(Tutor.manager_id.in_(manager_ids))
                           .order_by(Tutor.id)).all()
    grouped: dict[int, list[Row]] = defaultdict(list)
    for row in rows:
        grouped[row.manager_id].append(row)
    return grouped


def session_stats(session: Session, key: str, ids: Sequence[int], start: datetime, end: datetime) -> dict[int, dict[str, Any]]:
    """Per tutor (key="tutor_id") or student (key="student_id"): completed, no-shows, minutes, sessions listed."""
    s = TutoringSession
    column = getattr(s, key)
    stats: dict[int, dict[str, Any]] = {i: {"sessions_completed": 0, "no_shows": 0, "total_minutes": 0, "sessions": [],
                                            "counterparts": set(), "subjects": set()} for i in ids}
    if not ids:
        return stats
    other = Student.name if key == "tutor_id" else Tutor.name
    rows = session.execute(
        select(column.label("owner"), s.status, s.scheduled_start, s.started_at, s.ended_at, s.subject,
               other.label("counterpart"))
        .join(Student, Student.id == s.student_id).join(Tutor, Tutor.id == s.tutor_id)
        .where(column.in_(ids), s.scheduled_start >= start, s.scheduled_start < end)
        .order_by(column, s.scheduled_start)).all()
    for row in rows:
        entry = stats[row.owner]
        if row.status == SessionStatus.NO_SHOW:
            entry["no_shows"] += 1
        elif row.status == SessionStatus.COMPLETED and row.ended_at and row.started_at:
            minutes = int((row.ended_at - row.started_at).total_seconds() // 60)
            entry["sessions_completed"] += 1
            entry["total_minutes"] += minutes
            entry["counterparts"].add(row.counterpart)
            entry["subjects"].add(row.subject)
            entry["sessions"].append({"start": row.scheduled_start, "counterpart": row.counterpart,
                                      "subject": row.subject, "minutes": minutes})
    return stats


def rating_stats(session: Session, key: str, ids: Sequence[int], start: datetime, end: datetime) -> dict[int, dict[str, Any]]:
    """Average rating, feedback count and up to three recent comments, for feedback submitted in [start, end)."""
    s = TutoringSession
    column = getattr(s, key)
    out: dict[int, dict[str, Any]] = {i: {"average_rating": None, "feedback_count": 0, "highlights": []} for i in ids}
    if not ids:
        return out
    for row in session.execute(
        select(column.label("owner"), func.avg(Feedback.rating), func.count(Feedback.id))
        .join(s, s.id == Feedback.session_id)
        .where(column.in_(ids), Feedback.submitted_at >= start, Feedback.submitted_at < end).group_by(column)):
        out[row[0]].update(average_rating=round(float(row[1]), 2), feedback_count=int(row[2]))
    for owner, comment in session.execute(
        select(column, Feedback.comment).join(s, s.id == Feedback.session_id)
        .where(column.in_(ids), Feedback.submitted_at >= start, Feedback.submitted_at < end,
               Feedback.comment.is_not(None), Feedback.rating >= 4)
        .order_by(column, Feedback.submitted_at.desc())):
        if len(out[owner]["highlights"]) < 3:
            out[owner]["highlights"].append(comment)
    return out


def reschedule_counts(session: Session, tutor_ids: Sequence[int], start: datetime, end: datetime) -> dict[int, int]:
    """Tutor-initiated reschedules in [start, end)."""
    r = RescheduleEvent
    counts = dict.fromkeys(tutor_ids, 0)
    if tutor_ids:
        for tutor_id, count in session.execute(
            select(r.tutor_id, func.count()).where(r.tutor_id.in_(tutor_ids), r.initiated_by == "tutor",
                                                   r.rescheduled_at >= start, r.rescheduled_at < end)
            .group_by(r.tutor_id)):
            counts[tutor_id] = int(count)
    return counts


def concerns_for(session: Session, tutor_ids: Sequence[int], start: datetime, end: datetime) -> list[Row]:
    """Concerning first-session answers submitted in [start, end) by these tutors."""
    r = SurveyResponse
    return session.execute(
        select(r.tutor_id, Tutor.name.label("tutor_name"), Student.name.label("student_name"), r.rating, r.comment,
               r.submitted_at)
        .join(Tutor, Tutor.id == r.tutor_id)
        .outerjoin(TutoringSession, TutoringSession.id == r.session_id)
        .outerjoin(Student, Student.id == TutoringSession.student_id)
        .where(r.tutor_id.in_(tutor_ids), r.concerning.is_(True), r.submitted_at >= start, r.submitted_at < end)
        .order_by(r.submitted_at)).all() if tutor_ids else []


def no_show_rate(stats: dict[str, Any]) -> float | None:
    total = stats["sessions_completed"] + stats["no_shows"]
    return stats["no_shows"] / total if total else None


