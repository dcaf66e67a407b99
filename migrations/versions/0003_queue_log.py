"""queue log: append-only record of every queue step

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "queue_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("call_id", sa.String(length=36), nullable=True),
        sa.Column("queue", sa.String(length=64), nullable=True),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("verb", sa.String(length=24), nullable=False),
        sa.Column("wait_seconds", sa.Float(), nullable=True),
        sa.Column("talk_seconds", sa.Float(), nullable=True),
        sa.Column("detail", sa.String(length=128), nullable=False),
    )
    for column in ("at", "call_id", "queue", "agent_id"):
        op.create_index(f"ix_queue_log_{column}", "queue_log", [column])


def downgrade() -> None:
    for column in ("at", "call_id", "queue", "agent_id"):
        op.drop_index(f"ix_queue_log_{column}", table_name="queue_log")
    op.drop_table("queue_log")
