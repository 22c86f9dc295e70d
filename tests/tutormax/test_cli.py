"""The command line: what an operator types and reads."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from db import suppressions
from db.events import SuppressionReason, SuppressionSource
from db.models import EmailPreference, EmailSuppression
from db.session import transaction
from tutormax.cli import main


def _bounce(url, email, detail="550 5.1.1 No such user"):
    with transaction(url) as s:
        suppressions.suppress(s, email, reason=SuppressionReason.HARD_BOUNCE, source=SuppressionSource.SMTP,
                              detail=detail, at=datetime(2026, 11, 20, tzinfo=timezone.utc))


def test_suppressions_list_shows_each_with_its_reason_and_evidence(db_url, capsys):
    _bounce(db_url, "Gone@Example.com")
    main(["suppressions", "add", "angry@example.com", "--why", "asked by phone", "--by", "ops"])
    main(["suppressions", "list"])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "suppressed angry@example.com"
    assert out[1].startswith("angry@example.com  operator (operator) since ")
    assert out[2] == "    ops: asked by phone"
    assert out[3] == "gone@example.com  hard_bounce (smtp) since 2026-11-20 00:00 UTC"
    assert out[4] == "    550 5.1.1 No such user"
    main(["suppressions", "list", "--reason", "hard_bounce"])
    assert [line for line in capsys.readouterr().out.splitlines() if not line.startswith(" ")] == [
        "gone@example.com  hard_bounce (smtp) since 2026-11-20 00:00 UTC"]


def test_removing_a_suppression_lets_mail_through_and_is_recorded(db_url, capsys):
    _bounce(db_url, "gone@example.com")
    main(["suppressions", "remove", "GONE@example.com", "--why", "the mailbox was recreated", "--by", "ops"])
    assert capsys.readouterr().out == "lifted 1 suppression(s) of gone@example.com; it gets mail again\n"
    with transaction(db_url) as s:
        assert s.scalar(select(EmailPreference.suppressed).where(EmailPreference.email == "gone@example.com")) is False
        (row,) = s.scalars(select(EmailSuppression))
        assert (row.lifted_by, row.lifted_why, row.lifted_at is not None) == ("ops", "the mailbox was recreated", True)
    main(["suppressions", "list"])
    assert capsys.readouterr().out == "no suppressions\n"
    main(["suppressions", "list", "--all"])
    assert re.fullmatch(r"gone@example.com  hard_bounce \(smtp\) since 2026-11-20 00:00 UTC  LIFTED "
                        r"\d{4}-\d\d-\d\d \d\d:\d\d by ops: the mailbox was recreated",
                        capsys.readouterr().out.splitlines()[0])


@pytest.mark.parametrize(("argv", "message"), [
    (["suppressions", "remove", "nobody@example.com", "--why", "x"], "nobody@example.com is not suppressed"),
    (["suppressions", "remove", "not an address", "--why", "x"],
     "'not an address': invalid recipient address: An email address must have an @-sign."),
    (["suppressions", "add", "a@example.com", "--why", "  "], "--why needs a reason: it is kept with the change"),
])
def test_a_removal_that_cannot_be_done_says_why(db_url, argv, message):
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert str(stopped.value) == message


def test_queue_shows_what_waits_the_oldest_the_next_retry_and_stuck_claims(db_url, enqueue, now, capsys, monkeypatch):
    from datetime import timedelta

    from sqlalchemy import update

    from db.models import EmailMessage

    monkeypatch.setenv("DELIVERY_CLAIM_LEASE_SECONDS", "60")
    from tutormax.settings import get_settings

    get_settings.cache_clear()
    oldest = enqueue("a@example.com")
    enqueue("b@example.com", template_type="intervention_notification", priority=0)
    retry, stuck = enqueue("c@example.com"), enqueue("d@example.com")
    with transaction(db_url) as s:
        s.execute(update(EmailMessage).where(EmailMessage.message_id == retry).values(
            status="deferred", next_attempt_at=now + timedelta(minutes=2)))
        s.execute(update(EmailMessage).where(EmailMessage.message_id == stuck).values(
            status="sending", claimed_at=datetime.now(timezone.utc) - timedelta(minutes=5)))
    main(["queue", "--now", "2026-11-20T10:00"])  # 15:00 UTC, the fixture's now
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Queue at Fri 2026-11-20 10:00:00 EST: 2 due now, 4 unfinished in all."
    assert lines[1] == f"Oldest due: message {oldest} (feedback_reminder), planned Fri 2026-11-20 10:00:00 EST."
    assert lines[2] == "Next retry: Fri 2026-11-20 10:02:00 EST."
    assert lines[3].startswith(f"Claims past their lease (a runner died mid-batch; the next runner takes them): 1, "
                               f"the oldest message {stuck} (feedback_reminder) claimed ")
    assert lines[5:] == ["| priority | template type | status | messages |", "|---|---|---|---|",
                         "| critical | intervention_notification | queued | 1 |",
                         "| medium | feedback_reminder | deferred | 1 |",
                         "| medium | feedback_reminder | queued | 1 |",
                         "| medium | feedback_reminder | sending | 1 |"]
    get_settings.cache_clear()


def test_limits_apply_creates_the_limit_from_the_settings(prefect_harness, capsys, monkeypatch):
    from tutormax.settings import get_settings

    monkeypatch.setenv("SMTP_RATE_LIMIT", "125")
    get_settings.cache_clear()
    main(["limits", "apply"])
    assert capsys.readouterr().out == ("tutormax-smtp-send: 125 messages a minute (burst 4, 1.983 slots freed a "
                                       "second, 2 messages per acquire)\n")
    get_settings.cache_clear()


def test_bounce_parse_prints_a_json_line_per_file_and_fails_at_the_end_for_an_unreadable_one(
        tmp_path, capsys, monkeypatch, request):
    import json
    from pathlib import Path

    from tutormax.settings import get_settings

    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "bounces"
    monkeypatch.setenv("BOUNCE_ADDRESS", "bounces@bounce.tutormax.example")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'absent' / 'tutormax.db'}")  # unusable if touched
    get_settings.cache_clear()
    request.addfinalizer(get_settings.cache_clear)
    # only the VERP tag (SECRET_KEY's) names message 42 here: the returned Message-ID is someone else's
    tagged = tmp_path / "tagged.eml"
    tagged.write_bytes((fixtures / "postfix_user_unknown.eml").read_bytes()
                       .replace(b"<42.0123456789abcdef@tutormax.example>", b"<4Xk2Lm0pQ3z1xyz@mx1.example.net>"))
    files = [str(tagged), str(tmp_path / "absent.eml"), str(fixtures / "out_of_office.eml"),
             str(fixtures / "unknown_spam.eml")]
    with pytest.raises(SystemExit) as stopped:
        main(["bounce", "parse", *files])
    assert str(stopped.value) == "1 of 4 file(s) could not be read"
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == [
        {"file": files[0], "kind": "hard", "recipients": ["nosuchuser@example.net"], "status": "5.1.1",
         "message_id": 42, "detector": "dsn"},
        {"file": files[1], "error": "No such file or directory"},
        {"file": files[2], "kind": "auto_reply", "recipients": [], "status": None, "message_id": 42,
         "detector": "auto_reply"},
        {"file": files[3], "kind": "unknown", "recipients": [], "status": None, "message_id": None,
         "detector": "none"},
    ]
    assert not (tmp_path / "absent").exists()
