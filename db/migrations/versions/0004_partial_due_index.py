"""the due index in claim order, only over unfinished messages; no claim-token index; campaign index partial

The claim walks (priority, message_id) among queued, deferred and sending
messages; the old (status, next_attempt_at) index could not serve its ORDER BY,
so every claim scanned and sorted the whole table. The claim now returns its rows
from the UPDATE, so nothing looks messages up by claim token. Most messages are in
no campaign; indexing only those that are spares every other write.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 00:25:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

UNFINISHED = sa.text("status IN ('queued', 'deferred', 'sending')")
IN_CAMPAIGN = sa.text("campaign_id IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table('email_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_email_messages_due')
        batch_op.drop_index('ix_email_messages_claim')
        batch_op.create_index('ix_email_messages_due', ['priority', 'message_id'], unique=False,
                              postgresql_where=UNFINISHED, sqlite_where=UNFINISHED)
        batch_op.drop_index('ix_email_messages_campaign')
        batch_op.create_index('ix_email_messages_campaign', ['campaign_id'], unique=False,
                              postgresql_where=IN_CAMPAIGN, sqlite_where=IN_CAMPAIGN)


def downgrade() -> None:
    with op.batch_alter_table('email_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_email_messages_campaign')
        batch_op.create_index('ix_email_messages_campaign', ['campaign_id'], unique=False)
        batch_op.drop_index('ix_email_messages_due')
        batch_op.create_index('ix_email_messages_claim', ['claim_token'], unique=False)
        batch_op.create_index('ix_email_messages_due', ['status', 'next_attempt_at'], unique=False)
