"""tracker: event client fields, journal keys, survey responses

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 21:51:50.826568
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('survey_responses',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tutor_id', sa.Integer(), nullable=True),
    sa.Column('session_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('rating', sa.SmallInteger(), nullable=False),
    sa.Column('student_engaged', sa.String(length=10), nullable=False),
    sa.Column('concern', sa.Boolean(), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('concerning', sa.Boolean(), nullable=False),
    sa.Column('submitted_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['email_messages.message_id'], ),
    sa.ForeignKeyConstraint(['session_id'], ['tutoring_sessions.id'], ),
    sa.ForeignKeyConstraint(['tutor_id'], ['tutors.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('message_id')
    )
    with op.batch_alter_table('survey_responses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_survey_responses_tutor_id'), ['tutor_id'], unique=False)

    with op.batch_alter_table('email_tracking_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('device', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('browser', sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column('os', sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column('link_name', sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column('event_key', sa.String(length=40), nullable=True))
        batch_op.create_unique_constraint('uq_tracking_events_event_key', ['event_key'])



def downgrade() -> None:
    with op.batch_alter_table('email_tracking_events', schema=None) as batch_op:
        # WARNING: constraint name is None; this directive will fail as
        # rendered.  Add a name, or use a naming convention; see
        # https://alembic.sqlalchemy.org/en/latest/naming.html
        batch_op.drop_constraint('uq_tracking_events_event_key', type_='unique')
        batch_op.drop_column('event_key')
        batch_op.drop_column('link_name')
        batch_op.drop_column('os')
        batch_op.drop_column('browser')
        batch_op.drop_column('device')

    with op.batch_alter_table('survey_responses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_survey_responses_tutor_id'))

    op.drop_table('survey_responses')
