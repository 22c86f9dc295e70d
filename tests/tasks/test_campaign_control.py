"""Operators' campaign actions: forms checked, every transition checked and recorded, messages held and released."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from db import campaigns
from db.campaigns import CampaignError
from db.models import EmailCampaign, EmailCampaignTransition, EmailMessage
from db.session import transaction
from tasks import campaign_control
from tasks.campaign_control import ABTest, CampaignForm, Content, duration_seconds, weights_of

BODY = Content(subject="Winter hours", preheader="Short days", body_markdown="# Hours\n\nShorter over the break.")


def form(**overrides) -> CampaignForm:
    return CampaignForm(**{"name": "Winter hours", "segment": "all-tutors", "content": BODY, **overrides})


def _status_and_history(url, campaign_id):
    with transaction(url) as s:
        c = s.get(EmailCampaign, campaign_id)
        history = s.execute(select(EmailCampaignTransition.from_status, EmailCampaignTransition.to_status,
                                   EmailCampaignTransition.actor).where(
            EmailCampaignTransition.campaign_id == campaign_id).order_by(EmailCampaignTransition.id)).all()
        return c.status, [tuple(h) for h in history]


def test_create_stores_a_draft_or_a_scheduled_campaign(db_url, now):
    draft = campaign_control.create(form(), actor="ops", now=now)
    assert draft.status == "draft" and draft.scheduled_at is None
    assert draft.campaign_id.startswith("winter-hours-") and len(draft.campaign_id) == len("winter-hours-") + 6
    scheduled = campaign_control.create(form(at=now + timedelta(hours=2), priority="medium",
                                             category="system_notifications"), actor="ops", now=now)
    with transaction(db_url) as s:
        c = s.get(EmailCampaign, scheduled.campaign_id)
        assert (c.status, c.scheduled_at, c.priority, c.category, c.template_type) == (
            "scheduled", now + timedelta(hours=2), 2, "system_notifications", "announcement")
        assert c.content == {"a": {"subject": "Winter hours", "preheader": "Short days",
                                   "body_markdown": "# Hours\n\nShorter over the break."}}
    assert _status_and_history(db_url, scheduled.campaign_id)[1] == [(None, "draft", "ops"), ("draft", "scheduled", "ops")]


def test_the_lifecycle_is_checked_and_recorded(db_url, now):
    cid = campaign_control.create(form(), actor="ops", now=now).campaign_id
    with pytest.raises(CampaignError, match=f"campaign {cid} is draft: it cannot be paused"):
        campaign_control.pause(cid, actor="ops", now=now)
    campaign_control.schedule(cid, None, actor="ops", now=now)
    campaign_control.pause(cid, actor="ana", now=now, reason="typo in the subject")
    campaign_control.resume(cid, actor="ana", now=now)  # not started yet: back to scheduled
    assert _status_and_history(db_url, cid)[0] == "scheduled"
    campaign_control.cancel(cid, actor="ops", now=now)
    for action in (lambda: campaign_control.resume(cid, actor="x", now=now),
                   lambda: campaign_control.schedule(cid, None, actor="x", now=now),
                   lambda: campaign_control.pause(cid, actor="x", now=now)):
        with pytest.raises(CampaignError, match=r"is cancelled: it cannot be .* \(it is final\)"):
            action()
    status, history = _status_and_history(db_url, cid)
    assert status == "cancelled"
    assert history == [(None, "draft", "ops"), ("draft", "scheduled", "ops"), ("scheduled", "paused", "ana"),
                       ("paused", "scheduled", "ana"), ("scheduled", "cancelled", "ops")]


def test_a_completed_campaign_cannot_be_resumed(db_url, now):
    cid = campaign_control.create(form(at=now), actor="ops", now=now).campaign_id
    with transaction(db_url) as s:
        c = campaigns.locked(s, cid)
        campaigns.transition(s, c, "sending", actor="scheduler", at=now)
        campaigns.transition(s, c, "completed", actor="scheduler", at=now)
    with pytest.raises(CampaignError, match="is completed: it cannot be"):
        campaign_control.resume(cid, actor="ops", now=now)
    with pytest.raises(CampaignError, match="is completed: it cannot be cancelled"):
        campaign_control.cancel(cid, actor="ops", now=now)


def test_no_such_campaign(db_url, now):
    with pytest.raises(CampaignError, match="no campaign 'nope'"):
        campaign_control.pause("nope", actor="ops", now=now)


def _messages(url, cid, statuses):
    with transaction(url) as s:
        for i, (status, retries) in enumerate(statuses):
            s.add(EmailMessage(idempotency_key=f"{cid}:{i}", campaign_id=cid, recipient_email=f"r{i}@example.com",
                               recipient_type="tutor", template_type="announcement", category="marketing_emails",
                               status=status, retry_count=retries, metadata={}))


def _statuses(url, cid):
    with transaction(url) as s:
        return sorted(s.execute(select(EmailMessage.status, EmailMessage.skip_reason).where(
            EmailMessage.campaign_id == cid)).all(), key=lambda r: (r[0], r[1] or ""))


def test_pause_holds_unsent_messages_resume_releases_them_cancel_skips_them(db_url, now):
    cid = campaign_control.create(form(at=now), actor="ops", now=now).campaign_id
    with transaction(db_url) as s:
        c = campaigns.locked(s, cid)
        campaigns.transition(s, c, "sending", actor="scheduler", at=now)
        c.started_at = now
    _messages(db_url, cid, [("queued", 0), ("deferred", 1), ("sending", 0), ("sent", 0), ("failed", 0)])
    assert campaign_control.pause(cid, actor="ops", now=now) == 2
    assert [s for s, _ in _statuses(db_url, cid)] == ["failed", "held", "held", "sending", "sent"]
    assert campaign_control.resume(cid, actor="ops", now=now) == 2
    assert [s for s, _ in _statuses(db_url, cid)] == ["deferred", "failed", "queued", "sending", "sent"]
    assert _status_and_history(db_url, cid)[0] == "sending"
    assert campaign_control.cancel(cid, actor="ops", now=now) == 2
    assert _statuses(db_url, cid) == [("failed", None), ("sending", None), ("sent", None),
                                      ("skipped", "campaign_cancelled"), ("skipped", "campaign_cancelled")]


def test_a_guard_pause_needs_an_override_to_resume(db_url, now):
    cid = campaign_control.create(form(at=now), actor="ops", now=now).campaign_id
    with transaction(db_url) as s:
        c = campaigns.locked(s, cid)
        campaigns.transition(s, c, "sending", actor="scheduler", at=now)
        c.started_at = now
    campaign_control.pause(cid, actor=campaigns.GUARD_ACTOR, now=now, reason="hard-bounce rate above 5.0%")
    with pytest.raises(CampaignError, match="paused by the reputation guard: hard-bounce rate above 5.0%.*--override"):
        campaign_control.resume(cid, actor="ops", now=now)
    campaign_control.resume(cid, actor="ops", now=now, override_guard=True)
    with transaction(db_url) as s:
        c = s.get(EmailCampaign, cid)
        assert (c.status, c.guard_override, c.paused_reason) == ("sending", True, None)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"segment": "everyone"}, "segment"),
    ({"segment": "students-by-grade", "segment_value": "13"}, "K or 1 to 12"),
    ({"segment": "tutors-by-subject"}, "needs a subject"),
    ({"segment": "csv"}, "names nobody"),
    ({"segment": "csv", "members_csv": "tutor,1\nteacher,2"}, "line 2: 'teacher,2'"),
    ({"members_csv": "tutor,1"}, "takes no member list"),
    ({"category": "weekly_digests"}, "category"),
    ({"priority": "urgent"}, "priority"),
    ({"content": {"subject": "Two\nlines", "body_markdown": "x"}}, "must be one line"),
    ({"content": {"subject": "S", "body_markdown": ""}}, "at least 1 character"),
])
def test_bad_forms_are_refused_with_the_reason(overrides, message):
    with pytest.raises(ValidationError, match=message):
        form(**overrides)


def test_ab_options_parse():
    assert duration_seconds("4h") == 14400 and duration_seconds("90m") == 5400 and duration_seconds("1.5d") == 129600
    with pytest.raises(ValueError, match="not a duration"):
        duration_seconds("4 hours")
    assert weights_of("a=0.7, b=0.3") == {"a": 0.7, "b": 0.3}
    for bad in ("a=1", "a=0.5,c=0.5", "a=x,b=1", "a=0,b=1"):
        with pytest.raises(ValueError, match="variant"):
            weights_of(bad)
    with pytest.raises(ValidationError, match="fraction"):
        ABTest(b=BODY, fraction=1.0)
    with pytest.raises(ValidationError, match="not a duration"):
        ABTest(b=BODY, winner_after="soon")


def test_the_form_is_a_json_schema_the_prefect_ui_renders():
    schema = CampaignForm.model_json_schema()
    assert set(schema["properties"]) >= {"name", "segment", "segment_value", "members_csv", "content", "category",
                                         "priority", "at", "ab_test"}
    segment = schema["$defs"]["SegmentName"]
    assert segment["enum"] == ["all-tutors", "active-tutors", "tutors-by-subject", "active-students",
                               "students-by-grade", "parents", "managers", "csv"]
