"""What operators do to campaigns, from the command line and the Prefect UI alike: create, schedule, pause, resume, cancel.

The forms are pydantic models: the manage-campaign deployment takes them as parameters, so the
Prefect UI's run form is the campaign form, and the CLI builds the same models from its options.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from db import campaigns, segments
from db.events import PRIORITY_RANK, CampaignStatus, CampaignType, Category, Priority
from db.models import EmailCampaign
from db.session import transaction
from tasks.announcement import ANNOUNCEMENT

SegmentName = StrEnum("SegmentName", {name.replace("-", "_"): name for name in segments.SEGMENTS})
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str) -> int:
    """"4h", "90m", "2d", "45s" -> seconds."""
    match = _DURATION.match(text or "")
    if not match:
        raise ValueError(f"{text!r} is not a duration like 4h, 90m, 2d or 45s")
    return round(float(match[1]) * _UNITS[match[2]])


def weights_of(text: str) -> dict[str, float]:
    """"a=0.5,b=0.5" -> {"a": 0.5, "b": 0.5}: the two variants, a the control."""
    found: dict[str, float] = {}
    for item in (text or "").split(","):
        name, _, value = item.partition("=")
        try:
            found[name.strip().lower()] = float(value)
        except ValueError:
            raise ValueError(f"{item.strip()!r} in the weights is not variant=share (a=0.5,b=0.5)") from None
    if set(found) != {"a", "b"} or min(found.values()) <= 0:
        raise ValueError(f"the weights name variants a and b, each above 0, like a=0.5,b=0.5 (got {text!r})")
    return found


class Content(BaseModel):
    """What one variant says."""

    subject: str = Field(min_length=1, max_length=400, description="the Subject line")
    preheader: str = Field("", max_length=300, description="the preview line beside the subject in an inbox")
    body_markdown: str = Field(min_length=1, description="the body, in Markdown", json_schema_extra={"format": "text"})

    @field_validator("subject", "preheader")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if "\r" in value or "\n" in value:
            raise ValueError("must be one line")
        return value.strip()


class ABTest(BaseModel):
    """Send a test portion two ways, wait, then send the winner to the rest."""

    b: Content = Field(description="what variant b says (variant a, the control, is the campaign's content)")
    fraction: float = Field(0.2, gt=0, lt=1, description="the share of the audience in the test")
    weight_a: float = Field(0.5, gt=0, description="variant a's share of the test")
    weight_b: float = Field(0.5, gt=0, description="variant b's share of the test")
    winner_after: str = Field("4h", description="how long after the test portion is sent to decide: 4h, 90m, 1d")
    winner_metric: Literal["clicks", "human_opens"] = Field("clicks", description="what decides: clicks (default) "
                                                            "or opens by people (machine opens left out)")
    fallback: Literal["a", "b"] = Field("a", description="what the rest get when no variant wins significantly")

    @field_validator("winner_after")
    @classmethod
    def _duration(cls, value: str) -> str:
        duration_seconds(value)
        return value


class CampaignForm(BaseModel):
    """A new campaign: who gets it, what it says, when it goes."""

    name: str = Field(min_length=1, max_length=200)
    segment: SegmentName = Field(description="; ".join(f"{s.name}: {s.description}" for s in segments.SEGMENTS.values()))
    segment_value: str | None = Field(None, description="tutors-by-subject: the subject; students-by-grade: K or 1-12")
    members_csv: str | None = Field(None, description="csv segment: `type,id` lines (tutor, student, parent, manager)",
                                    json_schema_extra={"format": "text"})
    content: Content
    category: Literal["marketing_emails", "system_notifications"] = Field(
        "marketing_emails", description="the preference that lets a recipient opt out: marketing_emails for "
                                        "announcements, system_notifications for service notices")
    priority: Priority = Field(Priority.LOW, description="its place in the queue: low lets alerts and reminders go first")
    at: datetime | None = Field(None, description="when to send; empty: keep it a draft")
    ab_test: ABTest | None = None

    @model_validator(mode="after")
    def _segment(self) -> CampaignForm:
        segment = segments.get(self.segment.value)
        if segment.value == "file":
            segments.read_member_list(self.members_csv or "")  # every bad line named now, not at send time
            self.segment_value = None
        elif self.members_csv:
            raise ValueError(f"{segment.name} takes no member list (that is the csv segment)")
        else:
            self.segment_value = segments.check_value(segment, self.segment_value)
        return self


def create(form: CampaignForm, *, actor: str, now: datetime) -> EmailCampaign:
    """Store the campaign as a draft, scheduled at once if the form says when."""
    ab = form.ab_test
    content = {"a": form.content.model_dump()}
    if ab:
        content["b"] = ab.b.model_dump()
    campaign = EmailCampaign(
        campaign_id=campaigns.new_id(form.name), campaign_name=form.name, campaign_type=CampaignType.ANNOUNCEMENT,
        template_type=ANNOUNCEMENT.name, template_version="v1", segment=form.segment.value,
        segment_value=form.segment_value, category=Category(form.category).value,
        priority=PRIORITY_RANK[Priority(form.priority)], content=content, ab_test_enabled=ab is not None,
        ab_variant_a_weight=ab.weight_a if ab else 1.0, ab_variant_b_weight=ab.weight_b if ab else 0.0,
        ab_test_fraction=ab.fraction if ab else None,
        winner_after_seconds=duration_seconds(ab.winner_after) if ab else None,
        winner_metric=ab.winner_metric if ab else None, winner_fallback=ab.fallback if ab else None, plan_state={})
    with transaction() as session:
        if form.segment == SegmentName.tutors_by_subject:
            segments.check_subject(session, form.segment_value or "")
        campaigns.add(session, campaign, actor=actor, at=now)
        if form.members_csv:
            segments.add_members(session, campaign.campaign_id, segments.read_member_list(form.members_csv))
        if form.at is not None:
            _schedule(session, campaign, form.at, actor=actor, now=now)
        session.flush()
        session.expunge(campaign)
    return campaign


def _schedule(session, campaign: EmailCampaign, at: datetime, *, actor: str, now: datetime) -> None:
    campaigns.transition(session, campaign, CampaignStatus.SCHEDULED, actor=actor, at=now,
                         reason=f"to send at {at.isoformat()}")
    campaign.scheduled_at = at


def schedule(campaign_id: str, at: datetime | None, *, actor: str, now: datetime) -> EmailCampaign:
    """Schedule a draft (or move a scheduled campaign's time); no time means now."""
    with transaction() as session:
        campaign = campaigns.locked(session, campaign_id)
        _schedule(session, campaign, at or now, actor=actor, now=now)
        session.flush()
        session.expunge(campaign)
    return campaign


def pause(campaign_id: str, *, actor: str, now: datetime, reason: str | None = None) -> int:
    """Pause: no new message of it leaves from the next claim on; returns how many messages are held."""
    with transaction() as session:
        campaign = campaigns.locked(session, campaign_id)
        campaigns.transition(session, campaign, CampaignStatus.PAUSED, actor=actor, at=now, reason=reason)
        campaign.paused_reason = reason
        return campaigns.hold(session, campaign_id, now)


def resume(campaign_id: str, *, actor: str, now: datetime, override_guard: bool = False) -> int:
    """Resume where it stopped (sending again, or scheduled if it had not started); returns messages released."""
    with transaction() as session:
        campaign = campaigns.locked(session, campaign_id)
        if campaign.status != CampaignStatus.PAUSED:
            final = " (it is final)" if not campaigns.TRANSITIONS[campaign.status] else ""
            raise campaigns.CampaignError(f"campaign {campaign_id} is {campaign.status}: it cannot be resumed{final}")
        guarded = _paused_by_guard(session, campaign_id)
        if guarded and not override_guard:
            raise campaigns.CampaignError(
                f"campaign {campaign_id} was paused by the reputation guard: {campaign.paused_reason}. Look at its "
                "bounces and complaints first; resume with --override-guard to send anyway (the guard then stays off)")
        to = CampaignStatus.SENDING if campaign.started_at else CampaignStatus.SCHEDULED
        campaigns.transition(session, campaign, to, actor=actor, at=now,
                             reason="resumed over the reputation guard" if guarded else "resumed")
        campaign.paused_reason = None
        campaign.guard_override = campaign.guard_override or guarded
        return campaigns.unhold(session, campaign_id, now)


def _paused_by_guard(session, campaign_id: str) -> bool:
    history = campaigns.transitions(session, campaign_id)
    return bool(history) and history[-1].actor == campaigns.GUARD_ACTOR


def cancel(campaign_id: str, *, actor: str, now: datetime, reason: str | None = None) -> int:
    """Cancel: every unsent message is skipped (campaign_cancelled); returns how many."""
    with transaction() as session:
        campaign = campaigns.locked(session, campaign_id)
        campaigns.transition(session, campaign, CampaignStatus.CANCELLED, actor=actor, at=now, reason=reason)
        campaign.completed_at = now
        return campaigns.skip_unsent(session, campaign_id, now)


def winner_wait(campaign: EmailCampaign) -> timedelta | None:
    """How long after its test portion is sent an A/B campaign decides (None without a test)."""
    return timedelta(seconds=campaign.winner_after_seconds) if campaign.winner_after_seconds else None
