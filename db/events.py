"""The one event vocabulary (after django-anymail's), message statuses and categories."""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    """What happened to a message; email_tracking_events.event_type holds these.

    A planned message is its own record of being queued (email_messages.status): no event is written
    for it, which would double the rows a plan writes.
    """

    SENT = "sent"
    DEFERRED = "deferred"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    FAILED = "failed"
    REJECTED = "rejected"
    OPENED = "opened"
    CLICKED = "clicked"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    UNKNOWN = "unknown"


class MessageStatus(StrEnum):
    """Where a message is in the outbox; email_messages.status holds these."""

    QUEUED = "queued"      # planned, waiting for delivery
    SENDING = "sending"    # claimed by one delivery batch
    DEFERRED = "deferred"  # 4xx: retried by a later run after next_attempt_at
    SENT = "sent"          # 2xx from the SMTP server
    FAILED = "failed"      # 5xx, invalid address, or out of retries
    SKIPPED = "skipped"    # never sent on purpose (preference, suppression, COPPA); skip_reason says why
    HELD = "held"          # its campaign is paused: out of the queue until it resumes


class SessionStatus(StrEnum):
    """A tutoring session's state on the platform."""

    SCHEDULED = "scheduled"
    COMPLETED = "completed"
    NO_SHOW = "no_show"
    CANCELLED = "cancelled"


class WorkflowStatus(StrEnum):
    """email_workflow_state.status."""

    PENDING = "pending"
    TRIGGERED = "triggered"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class Category(StrEnum):
    """Preference categories; each is a boolean column on email_preferences."""

    FEEDBACK_REMINDERS = "feedback_reminders"
    SESSION_CHECKINS = "session_checkins"
    PERFORMANCE_REPORTS = "performance_reports"
    WEEKLY_DIGESTS = "weekly_digests"
    MONTHLY_SUMMARIES = "monthly_summaries"
    MARKETING_EMAILS = "marketing_emails"
    SYSTEM_NOTIFICATIONS = "system_notifications"


class SkipReason(StrEnum):
    """Why a planned message was never sent."""

    UNSUBSCRIBED_ALL = "unsubscribed_all"
    CATEGORY_OPT_OUT = "category_opt_out"
    SUPPRESSED = "suppressed"
    UNDER_13_NO_PARENT_EMAIL = "under_13_no_parent_email"
    UNDER_13_NO_PARENT_CONSENT = "under_13_no_parent_consent"
    NO_ADDRESS = "no_address"
    FEEDBACK_GIVEN = "feedback_given"  # found at send time: the session got its feedback meanwhile
    CAMPAIGN_CANCELLED = "campaign_cancelled"  # its campaign was cancelled before it left


class BounceType(StrEnum):
    """email_messages.bounce_type: how the receiving side refused a message."""

    HARD = "hard"            # the address does not exist: suppressed
    SOFT = "soft"            # refused for now (mailbox full, for instance): retried, suppressed if it keeps on
    BLOCKED = "blocked"      # refused for policy or reputation: our problem, the address is not to blame
    COMPLAINT = "complaint"  # delivered, then reported as spam


class SuppressionReason(StrEnum):
    """Why an address gets no more mail (email_suppressions.reason)."""

    HARD_BOUNCE = "hard_bounce"    # the server said the address does not exist
    SOFT_BOUNCES = "soft_bounces"  # bounced softly again and again: suppressed for a while
    COMPLAINT = "complaint"        # the recipient reported a message as spam
    OPERATOR = "operator"          # an operator suppressed it by hand


class SuppressionSource(StrEnum):
    """Where the evidence for a suppression came from."""

    SMTP = "smtp"          # the answer to our own delivery
    DSN = "dsn"            # a delivery status notification in the bounce mailbox
    ARF = "arf"            # a feedback-loop complaint report
    WEBHOOK = "webhook"    # an email provider's event
    OPERATOR = "operator"  # the command line


class SuppressionScope(StrEnum):
    """What a suppression stops."""

    ALL = "all"              # every email, system notices included
    MARKETING = "marketing"  # marketing only: a complaint's, over what the preferences say


class Priority(StrEnum):
    """Delivery order inside a batch: critical first."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


PRIORITY_RANK = {Priority.CRITICAL: 0, Priority.HIGH: 1, Priority.MEDIUM: 2, Priority.LOW: 3}


class CampaignType(StrEnum):
    """email_campaigns.campaign_type."""

    ANNOUNCEMENT = "announcement"    # an operator's Markdown to a segment, scheduled (db.segments)
    AUTOMATION_AB = "automation_ab"  # an A/B test of an automation's template versions, while it is active


class CampaignStatus(StrEnum):
    """Where a campaign is in its life (email_campaigns.status); db.campaigns.TRANSITIONS says what may follow what."""

    DRAFT = "draft"          # being written: nothing planned
    SCHEDULED = "scheduled"  # waits for scheduled_at
    SENDING = "sending"      # planned into the queue (or planning), going out under the send-rate limit
    PAUSED = "paused"        # its unsent messages are held; resume continues where it stopped
    COMPLETED = "completed"  # every message final: sent, failed or skipped
    CANCELLED = "cancelled"  # its unsent messages skipped (campaign_cancelled)
    ACTIVE = "active"        # an automation's A/B test that is running
