"""Typed SQLAlchemy 2.0 models: the tutoring platform and the email tables."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from db.types import JSONType, UTCDateTime

# Autoincrement BIGINT on PostgreSQL; SQLite only autoincrements INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONType}


# --- the tutoring platform -------------------------------------------------


class Manager(Base):
    __tablename__ = "managers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), unique=True)


class Tutor(Base):
    __tablename__ = "tutors"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("managers.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Student(Base):
    __tablename__ = "students"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    birth_date: Mapped[date] = mapped_column(Date)
    parent_name: Mapped[str | None] = mapped_column(String(200))
    parent_email: Mapped[str | None] = mapped_column(String(320))
    parent_consent: Mapped[bool] = mapped_column(Boolean, default=False)


class TutoringSession(Base):
    __tablename__ = "tutoring_sessions"
    __table_args__ = (
        # due_feedback_reminders: completed sessions by end time
        Index("ix_sessions_status_ended", "status", "ended_at"),
        Index("ix_sessions_tutor_student", "tutor_id", "student_id"),
        # digests, summaries and reports: a page of tutors' or students' sessions in a period
        Index("ix_sessions_tutor_start", "tutor_id", "scheduled_start"),
        Index("ix_sessions_student_start", "student_id", "scheduled_start"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tutor_id: Mapped[int] = mapped_column(ForeignKey("tutors.id"))
    student_id: Mapped[int] = mapped_column(ForeignKey("students.id"), index=True)
    session_number: Mapped[int] = mapped_column(Integer)  # 1 = first session of this tutor with this student
    subject: Mapped[str] = mapped_column(String(100))
    scheduled_start: Mapped[datetime]
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(20))  # db.events.SessionStatus


class Feedback(Base):
    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("tutoring_sessions.id"), unique=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("students.id"), index=True)
    rating: Mapped[int] = mapped_column(SmallInteger)
    comment: Mapped[str | None] = mapped_column(Text)
    submitted_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)  # digests: feedback in a period
    message_id: Mapped[int | None] = mapped_column(BigInteger)  # the email whose link it came from, if any


class RescheduleEvent(Base):
    __tablename__ = "reschedule_events"
    __table_args__ = (Index("ix_reschedules_tutor_time", "tutor_id", "rescheduled_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("tutoring_sessions.id"), index=True)
    tutor_id: Mapped[int] = mapped_column(ForeignKey("tutors.id"))
    initiated_by: Mapped[str] = mapped_column(String(20))  # tutor | student
    original_start: Mapped[datetime]
    new_start: Mapped[datetime]
    rescheduled_at: Mapped[datetime]


# --- the email tables --------------------------------------------------------


class EmailCampaign(Base):
    """A campaign: an announcement to a segment, or an A/B test on an automation's template.

    Its counts are not stored: db.campaigns.counts reads them from its messages, so they cannot drift.
    """

    __tablename__ = "email_campaigns"

    campaign_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    campaign_name: Mapped[str] = mapped_column(String(200))
    campaign_type: Mapped[str] = mapped_column(String(50))  # db.events.CampaignType
    template_type: Mapped[str] = mapped_column(String(50))
    template_version: Mapped[str] = mapped_column(String(20), default="v1")
    ab_test_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    ab_variant_a_weight: Mapped[float] = mapped_column(default=0.5)
    ab_variant_b_weight: Mapped[float] = mapped_column(default=0.5)
    status: Mapped[str] = mapped_column(String(20), default="draft")  # db.events.CampaignStatus
    scheduled_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    # who gets it: a named segment (db.segments) and its argument (a subject, a grade), if it takes one
    segment: Mapped[str | None] = mapped_column(String(40))
    segment_value: Mapped[str | None] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(40), default="marketing_emails", server_default=text("'marketing_emails'"))
    priority: Mapped[int] = mapped_column(SmallInteger, default=3, server_default=text("3"))  # PRIORITY_RANK: low
    # what it says, per variant: {"a": {"subject", "preheader", "body_markdown"}, "b": {...}}
    content: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # A/B on an announcement: the share of the audience that tests, how long to wait, on what, and else what
    ab_test_fraction: Mapped[float | None]
    winner_after_seconds: Mapped[int | None]
    winner_metric: Mapped[str | None] = mapped_column(String(20))
    winner_fallback: Mapped[str | None] = mapped_column(String(10))
    ab_winner: Mapped[str | None] = mapped_column(String(10))
    ab_verdict: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    test_finished_at: Mapped[datetime | None]  # every test message final: the wait for a winner starts
    # how far planning got: the phase, the segment part and the last key planned (db.campaigns.plan_page)
    plan_state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    planned_at: Mapped[datetime | None]  # every recipient is in the outbox
    paused_reason: Mapped[str | None] = mapped_column(Text)
    guard_override: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    created_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class EmailCampaignTransition(Base):
    """One change of a campaign's status: from what, to what, who made it, when and why."""

    __tablename__ = "email_campaign_transitions"
    __table_args__ = (Index("ix_campaign_transitions_campaign", "campaign_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("email_campaigns.campaign_id", ondelete="CASCADE"))
    from_status: Mapped[str | None] = mapped_column(String(20))  # None: created
    to_status: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class EmailCampaignMember(Base):
    """A user named by a campaign's list (the csv segment): a tutor, student, parent (by student) or manager."""

    __tablename__ = "email_campaign_members"

    campaign_id: Mapped[str] = mapped_column(ForeignKey("email_campaigns.campaign_id", ondelete="CASCADE"),
                                             primary_key=True)
    recipient_type: Mapped[str] = mapped_column(String(20), primary_key=True)
    recipient_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)


_UNFINISHED = text("status IN ('queued', 'deferred', 'sending')")
_IN_CAMPAIGN = text("campaign_id IS NOT NULL")


class EmailMessage(Base):
    __tablename__ = "email_messages"
    __table_args__ = (
        UniqueConstraint("idempotency_key", name="uq_email_messages_idempotency_key"),
        # db.outbox.claim walks this in claim order; sent, failed and skipped messages leave it
        Index("ix_email_messages_due", "priority", "message_id", postgresql_where=_UNFINISHED, sqlite_where=_UNFINISHED),
        Index("ix_email_messages_recipient", "recipient_email"),
        # most messages belong to no campaign: only those that do are indexed; in id order, the order
        # they are sent in, so a campaign's first deliveries (the reputation guard's) are a short range
        Index("ix_email_messages_campaign", "campaign_id", "message_id", postgresql_where=_IN_CAMPAIGN,
              sqlite_where=_IN_CAMPAIGN),
        Index("ix_email_messages_template_created", "template_type", "created_at"),
        Index("ix_email_messages_created", "created_at"),  # analytics date ranges
    )

    message_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    campaign_id: Mapped[str | None] = mapped_column(ForeignKey("email_campaigns.campaign_id"))
    recipient_email: Mapped[str | None] = mapped_column(String(320))
    recipient_name: Mapped[str | None] = mapped_column(String(200))
    recipient_id: Mapped[int | None] = mapped_column(BigInteger)
    recipient_type: Mapped[str] = mapped_column(String(20))  # tutor | student | parent | manager
    template_type: Mapped[str] = mapped_column(String(50))
    template_version: Mapped[str] = mapped_column(String(20), default="v1")
    ab_variant: Mapped[str | None] = mapped_column(String(10))
    category: Mapped[str] = mapped_column(String(40))  # db.events.Category
    subject: Mapped[str | None] = mapped_column(String(400))
    status: Mapped[str] = mapped_column(String(20))  # db.events.MessageStatus
    priority: Mapped[int] = mapped_column(SmallInteger, default=2)  # db.events.PRIORITY_RANK
    scheduled_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]
    claim_token: Mapped[str | None] = mapped_column(String(40))
    claimed_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    opened_at: Mapped[datetime | None]
    first_clicked_at: Mapped[datetime | None]
    bounced_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    bounce_type: Mapped[str | None] = mapped_column(String(20))  # db.events.BounceType
    bounce_reason: Mapped[str | None] = mapped_column(Text)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    skip_reason: Mapped[str | None] = mapped_column(String(60))  # db.events.SkipReason
    smtp_response: Mapped[str | None] = mapped_column(Text)
    retry_count: Mapped[int] = mapped_column(default=0)
    open_count: Mapped[int] = mapped_column(default=0)
    click_count: Mapped[int] = mapped_column(default=0)
    unsubscribed_at: Mapped[datetime | None]
    # "metadata" is reserved on declarative classes; the column keeps the spec's name.
    message_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class EmailTrackingEvent(Base):
    __tablename__ = "email_tracking_events"
    __table_args__ = (
        Index("ix_tracking_events_message_type", "message_id", "event_type"),
        Index("ix_tracking_events_time", "event_time"),
        UniqueConstraint("event_key", name="uq_tracking_events_event_key"),
    )

    event_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("email_messages.message_id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(20))  # db.events.EventType
    event_time: Mapped[datetime] = mapped_column(default=utcnow)
    user_agent: Mapped[str | None] = mapped_column(Text)
    ip_address: Mapped[str | None] = mapped_column(String(45))
    link_url: Mapped[str | None] = mapped_column(Text)
    is_machine: Mapped[bool] = mapped_column(Boolean, default=False)
    machine_reason: Mapped[str | None] = mapped_column(String(60))
    device: Mapped[str | None] = mapped_column(String(20))
    browser: Mapped[str | None] = mapped_column(String(80))
    os: Mapped[str | None] = mapped_column(String(80))
    link_name: Mapped[str | None] = mapped_column(String(80))
    # set on events written to the tracker's journal while the database was down: ingesting twice is a no-op
    event_key: Mapped[str | None] = mapped_column(String(40))
    event_data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EmailPreference(Base):
    __tablename__ = "email_preferences"

    preference_id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    user_id: Mapped[int | None] = mapped_column(BigInteger)
    tutor_id: Mapped[int | None] = mapped_column(ForeignKey("tutors.id"))
    student_id: Mapped[int | None] = mapped_column(ForeignKey("students.id"))
    unsubscribed_all: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    feedback_reminders: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    session_checkins: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    performance_reports: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    weekly_digests: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    monthly_summaries: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    marketing_emails: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    system_notifications: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    # a suppression in force for every category (db.suppressions keeps the flag and the history)
    suppressed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # a complaint suppresses marketing whatever the preferences say, until an operator lifts it
    marketing_suppressed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    suppression_reason: Mapped[str | None] = mapped_column(Text)
    suppressed_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class EmailSuppression(Base):
    """One suppression of an address, with where it came from; a removal is kept, not deleted.

    email_preferences.suppressed mirrors "this address has a suppression in force" for the
    planners' and delivery's one-row check; this table is the history an operator reads.
    """

    __tablename__ = "email_suppressions"
    __table_args__ = (Index("ix_email_suppressions_email", "email", "lifted_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))  # lower-cased, as on email_preferences
    reason: Mapped[str] = mapped_column(String(30))  # db.events.SuppressionReason
    source: Mapped[str] = mapped_column(String(20))  # db.events.SuppressionSource
    # what it stops: "all" mail, or "marketing" only (a complaint); db.events.SuppressionScope
    scope: Mapped[str] = mapped_column(String(20), default="all", server_default=text("'all'"))
    detail: Mapped[str | None] = mapped_column(Text)  # the server's answer, a report's status, an operator's note
    report: Mapped[str | None] = mapped_column(Text)  # the raw report (DSN, ARF, webhook payload), when one came
    message_id: Mapped[int | None] = mapped_column(ForeignKey("email_messages.message_id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    lifted_at: Mapped[datetime | None]
    lifted_by: Mapped[str | None] = mapped_column(String(100))
    lifted_why: Mapped[str | None] = mapped_column(Text)


class EmailReport(Base):
    """One recipient's line of a report that arrived later: a DSN, an ARF complaint, a provider's event.

    Kept with its raw text whatever it says, unknown ones included; unique per (source, report,
    recipient), so reading a mailbox twice, or a provider retrying a webhook, records nothing twice.
    """

    __tablename__ = "email_reports"
    __table_args__ = (
        UniqueConstraint("source", "report_id", "recipient", name="uq_email_reports_report"),
        Index("ix_email_reports_recipient", "recipient", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(20))  # db.events.SuppressionSource: dsn, arf, webhook
    report_id: Mapped[str] = mapped_column(String(200))  # the report's Message-ID, or the provider's event id
    kind: Mapped[str] = mapped_column(String(20))  # hard | soft | complaint | auto_reply | delivered | unknown
    action: Mapped[str] = mapped_column(String(20), default="")  # RFC 3464 Action (failed, delayed...), if any
    status: Mapped[str | None] = mapped_column(String(20))  # RFC 3463 status
    diagnostic: Mapped[str | None] = mapped_column(Text)
    recipient: Mapped[str] = mapped_column(String(320), default="")  # lower-cased; empty for an auto-reply
    message_id: Mapped[int | None] = mapped_column(ForeignKey("email_messages.message_id", ondelete="SET NULL"))
    detector: Mapped[str | None] = mapped_column(String(60))  # what read it: dsn, arf, flufl:..., ses, sendgrid...
    raw: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class EmailWorkflowState(Base):
    __tablename__ = "email_workflow_state"
    __table_args__ = (
        UniqueConstraint("workflow_type", "entity_type", "entity_id", "step", name="uq_workflow_state_reason"),
        Index("ix_workflow_state_message", "message_id"),
    )

    workflow_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workflow_type: Mapped[str] = mapped_column(String(50))
    entity_type: Mapped[str] = mapped_column(String(30))
    entity_id: Mapped[int] = mapped_column(BigInteger)
    step: Mapped[str] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(20))  # db.events.WorkflowStatus
    trigger_at: Mapped[datetime | None]
    triggered_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    message_id: Mapped[int | None] = mapped_column(ForeignKey("email_messages.message_id", ondelete="SET NULL"))
    context_data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SurveyResponse(Base):
    """A tutor's answers to the first-session check-in survey (one per survey email)."""

    __tablename__ = "survey_responses"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("email_messages.message_id"), unique=True)
    tutor_id: Mapped[int | None] = mapped_column(ForeignKey("tutors.id"), index=True)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("tutoring_sessions.id"))
    rating: Mapped[int] = mapped_column(SmallInteger)              # how did it go, 1-5
    student_engaged: Mapped[str] = mapped_column(String(10))       # yes | somewhat | no
    concern: Mapped[bool] = mapped_column(Boolean, default=False)  # "I have a concern" ticked
    comment: Mapped[str | None] = mapped_column(Text)
    concerning: Mapped[bool] = mapped_column(Boolean, default=False, index=True)  # escalates to the tutor's manager
    submitted_at: Mapped[datetime] = mapped_column(default=utcnow)
