"""Planning a campaign: everyone once, never twice, across reruns, crashes, overlaps, pauses and an A/B test's phases."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from db import campaigns, outbox
from db.models import EmailCampaign, EmailMessage, EmailPreference, Student, Tutor
from db.session import transaction
from tasks import campaign_control
from tasks.campaign_control import ABTest, CampaignForm, Content
from tasks.plan_campaigns import plan_campaign, preview

BODY = Content(subject="Winter hours", body_markdown="Shorter hours over the break.")


def _campaign(url, now, segment="all-tutors", **overrides) -> str:
    cid = campaign_control.create(CampaignForm(name="Winter hours", segment=segment, content=BODY, at=now, **overrides),
                                  actor="ops", now=now).campaign_id
    with transaction(url) as s:
        c = campaigns.locked(s, cid)
        campaigns.transition(s, c, "sending", actor="test", at=now)
        c.started_at = now
    return cid


def _tutors(url, n: int, start: int = 1) -> None:
    with transaction(url) as s:
        s.add_all(Tutor(id=i, name=f"Tutor {i}", email=f"tutor{i}@example.com") for i in range(start, start + n))


def _planned(url, cid) -> list[tuple]:
    with transaction(url) as s:
        return s.execute(select(EmailMessage.recipient_email, EmailMessage.status, EmailMessage.skip_reason,
                                EmailMessage.ab_variant, EmailMessage.message_metadata, EmailMessage.priority)
                         .where(EmailMessage.campaign_id == cid).order_by(EmailMessage.message_id)).all()


def test_everyone_once_in_pages_and_a_rerun_adds_nobody(db_url, now):
    _tutors(db_url, 23)
    cid = _campaign(db_url, now)
    result = plan_campaign.fn(cid, now, page_size=5)
    assert (result["pages"], result["queued"], result["already_planned"]) == (5, 23, 0)
    rows = _planned(db_url, cid)
    assert sorted(r.recipient_email for r in rows) == sorted(f"tutor{i}@example.com" for i in range(1, 24))
    assert {(r.status, r.priority) for r in rows} == {("queued", 3)}  # low priority: alerts go first
    assert rows[0].message_metadata == {"campaign_id": cid, "variant": "a"}
    with transaction(db_url) as s:
        assert s.get(EmailCampaign, cid).planned_at == now
        s.get(EmailCampaign, cid).plan_state = {}  # forget how far it got: every page planned again
    again = plan_campaign.fn(cid, now, page_size=5)
    assert (again["queued"], again["already_planned"]) == (0, 23)
    assert len(_planned(db_url, cid)) == 23


def test_a_crash_halfway_then_a_rerun_misses_nobody_and_doubles_nobody(db_url, now, monkeypatch):
    _tutors(db_url, 20)
    cid = _campaign(db_url, now)
    real, calls = outbox.plan, Counter()

    def dies_on_the_third_page(session, planned, at):
        calls["pages"] += 1
        counts = real(session, planned, at)
        if calls["pages"] == 3:
            raise ConnectionError("the database went away mid-page")
        return counts

    monkeypatch.setattr(outbox, "plan", dies_on_the_third_page)
    with pytest.raises(ConnectionError):
        plan_campaign.fn(cid, now, page_size=4)
    assert len(_planned(db_url, cid)) == 8  # two pages committed; the third rolled back with its cursor
    monkeypatch.setattr(outbox, "plan", real)
    assert plan_campaign.fn(cid, now, page_size=4)["queued"] == 12
    assert sorted(r.recipient_email for r in _planned(db_url, cid)) == sorted(
        f"tutor{i}@example.com" for i in range(1, 21))


def test_two_overlapping_runs_plan_each_recipient_once(db_url, now):
    _tutors(db_url, 200)
    cid = _campaign(db_url, now)
    results, errors = [], []

    def run():
        try:
            results.append(plan_campaign.fn(cid, now, page_size=7))
        except Exception as exc:  # pragma: no cover - shown by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(r.get("queued", 0) for r in results) == 200
    with transaction(db_url) as s:
        assert s.scalar(select(func.count(func.distinct(EmailMessage.recipient_email)))
                        .where(EmailMessage.campaign_id == cid)) == 200
        assert s.scalar(select(func.count()).select_from(EmailMessage)) == 200


def test_one_message_per_address_coppa_and_preferences(platform, db_url, now):
    tutor = platform.tutor()
    for _ in range(2):  # two children, one parent
        kid = platform.student(age=9, email=None, parent_email="Pat@Example.com", parent_consent=True)
        platform.session(tutor, kid, ended_ago=timedelta(days=2))
    no_consent = platform.student(age=9, email=None, parent_email="noconsent@example.com")
    teen = platform.student(age=15)
    opted_out = platform.student(age=15, email="optout@example.com")
    for sid in (no_consent, teen, opted_out):
        platform.session(tutor, sid, ended_ago=timedelta(days=2))
    with transaction(db_url) as s:
        s.add(EmailPreference(email="optout@example.com", marketing_emails=False))
        teen_email = s.get(Student, teen).email
    cid = _campaign(db_url, now, segment="active-students")
    plan_campaign.fn(cid, now)
    rows = {(r.recipient_email, r.status, r.skip_reason) for r in _planned(db_url, cid)}
    assert rows == {("Pat@Example.com", "queued", None), ("noconsent@example.com", "skipped",
                                                           "under_13_no_parent_consent"),
                    (teen_email, "queued", None), ("optout@example.com", "skipped", "category_opt_out")}
    # a service notice is another category: the marketing opt-out does not stop it
    notice = _campaign(db_url, now, segment="active-students", category="system_notifications")
    plan_campaign.fn(notice, now)
    assert ("optout@example.com", "queued", None) in {(r.recipient_email, r.status, r.skip_reason)
                                                      for r in _planned(db_url, notice)}


def test_preview_says_what_planning_then_does(platform, db_url, now):
    tutor = platform.tutor()
    for age, email, parent, consent in ((9, None, "pat@example.com", True), (9, None, "pat@example.com", True),
                                        (9, None, None, False), (16, "teen@example.com", None, False)):
        platform.session(tutor, platform.student(age=age, email=email, parent_email=parent, parent_consent=consent),
                         ended_ago=timedelta(days=1))
    cid = _campaign(db_url, now, segment="active-students")
    found = preview(cid, now)
    assert (found["found"], found["same_address_twice"], found["recipients"], found["excluded"]) == (
        4, 1, 2, {"under_13_no_parent_email": 1})
    plan_campaign.fn(cid, now)
    with transaction(db_url) as s:
        c = s.get(EmailCampaign, cid)
        counts = campaigns.counts(s, c)
    assert (counts["planned"], counts["skipped"]) == (2, 1)
    assert _planned(db_url, cid) and found["recipients"] == counts["planned"]


def test_pausing_stops_planning_and_resume_continues_where_it_stopped(db_url, now, monkeypatch):
    from tasks import plan_campaigns

    _tutors(db_url, 30)
    cid = _campaign(db_url, now)
    real, pages = plan_campaigns.write_page, Counter()

    def an_operator_pauses_after_the_second_page(*args):
        more = real(*args)
        pages["n"] += 1
        if pages["n"] == 2:
            campaign_control.pause(cid, actor="ops", now=now)
        return more

    monkeypatch.setattr(plan_campaigns, "write_page", an_operator_pauses_after_the_second_page)
    first = plan_campaign.fn(cid, now, page_size=5)
    monkeypatch.setattr(plan_campaigns, "write_page", real)
    assert first["stopped"] == "paused" and first["queued"] == 10
    assert {r.status for r in _planned(db_url, cid)} == {"held"}
    campaign_control.resume(cid, actor="ops", now=now)
    assert plan_campaign.fn(cid, now, page_size=5)["queued"] == 20
    rows = _planned(db_url, cid)
    assert len(rows) == len({r.recipient_email for r in rows}) == 30
    assert {r.status for r in rows} == {"queued"}


def test_an_ab_campaign_plans_its_test_portion_then_the_rest_with_the_winner(db_url, now):
    _tutors(db_url, 1000)
    ab = ABTest(b=Content(subject="B", body_markdown="b"), fraction=0.2, weight_a=0.5, weight_b=0.5)
    cid = _campaign(db_url, now, ab_test=ab)
    first = plan_campaign.fn(cid, now, page_size=300)
    assert first["stopped"] == "waiting for the A/B winner"
    test = _planned(db_url, cid)
    assert 150 <= len(test) <= 250  # 20 % of 1,000 by a hash: 200 give or take its spread
    split = Counter(r.ab_variant for r in test)
    assert set(split) == {"a", "b"} and abs(split["a"] - split["b"]) < 0.25 * len(test)
    assert all(r.message_metadata["variant"] == r.ab_variant for r in test)
    assert plan_campaign.fn(cid, now, page_size=300)["pages"] == 0  # still waiting: nothing planned
    with transaction(db_url) as s:
        s.get(EmailCampaign, cid).ab_winner = "b"
    rest = plan_campaign.fn(cid, now, page_size=300)
    assert rest["queued"] == 1000 - len(test) and rest["already_planned"] == 0
    rows = _planned(db_url, cid)
    assert len({r.recipient_email for r in rows}) == 1000
    later = rows[len(test):]
    assert {r.ab_variant for r in later} == {None} and {r.message_metadata["variant"] for r in later} == {"b"}
    with transaction(db_url) as s:
        assert s.get(EmailCampaign, cid).planned_at == now
