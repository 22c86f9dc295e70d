"""email_reports for DSNs, complaints and provider events; suppression scope; marketing suppressed on complaint

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 11:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'email_reports',
        sa.Column('id', BIG_ID, nullable=False),
        sa.Column('source', sa.String(length=20), nullable=False),
        sa.Column('report_id', sa.String(length=200), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('action', sa.String(length=20), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=True),
        sa.Column('diagnostic', sa.Text(), nullable=True),
        sa.Column('recipient', sa.String(length=320), nullable=False),
        sa.Column('message_id', BIG_ID, nullable=True),
        sa.Column('detector', sa.String(length=60), nullable=True),
        sa.Column('raw', sa.Text(), nullable=False),
        sa.Column('received_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['message_id'], ['email_messages.message_id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('source', 'report_id', 'recipient', name='uq_email_reports_report'),
    )
    op.create_index('ix_email_reports_recipient', 'email_reports', ['recipient', 'received_at'], unique=False)
    with op.batch_alter_table('email_suppressions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scope', sa.String(length=20), server_default=sa.text("'all'"), nullable=False))
    with op.batch_alter_table('email_preferences', schema=None) as batch_op:
        batch_op.add_column(sa.Column('marketing_suppressed', sa.Boolean(), server_default=sa.text('false'),
                                      nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('email_preferences', schema=None) as batch_op:
        batch_op.drop_column('marketing_suppressed')
    with op.batch_alter_table('email_suppressions', schema=None) as batch_op:
        batch_op.drop_column('scope')
    op.drop_index('ix_email_reports_recipient', table_name='email_reports')
    op.drop_table('email_reports')
