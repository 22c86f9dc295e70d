"""platform and email tables

Revision ID: 0001
Revises: 
Create Date: 2026-11-27 21:22:29.036992
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('email_campaigns',
    sa.Column('campaign_id', sa.String(length=64), nullable=False),
    sa.Column('campaign_name', sa.String(length=200), nullable=False),
    sa.Column('campaign_type', sa.String(length=50), nullable=False),
    sa.Column('template_type', sa.String(length=50), nullable=False),
    sa.Column('template_version', sa.String(length=20), nullable=False),
    sa.Column('ab_test_enabled', sa.Boolean(), nullable=False),
    sa.Column('ab_variant_a_weight', sa.Double(), nullable=False),
    sa.Column('ab_variant_b_weight', sa.Double(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('scheduled_at', sa.DateTime(), nullable=True),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('completed_at', sa.DateTime(), nullable=True),
    sa.Column('total_recipients', sa.Integer(), nullable=False),
    sa.Column('emails_sent', sa.Integer(), nullable=False),
    sa.Column('emails_delivered', sa.Integer(), nullable=False),
    sa.Column('emails_opened', sa.Integer(), nullable=False),
    sa.Column('emails_clicked', sa.Integer(), nullable=False),
    sa.Column('emails_bounced', sa.Integer(), nullable=False),
    sa.Column('emails_failed', sa.Integer(), nullable=False),
    sa.Column('unsubscribes', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('campaign_id')
    )
    op.create_table('managers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('email')
    )
    op.create_table('students',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('birth_date', sa.Date(), nullable=False),
    sa.Column('parent_name', sa.String(length=200), nullable=True),
    sa.Column('parent_email', sa.String(length=320), nullable=True),
    sa.Column('parent_consent', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('email_messages',
    sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=False),
    sa.Column('campaign_id', sa.String(length=64), nullable=True),
    sa.Column('recipient_email', sa.String(length=320), nullable=True),
    sa.Column('recipient_name', sa.String(length=200), nullable=True),
    sa.Column('recipient_id', sa.BigInteger(), nullable=True),
    sa.Column('recipient_type', sa.String(length=20), nullable=False),
    sa.Column('template_type', sa.String(length=50), nullable=False),
    sa.Column('template_version', sa.String(length=20), nullable=False),
    sa.Column('ab_variant', sa.String(length=10), nullable=True),
    sa.Column('category', sa.String(length=40), nullable=False),
    sa.Column('subject', sa.String(length=400), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('priority', sa.SmallInteger(), nullable=False),
    sa.Column('scheduled_at', sa.DateTime(), nullable=True),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=True),
    sa.Column('claim_token', sa.String(length=40), nullable=True),
    sa.Column('claimed_at', sa.DateTime(), nullable=True),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.Column('delivered_at', sa.DateTime(), nullable=True),
    sa.Column('opened_at', sa.DateTime(), nullable=True),
    sa.Column('first_clicked_at', sa.DateTime(), nullable=True),
    sa.Column('bounced_at', sa.DateTime(), nullable=True),
    sa.Column('failed_at', sa.DateTime(), nullable=True),
    sa.Column('bounce_type', sa.String(length=20), nullable=True),
    sa.Column('bounce_reason', sa.Text(), nullable=True),
    sa.Column('failure_reason', sa.Text(), nullable=True),
    sa.Column('skip_reason', sa.String(length=60), nullable=True),
    sa.Column('smtp_response', sa.Text(), nullable=True),
    sa.Column('retry_count', sa.Integer(), nullable=False),
    sa.Column('open_count', sa.Integer(), nullable=False),
    sa.Column('click_count', sa.Integer(), nullable=False),
    sa.Column('unsubscribed_at', sa.DateTime(), nullable=True),
    sa.Column('metadata', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['email_campaigns.campaign_id'], ),
    sa.PrimaryKeyConstraint('message_id'),
    sa.UniqueConstraint('idempotency_key', name='uq_email_messages_idempotency_key')
    )
    with op.batch_alter_table('email_messages', schema=None) as batch_op:
        batch_op.create_index('ix_email_messages_campaign', ['campaign_id'], unique=False)
        batch_op.create_index('ix_email_messages_claim', ['claim_token'], unique=False)
        batch_op.create_index('ix_email_messages_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_email_messages_recipient', ['recipient_email'], unique=False)
        batch_op.create_index('ix_email_messages_template_created', ['template_type', 'created_at'], unique=False)

    op.create_table('tutors',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('manager_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['manager_id'], ['managers.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('email')
    )
    with op.batch_alter_table('tutors', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tutors_manager_id'), ['manager_id'], unique=False)

    op.create_table('email_preferences',
    sa.Column('preference_id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=True),
    sa.Column('tutor_id', sa.Integer(), nullable=True),
    sa.Column('student_id', sa.Integer(), nullable=True),
    sa.Column('unsubscribed_all', sa.Boolean(), server_default=sa.text('(false)'), nullable=False),
    sa.Column('feedback_reminders', sa.Boolean(), server_default=sa.text('(true)'), nullable=False),
    sa.Column('session_checkins', sa.Boolean(), server_default=sa.text('(true)'), nullable=False),
    sa.Column('performance_reports', sa.Boolean(), server_default=sa.text('(true)'), nullable=False),
    sa.Column('weekly_digests', sa.Boolean(), server_default=sa.text('(true)'), nullable=False),
    sa.Column('monthly_summaries', sa.Boolean(), server_default=sa.text('(true)'), nullable=False),
    sa.Column('marketing_emails', sa.Boolean(), server_default=sa.text('(true)'), nullable=False),
    sa.Column('system_notifications', sa.Boolean(), server_default=sa.text('(true)'), nullable=False),
    sa.Column('suppressed', sa.Boolean(), server_default=sa.text('(false)'), nullable=False),
    sa.Column('suppression_reason', sa.Text(), nullable=True),
    sa.Column('suppressed_at', sa.DateTime(), nullable=True),
    sa.Column('unsubscribed_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['student_id'], ['students.id'], ),
    sa.ForeignKeyConstraint(['tutor_id'], ['tutors.id'], ),
    sa.PrimaryKeyConstraint('preference_id'),
    sa.UniqueConstraint('email')
    )
    op.create_table('email_tracking_events',
    sa.Column('event_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('event_type', sa.String(length=20), nullable=False),
    sa.Column('event_time', sa.DateTime(), nullable=False),
    sa.Column('user_agent', sa.Text(), nullable=True),
    sa.Column('ip_address', sa.String(length=45), nullable=True),
    sa.Column('link_url', sa.Text(), nullable=True),
    sa.Column('is_machine', sa.Boolean(), nullable=False),
    sa.Column('machine_reason', sa.String(length=60), nullable=True),
    sa.Column('event_data', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['email_messages.message_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('event_id')
    )
    with op.batch_alter_table('email_tracking_events', schema=None) as batch_op:
        batch_op.create_index('ix_tracking_events_message_type', ['message_id', 'event_type'], unique=False)
        batch_op.create_index('ix_tracking_events_time', ['event_time'], unique=False)

    op.create_table('email_workflow_state',
    sa.Column('workflow_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('workflow_type', sa.String(length=50), nullable=False),
    sa.Column('entity_type', sa.String(length=30), nullable=False),
    sa.Column('entity_id', sa.BigInteger(), nullable=False),
    sa.Column('step', sa.String(length=50), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('trigger_at', sa.DateTime(), nullable=True),
    sa.Column('triggered_at', sa.DateTime(), nullable=True),
    sa.Column('completed_at', sa.DateTime(), nullable=True),
    sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('context_data', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['email_messages.message_id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('workflow_id'),
    sa.UniqueConstraint('workflow_type', 'entity_type', 'entity_id', 'step', name='uq_workflow_state_reason')
    )
    with op.batch_alter_table('email_workflow_state', schema=None) as batch_op:
        batch_op.create_index('ix_workflow_state_message', ['message_id'], unique=False)

    op.create_table('tutoring_sessions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tutor_id', sa.Integer(), nullable=False),
    sa.Column('student_id', sa.Integer(), nullable=False),
    sa.Column('session_number', sa.Integer(), nullable=False),
    sa.Column('subject', sa.String(length=100), nullable=False),
    sa.Column('scheduled_start', sa.DateTime(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('ended_at', sa.DateTime(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.ForeignKeyConstraint(['student_id'], ['students.id'], ),
    sa.ForeignKeyConstraint(['tutor_id'], ['tutors.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('tutoring_sessions', schema=None) as batch_op:
        batch_op.create_index('ix_sessions_status_ended', ['status', 'ended_at'], unique=False)
        batch_op.create_index('ix_sessions_tutor_student', ['tutor_id', 'student_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_tutoring_sessions_student_id'), ['student_id'], unique=False)

    op.create_table('feedback',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('session_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('student_id', sa.Integer(), nullable=False),
    sa.Column('rating', sa.SmallInteger(), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('submitted_at', sa.DateTime(), nullable=False),
    sa.Column('message_id', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['session_id'], ['tutoring_sessions.id'], ),
    sa.ForeignKeyConstraint(['student_id'], ['students.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('session_id')
    )
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_feedback_student_id'), ['student_id'], unique=False)

    op.create_table('reschedule_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('session_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tutor_id', sa.Integer(), nullable=False),
    sa.Column('initiated_by', sa.String(length=20), nullable=False),
    sa.Column('original_start', sa.DateTime(), nullable=False),
    sa.Column('new_start', sa.DateTime(), nullable=False),
    sa.Column('rescheduled_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['session_id'], ['tutoring_sessions.id'], ),
    sa.ForeignKeyConstraint(['tutor_id'], ['tutors.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('reschedule_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reschedule_events_session_id'), ['session_id'], unique=False)
        batch_op.create_index('ix_reschedules_tutor_time', ['tutor_id', 'rescheduled_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('reschedule_events', schema=None) as batch_op:
        batch_op.drop_index('ix_reschedules_tutor_time')
        batch_op.drop_index(batch_op.f('ix_reschedule_events_session_id'))

    op.drop_table('reschedule_events')
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_feedback_student_id'))

    op.drop_table('feedback')
    with op.batch_alter_table('tutoring_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tutoring_sessions_student_id'))
        batch_op.drop_index('ix_sessions_tutor_student')
        batch_op.drop_index('ix_sessions_status_ended')

    op.drop_table('tutoring_sessions')
    with op.batch_alter_table('email_workflow_state', schema=None) as batch_op:
        batch_op.drop_index('ix_workflow_state_message')

    op.drop_table('email_workflow_state')
    with op.batch_alter_table('email_tracking_events', schema=None) as batch_op:
        batch_op.drop_index('ix_tracking_events_time')
        batch_op.drop_index('ix_tracking_events_message_type')

    op.drop_table('email_tracking_events')
    op.drop_table('email_preferences')
    with op.batch_alter_table('tutors', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tutors_manager_id'))

    op.drop_table('tutors')
    with op.batch_alter_table('email_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_email_messages_template_created')
        batch_op.drop_index('ix_email_messages_recipient')
        batch_op.drop_index('ix_email_messages_due')
        batch_op.drop_index('ix_email_messages_claim')
        batch_op.drop_index('ix_email_messages_campaign')

    op.drop_table('email_messages')
    op.drop_table('students')
    op.drop_table('managers')
    op.drop_table('email_campaigns')
