"""indexes for digests and analytics

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 22:52:16.395027
"""
from __future__ import annotations

from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('email_messages', schema=None) as batch_op:
        batch_op.create_index('ix_email_messages_created', ['created_at'], unique=False)

    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_feedback_submitted_at'), ['submitted_at'], unique=False)

    with op.batch_alter_table('survey_responses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_survey_responses_concerning'), ['concerning'], unique=False)

    with op.batch_alter_table('tutoring_sessions', schema=None) as batch_op:
        batch_op.create_index('ix_sessions_student_start', ['student_id', 'scheduled_start'], unique=False)
        batch_op.create_index('ix_sessions_tutor_start', ['tutor_id', 'scheduled_start'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('tutoring_sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_sessions_tutor_start')
        batch_op.drop_index('ix_sessions_student_start')

    with op.batch_alter_table('survey_responses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_survey_responses_concerning'))

    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_feedback_submitted_at'))

    with op.batch_alter_table('email_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_email_messages_created')

