"""Named queries about campaigns: the list, one campaign, a page of its messages."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from db.models import EmailCampaign, EmailMessage


def newest(session: Session, limit: int = 500) -> Sequence[EmailCampaign]:
    """Campaigns, newest first."""
    return session.scalars(select(EmailCampaign).order_by(EmailCampaign.created_at.desc()).limit(limit)).all()


def by_id(session: Session, campaign_id: str) -> EmailCampaign | None:
    return session.get(EmailCampaign, campaign_id)


def content(session: Session, campaign_id: str) -> dict[str, dict[str, str]]:
    """A campaign's words per variant: {"a": {"subject", "preheader", "body_markdown"}, "b": ...}; {} if none."""
    return session.scalar(select(EmailCampaign.content).where(EmailCampaign.campaign_id == campaign_id)) or {}


def messages_page(session: Session, campaign_id: str, after: int, limit: int) -> Sequence[Row]:
    """A page of a campaign's messages in id order, after the message id `after`."""
    m = EmailMessage
    return session.execute(
        select(m.message_id, m.recipient_type, m.template_type, m.template_version, m.ab_variant, m.status, m.sent_at,
               m.opened_at, m.first_clicked_at, m.open_count, m.click_count)
        .where(m.campaign_id == campaign_id, m.message_id > after).order_by(m.message_id).limit(limit)).all()


def ab_tests(session: Session) -> Sequence[EmailCampaign]:
    """Campaigns that split their messages between variants."""
    return session.scalars(select(EmailCampaign).where(EmailCampaign.ab_test_enabled.is_(True))).all()
