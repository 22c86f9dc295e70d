"""Who an email about a student goes to, and whether they may get it (COPPA, preferences)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, NamedTuple

from db.events import Category, SkipReason
from db.models import EmailPreference

COPPA_AGE = 13


def age_on(birth_date: date, day: date) -> int:
    """Whole years between birth_date and day."""
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))


class Recipient(NamedTuple):
    """Who gets a message (a tuple: a million-recipient campaign makes a million of them)."""

    email: str | None
    name: str | None
    type: str  # tutor | student | parent | manager
    skip_reason: str | None = None
    id: int | None = None  # the tutor's, student's (also for a parent) or manager's id

    @property
    def is_parent(self) -> bool:
        return self.type == "parent"


def for_student(*, student_name: str, student_email: str | None, birth_date: date, parent_name: str | None,
                parent_email: str | None, parent_consent: bool, today: date) -> Recipient:
    """A student under 13 is never emailed: the consenting parent is, or nobody (with the reason)."""
    if age_on(birth_date, today) < COPPA_AGE:
        if not parent_email:
            return Recipient(None, parent_name, "parent", SkipReason.UNDER_13_NO_PARENT_EMAIL)
        if not parent_consent:
            return Recipient(parent_email, parent_name, "parent", SkipReason.UNDER_13_NO_PARENT_CONSENT)
        # no name on file: the greeting says "Hi there," and To: is the bare address
        return Recipient(parent_email, parent_name, "parent")
    if not student_email:
        return Recipient(None, student_name, "student", SkipReason.NO_ADDRESS)
    return Recipient(student_email, student_name, "student")


def preference_skip(pref: EmailPreference | None, category: Category) -> str | None:
    """The reason this address may not get this category, or None when it may."""
    if pref is None:
        return None
    if pref.suppressed or (category == Category.MARKETING_EMAILS and pref.marketing_suppressed):
        return SkipReason.SUPPRESSED
    if pref.unsubscribed_all:
        return SkipReason.UNSUBSCRIBED_ALL
    if not getattr(pref, category.value):
        return SkipReason.CATEGORY_OPT_OUT
    return None


@dataclass(frozen=True)
class Audience:
    """Who a due row's email goes to, found from the row's columns by their conventional names.

    `private` are the columns that only serve to find the recipient: they stay out of the message's
    stored metadata (a template has no use for a birth date or an address).
    """

    name: str
    resolve: Callable[[Any, date], Recipient]
    private: frozenset[str]


def _student(row, today: date) -> Recipient:
    found = for_student(student_name=row.student_name, student_email=row.student_email, birth_date=row.birth_date,
                        parent_name=row.parent_name, parent_email=row.parent_email,
                        parent_consent=row.parent_consent, today=today)
    return Recipient(found.email, found.name, found.type, found.skip_reason, row.student_id)


# a row for students has student_id, student_name, student_email, birth_date and parent_name/_email/_consent
STUDENT = Audience("student", _student,
                   frozenset({"student_email", "birth_date", "parent_name", "parent_email", "parent_consent"}))
# a row for tutors has tutor_id, tutor_name and tutor_email; for managers the same with manager_
TUTOR = Audience("tutor", lambda row, today: Recipient(row.tutor_email, row.tutor_name, "tutor", id=row.tutor_id),
                 frozenset({"tutor_email"}))
MANAGER = Audience("manager", lambda row, today: Recipient(row.manager_email, row.manager_name, "manager",
                                                           id=row.manager_id), frozenset({"manager_email"}))
# a row for parents has student_id (whose parent), parent_name and parent_email
PARENT = Audience("parent", lambda row, today: Recipient(
    row.parent_email, row.parent_name, "parent", None if row.parent_email else SkipReason.NO_ADDRESS, row.student_id),
    frozenset({"parent_email"}))
AUDIENCES = {a.name: a for a in (STUDENT, TUTOR, MANAGER, PARENT)}
