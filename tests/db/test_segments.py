"""Named segments: each finds exactly its people, in pages, on both databases."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from db import segments
from db.models import EmailCampaign, Manager, Student
from db.segments import Scope, SegmentError
from db.session import transaction


def _all(url, name: str, now, value: str | None = None, campaign_id: str = "c1", page: int = 2) -> list[tuple]:
    """Every (audience, key) the segment finds, paged `page` rows at a time (so paging is exercised)."""
    found = []
    with transaction(url) as session:
        for part in segments.get(name).parts:
            after = 0
            while rows := part.query(session, Scope(campaign_id, value, now), after, page):
                found += [(part.audience, row.key) for row in rows]
                after = rows[-1].key
    return found


def test_tutors_all_active_and_by_subject(platform, db_url, now):
    idle = platform.tutor()
    busy = platform.tutor()
    old = platform.tutor()
    student = platform.student()
    platform.session(busy, student, ended_ago=timedelta(days=29), subject="Physics")
    platform.session(old, student, ended_ago=timedelta(days=31), subject="Algebra I")
    platform.session(idle, student, ended_ago=timedelta(days=-2), status="scheduled", subject="Physics")
    assert _all(db_url, "all-tutors", now) == [("tutor", idle), ("tutor", busy), ("tutor", old)]
    assert _all(db_url, "active-tutors", now) == [("tutor", busy)]
    # a session that has not happened makes nobody active, but teaching it counts for the subject
    assert _all(db_url, "tutors-by-subject", now, "physics") == [("tutor", idle), ("tutor", busy)]
    assert _all(db_url, "tutors-by-subject", now, "Algebra I") == [("tutor", old)]
    assert _all(db_url, "tutors-by-subject", now, "Algebra") == []


def test_active_students_parents_and_managers(platform, db_url, now):
    tutor = platform.tutor()
    kid = platform.student(age=10, email=None, parent_email="pat@example.com", parent_consent=True)
    teen = platform.student(age=16)
    platform.student(age=16, parent_email="other@example.com")  # no session: not active
    platform.session(tutor, kid, ended_ago=timedelta(days=3))
    platform.session(tutor, teen, ended_ago=timedelta(days=40))
    assert _all(db_url, "active-students", now) == [("student", kid)]
    with transaction(db_url) as s:
        parents = s.scalars(Student.__table__.select().with_only_columns(Student.id)
                            .where(Student.parent_email.is_not(None)).order_by(Student.id)).all()
        managers = s.scalars(Manager.__table__.select().with_only_columns(Manager.id).order_by(Manager.id)).all()
    assert _all(db_url, "parents", now) == [("parent", sid) for sid in parents] and len(parents) == 2
    assert _all(db_url, "managers", now) == [("manager", mid) for mid in managers] and len(managers) == 1


@pytest.mark.parametrize(("today", "grade", "earliest", "latest"), [
    (date(2026, 11, 20), 0, date(2020, 9, 2), date(2021, 9, 1)),    # kindergarten: 5 by Sept 1, 2026
    (date(2026, 11, 20), 7, date(2013, 9, 2), date(2014, 9, 1)),
    (date(2027, 3, 1), 7, date(2013, 9, 2), date(2014, 9, 1)),     # the same school year in spring
    (date(2027, 9, 1), 7, date(2014, 9, 2), date(2015, 9, 1)),     # a new school year on Sept 1
    (date(2026, 11, 20), 12, date(2008, 9, 2), date(2009, 9, 1)),
])
def test_grade_is_the_us_school_year_by_birth_date(today, grade, earliest, latest):
    assert segments.birth_dates_for_grade(grade, today) == (earliest, latest)


def test_students_by_grade_takes_its_edges(db_url, now):
    with transaction(db_url) as s:
        for sid, born in ((1, date(2013, 9, 1)), (2, date(2013, 9, 2)), (3, date(2014, 9, 1)), (4, date(2014, 9, 2))):
            s.add(Student(id=sid, name=f"S{sid}", email=f"s{sid}@example.com", birth_date=born))
    assert _all(db_url, "students-by-grade", now, "7") == [("student", 2), ("student", 3)]
    assert _all(db_url, "students-by-grade", now, "8") == [("student", 1)]


@pytest.mark.parametrize("bad", ["13", "-1", "seventh", "", None, "7.5"])
def test_a_grade_that_is_not_one_is_refused(bad):
    with pytest.raises(SegmentError, match="K or 1 to 12"):
        segments.check_value(segments.get("students-by-grade"), bad)


def test_grade_values_are_stored_plainly():
    grade = segments.get("students-by-grade")
    assert [segments.check_value(grade, v) for v in ("k", "0", " 7 ", "12")] == ["K", "K", "7", "12"]


def test_segment_values_are_checked():
    with pytest.raises(SegmentError, match="no segment 'everyone'; there are all-tutors, active-tutors"):
        segments.get("everyone")
    with pytest.raises(SegmentError, match="all-tutors takes no value"):
        segments.check_value(segments.get("all-tutors"), "x")
    with pytest.raises(SegmentError, match="tutors-by-subject needs a subject"):
        segments.check_value(segments.get("tutors-by-subject"), "  ")


def test_an_unknown_subject_lists_the_subjects_there_are(platform, db_url):
    platform.session(platform.tutor(), platform.student(), ended_ago=timedelta(days=1), subject="Physics")
    with transaction(db_url) as s:
        segments.check_subject(s, "PHYSICS")
        with pytest.raises(SegmentError, match=r"no session was ever in the subject 'Phys'; the subjects are: Physics"):
            segments.check_subject(s, "Phys")


def test_member_list_reads_types_and_ids_and_names_every_bad_line():
    text = "type,id\ntutor, 3\nSTUDENT,4\n\nparent,4\nmanager,9\ntutor,3\n"
    assert segments.read_member_list(text) == [segments.Member("tutor", 3), segments.Member("student", 4),
                                               segments.Member("parent", 4), segments.Member("manager", 9)]
    with pytest.raises(SegmentError) as caught:
        segments.read_member_list("tutor,1\nteacher,2\ntutor,x\ntutor,1,2\n")
    assert str(caught.value).splitlines()[1:] == [
        "  line 2: 'teacher,2' is not `type,id` with type one of tutor, student, parent, manager and a whole-number id",
        "  line 3: 'tutor,x' is not `type,id` with type one of tutor, student, parent, manager and a whole-number id",
        "  line 4: 'tutor,1,2' is not `type,id` with type one of tutor, student, parent, manager and a whole-number id"]
    with pytest.raises(SegmentError, match="names nobody"):
        segments.read_member_list("type,id\n\n")


def test_the_csv_segment_finds_the_listed_users_and_reports_unknown_ids(platform, db_url, now):
    tutor = platform.tutor()
    platform.tutor()  # not listed
    kid = platform.student(age=9, parent_email="pat@example.com", parent_consent=True)
    no_parent = platform.student(age=15)
    with transaction(db_url) as s:
        s.add(EmailCampaign(campaign_id="c1", campaign_name="c1", campaign_type="announcement",
                            template_type="announcement", segment="csv"))
        s.flush()
        segments.add_members(s, "c1", segments.read_member_list(
            f"tutor,{tutor}\nstudent,{kid}\nparent,{kid}\nparent,{no_parent}\nstudent,999\nmanager,998\n"))
    assert _all(db_url, "csv", now) == [("tutor", tutor), ("student", kid), ("parent", kid)]
    with transaction(db_url) as s:
        assert segments.unknown_members(s, "c1") == {"student": 1, "parent": 1, "manager": 1}
