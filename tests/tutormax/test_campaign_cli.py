"""`tutormax campaign`: what an operator types and reads."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from db.models import Tutor
from db.session import transaction
from tasks.plan_campaigns import plan_campaign
from tutormax.cli import main


@pytest.fixture
def body(tmp_path):
    path = tmp_path / "body.md"
    path.write_text("# Winter hours\n\nShorter over the break. [Calendar](https://example.com/cal)\n")
    return str(path)


def _tutors(url, n):
    with transaction(url) as s:
        s.add_all(Tutor(id=i, name=f"Tutor {i}", email=f"tutor{i}@example.com") for i in range(1, n + 1))


def _create(capsys, *options) -> tuple[str, list[str]]:
    main(["campaign", "create", "--name", "Winter hours", "--subject", "Winter hours", *options])
    lines = capsys.readouterr().out.splitlines()
    return lines[-1], lines


def test_create_previews_and_prints_the_id_last(db_url, capsys, body):
    _tutors(db_url, 3)
    campaign_id, lines = _create(capsys, "--segment", "all-tutors", "--body-file", body, "--by", "ops")
    assert lines[0] == "audience: all-tutors: 3 found, 3 will receive it"
    assert lines[1] == "created campaign 'Winter hours', draft (a draft: `tutormax campaign schedule ID` sends it)"
    assert campaign_id.startswith("winter-hours-")
    main(["campaign", "list"])
    assert capsys.readouterr().out.split()[:3] == [campaign_id, "draft", "unscheduled"]


def test_show_json_has_the_status_and_counts_from_the_messages(db_url, capsys, body, now):
    _tutors(db_url, 4)
    campaign_id, _ = _create(capsys, "--segment", "all-tutors", "--body-file", body, "--at", "2026-11-20T09:00")
    main(["campaign", "show", campaign_id, "--json"])
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "scheduled" and shown["scheduled_at"] == "2026-11-20T14:00:00+00:00"  # 09:00 New York
    assert set(shown["counts"]) >= {"recipients", "planned", "sent", "deferred", "failed", "bounced", "opened",
                                    "clicked", "unsubscribed"}
    assert shown["counts"]["recipients"] == 0
    main(["campaign", "schedule", campaign_id, "--at", "2026-11-20T15:00:00+00:00"])
    capsys.readouterr()
    from tasks.campaign_schedule import start_due

    start_due.fn(now)
    plan_campaign.fn(campaign_id, now)
    main(["campaign", "show", campaign_id, "--json"])
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "sending" and shown["counts"]["recipients"] == shown["counts"]["planned"] == 4
    assert [(t["from"], t["to"]) for t in shown["transitions"]] == [
        (None, "draft"), ("draft", "scheduled"), ("scheduled", "scheduled"), ("scheduled", "sending")]


def test_pause_resume_cancel_say_what_they_did_and_the_queue_shows_held_mail(db_url, capsys, body, now):
    _tutors(db_url, 5)
    campaign_id, _ = _create(capsys, "--segment", "all-tutors", "--body-file", body, "--at", now.isoformat())
    from tasks.campaign_schedule import start_due

    start_due.fn(now)
    plan_campaign.fn(campaign_id, now)
    main(["campaign", "pause", campaign_id, "--why", "wrong date"])
    assert capsys.readouterr().out == f"paused {campaign_id}: 5 unsent message(s) held; nothing more of it leaves\n"
    main(["queue", "--now", (now + timedelta(minutes=1)).isoformat()])
    assert f"Held by paused campaigns (`tutormax campaign resume ID` sends them): {campaign_id} 5." in \
        capsys.readouterr().out
    main(["campaign", "resume", campaign_id])
    assert capsys.readouterr().out == f"resumed {campaign_id}: 5 message(s) back in the queue\n"
    main(["campaign", "cancel", campaign_id])
    assert capsys.readouterr().out == (f"cancelled {campaign_id}: 5 unsent message(s) skipped (campaign_cancelled)\n")
    with pytest.raises(SystemExit, match=f"campaign {campaign_id} is cancelled: it cannot be resumed"):
        main(["campaign", "resume", campaign_id])


@pytest.mark.parametrize(("options", "message"), [
    (["--segment", "everyone"], "segment: Input should be 'all-tutors'"),
    (["--segment", "students-by-grade:13"], "K or 1 to 12"),
    (["--segment", "csv:/nonexistent.csv"], "cannot read the list '/nonexistent.csv'"),
    (["--segment", "all-tutors", "--at", "next monday"], "--at 'next monday' is not an ISO time"),
    (["--segment", "all-tutors", "--ab-test-fraction", "0.2"], "needs variant b's words"),
])
def test_bad_options_say_what_is_wrong(db_url, capsys, body, options, message):
    with pytest.raises(SystemExit) as exited:
        main(["campaign", "create", "--name", "N", "--subject", "S", "--body-file", body, *options])
    assert message in str(exited.value)


def test_a_missing_body_file_or_campaign_is_a_clear_error(db_url):
    with pytest.raises(SystemExit, match="cannot read the body file 'nope.md'"):
        main(["campaign", "create", "--name", "N", "--subject", "S", "--segment", "all-tutors", "--body-file", "nope.md"])
    with pytest.raises(SystemExit, match="no campaign 'nope'"):
        main(["campaign", "show", "nope"])
    with pytest.raises(SystemExit, match="no campaign 'nope'"):
        main(["campaign", "pause", "nope"])
