"""Named segments: who a campaign goes to, as named queries that page through the platform.

A segment is one or more parts; a part pages one table in key order (keyset: `after` is the last
key of the page before) and returns rows with `key` and the columns tasks.recipients' audience of
that name reads (student_id, student_name... for students; tutor_id, tutor_name, tutor_email for
tutors; the same with manager_ and parent_). Who finally gets the mail (a child's parent, nobody
without consent) and whether they may (preferences, suppressions) is the planner's business, as
for every automation.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import Row, and_, exists, func, select
from sqlalchemy.orm import Session

from db.events import SessionStatus
from db.models import EmailCampaignMember, Manager, Student, Tutor, TutoringSession
from db.queries import STUDENT_COLUMNS, TUTOR_COLUMNS

ACTIVE_DAYS = 30
AUDIENCES = ("tutor", "student", "parent", "manager")
MANAGER_COLUMNS = (Manager.id.label("manager_id"), Manager.name.label("manager_name"),
                   Manager.email.label("manager_email"))
PARENT_COLUMNS = (Student.id.label("student_id"), Student.parent_name, Student.parent_email)


class SegmentError(ValueError):
    """A segment that does not exist, or a value it cannot take; the message says which and why."""


@dataclass(frozen=True)
class Scope:
    """What a segment's queries are asked with: the campaign, the segment's value, and the run's now."""

    campaign_id: str
    value: str | None
    now: datetime


PageQuery = Callable[[Session, Scope, int, int], Sequence[Row]]


@dataclass(frozen=True)
class Part:
    audience: str  # tutor | student | parent | manager: the columns its rows carry
    query: PageQuery


@dataclass(frozen=True)
class Segment:
    name: str
    description: str
    parts: tuple[Part, ...]
    value: str | None = None  # what the segment's value is ("subject", "grade", "file"), if it takes one


def _page(session: Session, columns, key, where, after: int, limit: int) -> Sequence[Row]:
    return session.execute(select(key.label("key"), *columns).where(key > after, *where)
                           .order_by(key).limit(limit)).all()


def _had_session(whose, scope: Scope):
    """A completed session (of whose: the tutor's or student's) that ended in the ACTIVE_DAYS before now."""
    s = TutoringSession
    return exists().where(whose, s.status == SessionStatus.COMPLETED,
                          s.ended_at >= scope.now - timedelta(days=ACTIVE_DAYS), s.ended_at <= scope.now)


def all_tutors(session: Session, scope: Scope, after: int, limit: int) -> Sequence[Row]:
    """Every tutor."""
    return _page(session, TUTOR_COLUMNS, Tutor.id, (), after, limit)


def active_tutors(session: Session, scope: Scope, after: int, limit: int) -> Sequence[Row]:
    """Tutors who taught a session in the last 30 days."""
    return _page(session, TUTOR_COLUMNS, Tutor.id, (_had_session(TutoringSession.tutor_id == Tutor.id, scope),), after, limit)


def tutors_by_subject(session: Session, scope: Scope, after: int, limit: int) -> Sequence[Row]:
    """Tutors who have taught the subject (any time; the name compared without case)."""
    s = TutoringSession
    taught = exists().where(s.tutor_id == Tutor.id, func.lower(s.subject) == (scope.value or "").lower())
    return _page(session, TUTOR_COLUMNS, Tutor.id, (taught,), after, limit)


def active_students(session: Session, scope: Scope, after: int, limit: int) -> Sequence[Row]:
    """Students who had a session in the last 30 days (a child's mail goes to the consenting parent)."""
    return _page(session, STUDENT_COLUMNS, Student.id, (_had_session(TutoringSession.student_id == Student.id, scope),), after,
                 limit)


def grade(value: str | None) -> int:
    """"K" (kindergarten, 0) or 1 to 12."""
    text = (value or "").strip().upper()
    if text in ("K", "0"):
        return 0
    if text.isdigit() and 1 <= int(text) <= 12:
        return int(text)
    raise SegmentError(f"students-by-grade needs a grade, K or 1 to 12, not {value!r}")


def birth_dates_for_grade(g: int, today: date) -> tuple[date, date]:
    """The birth dates [earliest, latest] of a US grade this school year (kindergarten at 5 on September 1).

    The platform stores no grade: it is derived from the birth date, which is right for most children
    and off by one for those held back or skipped ahead.
    """
    cutoff_year = today.year if (today.month, today.day) >= (9, 1) else today.year - 1
    age_on_cutoff = g + 5
    latest = date(cutoff_year - age_on_cutoff, 9, 1)  # turned that age by September 1
    earliest = date(cutoff_year - age_on_cutoff - 1, 9, 2)
    return earliest, latest


def students_by_grade(session: Session, scope: Scope, after: int, limit: int) -> Sequence[Row]:
    """Students in a school grade this school year, by birth date (a child's mail goes to the consenting parent)."""
    earliest, latest = birth_dates_for_grade(grade(scope.value), scope.now.date())
    return _page(session, STUDENT_COLUMNS, Student.id,
                 (Student.birth_date >= earliest, Student.birth_date <= latest), after, limit)


def parents(session: Session, scope: Scope, after: int, limit: int) -> Sequence[Row]:
    """Every parent or guardian on file (once each, however many children they have: the planner keys by address)."""
    return _page(session, PARENT_COLUMNS, Student.id, (Student.parent_email.is_not(None),), after, limit)


