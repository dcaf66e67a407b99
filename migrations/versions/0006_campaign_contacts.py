"""campaign contact lists: contacts imported from CSV, read by campaigns by list name

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "campaign_contacts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("list_name", sa.String(length=64), nullable=False),
        sa.Column("contact_key", sa.String(length=64), nullable=False),
        sa.Column("phone", sa.String(length=24), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("list_name", "contact_key", name="uq_campaign_contacts_list_key"),
    )
    op.create_index("ix_campaign_contacts_list_name", "campaign_contacts", ["list_name"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_campaign_contacts_list_name", table_name="campaign_contacts")
    op.drop_table("campaign_contacts")
