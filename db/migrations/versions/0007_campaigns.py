"""campaigns: lifecycle, segment, content, priority, A/B winner send; transitions and list members; counts on read

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 12:00:00

The counter columns (total_recipients, emails_sent...) were never written: a campaign's counts are
read from its messages (db.campaigns.counts), so they are dropped here and come back empty on downgrade.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
JSON = sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')
IN_CAMPAIGN = sa.text("campaign_id IS NOT NULL")
COUNTERS = ('total_recipients', 'emails_sent', 'emails_delivered', 'emails_opened', 'emails_clicked',
            'emails_bounced', 'emails_failed', 'unsubscribes')


def upgrade() -> None:
    with op.batch_alter_table('email_campaigns', schema=None) as batch_op:
        for name in COUNTERS:
            batch_op.drop_column(name)
        batch_op.add_column(sa.Column('segment', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('segment_value', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('category', sa.String(length=40), server_default=sa.text("'marketing_emails'"),
                                      nullable=False))
        batch_op.add_column(sa.Column('priority', sa.SmallInteger(), server_default=sa.text('3'), nullable=False))
        batch_op.add_column(sa.Column('content', JSON, server_default=sa.text("'{}'"), nullable=False))
        batch_op.add_column(sa.Column('ab_test_fraction', sa.Double(), nullable=True))
        batch_op.add_column(sa.Column('winner_after_seconds', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('winner_metric', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('winner_fallback', sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column('ab_winner', sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column('ab_verdict', JSON, nullable=True))
        batch_op.add_column(sa.Column('test_finished_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('plan_state', JSON, server_default=sa.text("'{}'"), nullable=False))
        batch_op.add_column(sa.Column('planned_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('paused_reason', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('guard_override', sa.Boolean(), server_default=sa.text('false'),
                                      nullable=False))
    op.create_table(
        'email_campaign_transitions',
        sa.Column('id', BIG_ID, nullable=False),
        sa.Column('campaign_id', sa.String(length=64), nullable=False),
        sa.Column('from_status', sa.String(length=20), nullable=True),
        sa.Column('to_status', sa.String(length=20), nullable=False),
        sa.Column('actor', sa.String(length=100), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['campaign_id'], ['email_campaigns.campaign_id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_campaign_transitions_campaign', 'email_campaign_transitions', ['campaign_id', 'id'])
    op.create_table(
        'email_campaign_members',
        sa.Column('campaign_id', sa.String(length=64), nullable=False),
        sa.Column('recipient_type', sa.String(length=20), nullable=False),
        sa.Column('recipient_id', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['campaign_id'], ['email_campaigns.campaign_id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('campaign_id', 'recipient_type', 'recipient_id'),
    )
    with op.batch_alter_table('email_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_email_messages_campaign')
        batch_op.create_index('ix_email_messages_campaign', ['campaign_id', 'message_id'], unique=False,
                              postgresql_where=IN_CAMPAIGN, sqlite_where=IN_CAMPAIGN)


def downgrade() -> None:
    with op.batch_alter_table('email_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_email_messages_campaign')
        batch_op.create_index('ix_email_messages_campaign', ['campaign_id'], unique=False,
                              postgresql_where=IN_CAMPAIGN, sqlite_where=IN_CAMPAIGN)
    op.drop_table('email_campaign_members')
    op.drop_index('ix_campaign_transitions_campaign', table_name='email_campaign_transitions')
    op.drop_table('email_campaign_transitions')
    with op.batch_alter_table('email_campaigns', schema=None) as batch_op:
        for name in ('guard_override', 'paused_reason', 'planned_at', 'plan_state', 'test_finished_at', 'ab_verdict',
                     'ab_winner', 'winner_fallback', 'winner_metric', 'winner_after_seconds', 'ab_test_fraction',
                     'content', 'priority', 'category', 'segment_value', 'segment'):
            batch_op.drop_column(name)
        for name in COUNTERS:
            batch_op.add_column(sa.Column(name, sa.Integer(), server_default=sa.text('0'), nullable=False))
