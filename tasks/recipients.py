"""Who an email about a student goes to, and whether they may get it (COPPA, preferences)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from db.events import Category, SkipReason
from db.models import EmailPreference

COPPA_AGE = 13


def age_on(birth_date: date, day: date) -> int:
    """Whole years between birth_date and day."""
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))


@dataclass(frozen=True)
class Recipient:
    email: str | None
    name: str | None
    type: str  # student | parent
    skip_reason: str | None = None

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
        return Recipient(parent_email, parent_name or f"Parent of {student_name}", "parent")
    if not student_email:
        return Recipient(None, student_name, "student", SkipReason.NO_ADDRESS)
    return Recipient(student_email, student_name, "student")


def preference_skip(pref: EmailPreference | None, category: Category) -> str | None:
    """The reason this address may not get this category, or None when it may."""
    if pref is None:
        return None
    if pref.suppressed:
        return SkipReason.SUPPRESSED
    if pref.unsubscribed_all:
        return SkipReason.UNSUBSCRIBED_ALL
    if not getattr(pref, category.value):
        return SkipReason.CATEGORY_OPT_OUT
    return None
