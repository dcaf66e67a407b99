"""retention: how long each sealed recording is kept; legal holds

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recording_retention",
        sa.Column("recording_id", sa.String(length=36), primary_key=True),
        sa.Column("call_id", sa.String(length=36), nullable=True),
        sa.Column("policy", sa.String(length=64), nullable=False),
        sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retain_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("purged_by", sa.String(length=64), nullable=True),
        sa.Column("purge_reason", sa.String(length=32), nullable=True),
    )
    op.create_index("ix_recording_retention_call_id", "recording_retention", ["call_id"])
    op.create_index("ix_recording_retention_retain_until", "recording_retention", ["retain_until"])
    op.create_table(
        "legal_holds",
        sa.Column("id", sa.String(length=36), primary_key=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("placed_by", sa.String(length=64), nullable=False),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_by", sa.String(length=64), nullable=True),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_legal_holds_target", "legal_holds", ["target"])


def downgrade() -> None:
    op.drop_index("ix_legal_holds_target", table_name="legal_holds")
    op.drop_table("legal_holds")
    op.drop_index("ix_recording_retention_retain_until", table_name="recording_retention")
    op.drop_index("ix_recording_retention_call_id", table_name="recording_retention")
    op.drop_table("recording_retention")
