"""email_suppressions: every suppression with its reason, source and evidence; removals kept

Until now a suppression was a flag and a free-text reason on email_preferences, which
could not say where it came from or record that an operator lifted it. Existing
suppressions (all from SMTP answers) are carried over as hard bounces.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 09:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'email_suppressions',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('email', sa.String(length=320), nullable=False),
        sa.Column('reason', sa.String(length=30), nullable=False),
        sa.Column('source', sa.String(length=20), nullable=False),
        sa.Column('detail', sa.Text(), nullable=True),
        sa.Column('report', sa.Text(), nullable=True),
        sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=True),
        sa.Column('lifted_at', sa.DateTime(), nullable=True),
        sa.Column('lifted_by', sa.String(length=100), nullable=True),
        sa.Column('lifted_why', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['message_id'], ['email_messages.message_id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_email_suppressions_email', 'email_suppressions', ['email', 'lifted_at'], unique=False)
    op.execute("INSERT INTO email_suppressions (email, reason, source, detail, created_at) "
               "SELECT email, 'hard_bounce', 'smtp', suppression_reason, COALESCE(suppressed_at, updated_at) "
               "FROM email_preferences WHERE suppressed")


def downgrade() -> None:
    op.drop_index('ix_email_suppressions_email', table_name='email_suppressions')
    op.drop_table('email_suppressions')
