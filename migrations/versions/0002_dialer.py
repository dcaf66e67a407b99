"""dialer: campaigns, contacts, attempts, live answers, DNC table

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 06:44:55.692954
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('dialer_campaigns',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('definition', sa.JSON(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('runner_pid', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('dialer_campaigns', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dialer_campaigns_name'), ['name'], unique=False)
        batch_op.create_index(batch_op.f('ix_dialer_campaigns_state'), ['state'], unique=False)

    op.create_table('dialer_dnc',
    sa.Column('phone', sa.String(length=24), nullable=False),
    sa.Column('reason', sa.String(length=128), nullable=False),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('phone')
    )
    op.create_table('dialer_contacts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('campaign_id', sa.String(length=36), nullable=False),
    sa.Column('contact_key', sa.String(length=64), nullable=False),
    sa.Column('phone', sa.String(length=24), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('attributes', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('final_reason', sa.String(length=32), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_outcome', sa.String(length=16), nullable=True),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['dialer_campaigns.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('dialer_contacts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dialer_contacts_campaign_id'), ['campaign_id'], unique=False)
        batch_op.create_index('ix_dialer_contacts_campaign_status', ['campaign_id', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_dialer_contacts_phone'), ['phone'], unique=False)

    op.create_table('dialer_attempts',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('campaign_id', sa.String(length=36), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('phone', sa.String(length=24), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('dialed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=True),
    sa.Column('cause', sa.String(length=128), nullable=True),
    sa.Column('agent_id', sa.String(length=64), nullable=True),
    sa.Column('amd_verdict', sa.String(length=16), nullable=True),
    sa.Column('amd_cause', sa.String(length=64), nullable=True),
    sa.Column('recording_path', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['campaign_id'], ['dialer_campaigns.id'], ),
    sa.ForeignKeyConstraint(['contact_id'], ['dialer_contacts.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('dialer_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dialer_attempts_campaign_id'), ['campaign_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_dialer_attempts_contact_id'), ['contact_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_dialer_attempts_phone'), ['phone'], unique=False)

    op.create_table('dialer_live_answers',
    sa.Column('attempt_id', sa.String(length=36), nullable=False),
    sa.Column('campaign_id', sa.String(length=36), nullable=False),
    sa.Column('answer_ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('greeting_end_ts', sa.DateTime(timezone=True), nullable=True),
    sa.Column('agent_connect_ts', sa.DateTime(timezone=True), nullable=True),
    sa.Column('message_played', sa.Boolean(), nullable=False),
    sa.Column('amd_verdict', sa.String(length=16), nullable=True),
    sa.Column('agent_id', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['attempt_id'], ['dialer_attempts.id'], ),
    sa.ForeignKeyConstraint(['campaign_id'], ['dialer_campaigns.id'], ),
    sa.PrimaryKeyConstraint('attempt_id')
    )
    with op.batch_alter_table('dialer_live_answers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dialer_live_answers_campaign_id'), ['campaign_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('dialer_live_answers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dialer_live_answers_campaign_id'))

    op.drop_table('dialer_live_answers')
    with op.batch_alter_table('dialer_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dialer_attempts_phone'))
        batch_op.drop_index(batch_op.f('ix_dialer_attempts_contact_id'))
        batch_op.drop_index(batch_op.f('ix_dialer_attempts_campaign_id'))

    op.drop_table('dialer_attempts')
    with op.batch_alter_table('dialer_contacts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dialer_contacts_phone'))
        batch_op.drop_index('ix_dialer_contacts_campaign_status')
        batch_op.drop_index(batch_op.f('ix_dialer_contacts_campaign_id'))

    op.drop_table('dialer_contacts')
    op.drop_table('dialer_dnc')
    with op.batch_alter_table('dialer_campaigns', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dialer_campaigns_state'))
        batch_op.drop_index(batch_op.f('ix_dialer_campaigns_name'))

    op.drop_table('dialer_campaigns')