def managers(session: Session, scope: Scope, after: int, limit: int) -> Sequence[Row]:
    """Every manager."""
    return _page(session, MANAGER_COLUMNS, Manager.id, (), after, limit)


def _listed(audience: str, id_column):
    m = EmailCampaignMember

    def listed(scope: Scope):
        return exists().where(m.campaign_id == scope.campaign_id, m.recipient_type == audience,
                              m.recipient_id == id_column)
    return listed


def _list_part(audience: str, columns, key, *where) -> Part:
    listed = _listed(audience, key)

    def query(session: Session, scope: Scope, after: int, limit: int) -> Sequence[Row]:
        return _page(session, columns, key, (listed(scope), *where), after, limit)

    query.__name__ = f"listed_{audience}s"
    query.__doc__ = f"The {audience}s the campaign's list names."
    return Part(audience, query)


SEGMENTS: dict[str, Segment] = {s.name: s for s in (
    Segment("all-tutors", "every tutor", (Part("tutor", all_tutors),)),
    Segment("active-tutors", f"tutors with a session in the last {ACTIVE_DAYS} days", (Part("tutor", active_tutors),)),
    Segment("tutors-by-subject", "tutors who have taught a subject", (Part("tutor", tutors_by_subject),), "subject"),
    Segment("active-students", f"students with a session in the last {ACTIVE_DAYS} days (under 13: the parent)",
            (Part("student", active_students),)),
    Segment("students-by-grade", "students in a grade, K to 12, from their birth date (under 13: the parent)",
            (Part("student", students_by_grade),), "grade"),
    Segment("parents", "every parent or guardian on file", (Part("parent", parents),)),
    Segment("managers", "every manager", (Part("manager", managers),)),
    Segment("csv", "the users a CSV file names, one `type,id` a line (tutor, student, parent or manager)",
            (_list_part("tutor", TUTOR_COLUMNS, Tutor.id), _list_part("student", STUDENT_COLUMNS, Student.id),
             _list_part("parent", PARENT_COLUMNS, Student.id, Student.parent_email.is_not(None)), _list_part("manager", MANAGER_COLUMNS, Manager.id)),
            "file"),
)}


def get(name: str | None) -> Segment:
    """The segment of this name, or a SegmentError listing the ones there are."""
    try:
        return SEGMENTS[name or ""]
    except KeyError:
        raise SegmentError(f"no segment {name!r}; there are {', '.join(SEGMENTS)}") from None


def check_value(segment: Segment, value: str | None) -> str | None:
    """The segment's value as stored, or a SegmentError saying what it needs."""
    if segment.value is None:
        if value:
            raise SegmentError(f"{segment.name} takes no value (got {value!r})")
        return None
    if segment.value == "grade":
        g = grade(value)
        return "K" if g == 0 else str(g)
    if not (value or "").strip():
        raise SegmentError(f"{segment.name} needs a {segment.value}")
    return value.strip()


def check_subject(session: Session, subject: str) -> None:
    """A SegmentError naming the subjects there are, when no session was ever in this one."""
    s = TutoringSession
    if session.scalar(select(exists().where(func.lower(s.subject) == subject.lower()))):
        return
    known = session.scalars(select(s.subject).distinct().order_by(s.subject)).all()
    raise SegmentError(f"no session was ever in the subject {subject!r}; the subjects are: {', '.join(known)}")


@dataclass(frozen=True)
class Member:
    recipient_type: str
    recipient_id: int


def read_member_list(text: str) -> list[Member]:
    """A CSV of `type,id` lines (a header line is allowed) -> members, or a SegmentError naming each bad line."""
    members: dict[Member, None] = {}
    problems = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [c.strip() for c in row]
        if not any(cells) or (number == 1 and [c.lower() for c in cells[:2]] in (["type", "id"], ["recipient_type",
                                                                                               "recipient_id"])):
            continue
        if len(cells) != 2 or cells[0].lower() not in AUDIENCES or not cells[1].isdigit():
            problems.append(f"line {number}: {','.join(cells)!r} is not `type,id` with type one of "
                            f"{', '.join(AUDIENCES)} and a whole-number id")
            continue
        members[Member(cells[0].lower(), int(cells[1]))] = None
    if problems:
        shown = problems[:10] + ([f"... and {len(problems) - 10} more"] if len(problems) > 10 else [])
        raise SegmentError("the list has lines that are not `type,id`:\n  " + "\n  ".join(shown))
    if not members:
        raise SegmentError("the list names nobody")
    return list(members)


def add_members(session: Session, campaign_id: str, members: Sequence[Member]) -> None:
    """Store a campaign's list (the csv segment reads it back in pages)."""
    rows = [{"campaign_id": campaign_id, "recipient_type": m.recipient_type, "recipient_id": m.recipient_id}
            for m in members]
    for start in range(0, len(rows), 5000):
        session.execute(EmailCampaignMember.__table__.insert(), rows[start:start + 5000])


def unknown_members(session: Session, campaign_id: str) -> dict[str, int]:
    """How many of the list's ids match no user, by type (the preview reports them)."""
    m = EmailCampaignMember
    found = {"tutor": Tutor.id, "student": Student.id, "parent": Student.id, "manager": Manager.id}
    missing = {}
    for audience, column in found.items():
        count = session.scalar(select(func.count()).select_from(m).where(
            m.campaign_id == campaign_id, m.recipient_type == audience,
            ~exists().where(and_(column == m.recipient_id, *((Student.parent_email.is_not(None),)
                                                              if audience == "parent" else ())))))
        if count:
            missing[audience] = count
    return missing
