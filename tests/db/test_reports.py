"""Reports recorded once, and their rules: hard suppresses, three soft in 30 days suppress for 30, a complaint
stops all but system notices; events on our message; a report naming no message of ours still acts."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import select

from db import reports, suppressions
from db.events import SuppressionSource
from db.models import EmailMessage, EmailPreference, EmailReport, EmailSuppression, EmailTrackingEvent
from db.session import transaction

RULES = reports.Rules()


def _line(kind="hard", recipient="gone@example.com", report_id="<r1@mx.example>", **fields):
    return reports.Incoming(source=fields.pop("source", SuppressionSource.DSN), report_id=report_id, kind=kind,
                            recipient=recipient, raw=f"Report {report_id}", received_at=fields.pop("at"),
                            **{"action": "failed", "status": "5.1.1", "diagnostic": "smtp; 550 5.1.1 no such user",
                               **fields})


def _apply(url, now, *lines):
    with transaction(url) as s:
        return dict(reports.apply(s, list(lines), RULES, now))


def _pref(url, email):
    with transaction(url) as s:
        return s.scalar(select(EmailPreference).where(EmailPreference.email == email))


def _events(url, mid):
    with transaction(url) as s:
        return [(e.event_type, e.event_data.get("bounce_type")) for e in
                s.scalars(select(EmailTrackingEvent).where(EmailTrackingEvent.message_id == mid))]


def _digest(url, mid):
    with transaction(url) as s:
        return hashlib.sha256(s.get(EmailMessage, mid).idempotency_key.encode()).hexdigest()[:16]


def test_a_hard_bounce_marks_the_message_suppresses_the_address_and_is_recorded_once(db_url, enqueue, now):
    mid = enqueue("gone@example.com")
    line = _line(message_id=mid, at=now)
    assert _apply(db_url, now, line) == {"hard": 1, "suppressed": 1}
    assert _apply(db_url, now, line) == {"already_recorded": 1}  # the mailbox read twice
    with transaction(db_url) as s:
        message = s.get(EmailMessage, mid)
        assert (message.bounce_type, message.bounced_at, message.bounce_reason) == (
            "hard", now, "5.1.1 smtp; 550 5.1.1 no such user")
        (suppression,) = s.scalars(select(EmailSuppression))
        assert (suppression.email, suppression.reason, suppression.source, suppression.scope, suppression.message_id,
                suppression.report) == ("gone@example.com", "hard_bounce", "dsn", "all", mid, "Report <r1@mx.example>")
        assert s.scalar(select(EmailReport.kind)) == "hard"
    assert _events(db_url, mid) == [("bounced", "hard")]
    assert _pref(db_url, "gone@example.com").suppressed is True


def test_a_report_naming_no_message_of_ours_acts_on_an_address_we_mailed_and_only_then(db_url, enqueue, now):
    enqueue("known@example.com")
    assert _apply(db_url, now, _line(recipient="known@example.com", at=now)) == {"hard": 1, "suppressed": 1}
    assert _apply(db_url, now, _line(recipient="stranger@example.com", report_id="<r2@x>", at=now)) == {"hard": 1}
    assert _pref(db_url, "known@example.com").suppressed and _pref(db_url, "stranger@example.com") is None


def test_a_message_id_we_did_not_make_is_not_believed(db_url, enqueue, now):
    mid = enqueue("named@example.com")
    forged = _line(recipient="other@example.com", message_id=mid, original_message_id=f"<{mid}.0000000000000000@x>",
                   at=now)
    genuine = _line(recipient="other@example.com", report_id="<r2@x>", message_id=mid,
                    original_message_id=f"<{mid}.{_digest(db_url, mid)}@tutormax.example>", at=now)
    assert _apply(db_url, now, forged) == {"hard": 1}  # other@ was never mailed, and the message is not believed
    assert _events(db_url, mid) == []
    assert _apply(db_url, now, genuine) == {"hard": 1, "suppressed": 1}
    assert _events(db_url, mid) == [("bounced", "hard")]
    # the address we mailed is the one suppressed, whatever address the report ended at
    assert _pref(db_url, "named@example.com").suppressed and _pref(db_url, "other@example.com") is None


def test_three_soft_bounces_in_the_window_suppress_for_a_while_and_it_ends(db_url, enqueue, now):
    enqueue("full@example.com")
    soft = [_line("soft", "full@example.com", f"<s{i}@x>", status="5.2.2", at=now + timedelta(days=i * 10))
            for i in range(3)]
    assert _apply(db_url, now, soft[0]) == {"soft": 1}
    assert _apply(db_url, now + timedelta(days=10), soft[1]) == {"soft": 1}
    delayed = _line("soft", "full@example.com", "<d1@x>", action="delayed", status="4.2.2", at=now + timedelta(days=15))
    assert _apply(db_url, now + timedelta(days=15), delayed) == {"delayed": 1}  # a warning, not a bounce
    third = now + timedelta(days=20)
    assert _apply(db_url, third, soft[2]) == {"soft": 1, "suppressed": 1}
    with transaction(db_url) as s:
        (row,) = s.scalars(select(EmailSuppression))
        assert (row.reason, row.expires_at) == ("soft_bounces", third + timedelta(days=30))
    assert _pref(db_url, "full@example.com").suppressed is True
    with transaction(db_url) as s:
        assert suppressions.lift_expired(s, third + timedelta(days=29)) == 0
    with transaction(db_url) as s:
        assert suppressions.lift_expired(s, third + timedelta(days=30)) == 1
    assert _pref(db_url, "full@example.com").suppressed is False


def test_soft_bounces_spread_wider_than_the_window_do_not_suppress(db_url, enqueue, now):
    enqueue("full@example.com")
    for i in range(3):
        at = now + timedelta(days=i * 16)  # 0, 16, 32: never three within 30 days
        assert _apply(db_url, at, _line("soft", "full@example.com", f"<s{i}@x>", status="5.2.2", at=at)) == {"soft": 1}
    assert _pref(db_url, "full@example.com") is None


def test_a_complaint_stops_all_but_system_notices_and_holds_marketing(db_url, enqueue, now):
    from db.events import Category
    from tasks.recipients import preference_skip

    mid = enqueue("angry@example.com")
    complaint = _line("complaint", "angry@example.com", "<arf@fbl.example>", source=SuppressionSource.ARF,
                      action="", status=None, diagnostic=None, message_id=mid, at=now)
    assert _apply(db_url, now, complaint) == {"complaint": 1, "suppressed": 1}
    pref = _pref(db_url, "angry@example.com")
    assert {c: preference_skip(pref, c) for c in Category} == {
        **{c: "category_opt_out" for c in Category}, Category.MARKETING_EMAILS: "suppressed",
        Category.SYSTEM_NOTIFICATIONS: None}
    assert (pref.unsubscribed_all, pref.suppressed) == (False, False)
    assert _events(db_url, mid) == [("complained", None)]
    with transaction(db_url) as s:
        (row,) = s.scalars(select(EmailSuppression))
        assert (row.reason, row.source, row.scope) == ("complaint", "arf", "marketing")


@pytest.mark.parametrize(("kind", "event"), [("unknown", "unknown"), ("delivered", "delivered")])
def test_other_reports_are_kept_and_noted_on_the_message(db_url, enqueue, now, kind, event):
    mid = enqueue("fine@example.com")
    assert _apply(db_url, now, _line(kind, "fine@example.com", action="", status=None, message_id=mid, at=now)) == {
        kind: 1}
    assert _events(db_url, mid) == [(event, None)] and _pref(db_url, "fine@example.com") is None


def test_an_auto_reply_is_kept_and_changes_nothing(db_url, enqueue, now):
    mid = enqueue("away@example.com")
    assert _apply(db_url, now, _line("auto_reply", "", action="", status=None, message_id=mid, at=now)) == {
        "auto_reply": 1}
    assert _events(db_url, mid) == []
    with transaction(db_url) as s:
        assert s.scalar(select(EmailReport.raw)) == "Report <r1@mx.example>"
