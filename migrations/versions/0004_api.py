"""API: users, hashed tokens, four-eyes approvals, webhooks, dead letters; the audit chain table

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from ccengine.audit.schema import trigger_ddl

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # `recordings export --db-url` may have created the audit table (AuditTrail.create_schema) already
    if "audit_log" not in sa.inspect(op.get_bind()).get_table_names():
        op.create_table(
            "audit_log",
            sa.Column("seq", _ID, primary_key=True, autoincrement=False),
            sa.Column("ts", sa.String(32), nullable=False),
            sa.Column("actor", sa.String(200), nullable=False),
            sa.Column("action", sa.String(100), nullable=False),
            sa.Column("target", sa.String(500), nullable=False),
            sa.Column("source", sa.String(200), nullable=False),
            sa.Column("outcome", sa.String(20), nullable=False),
            sa.Column("details", sa.Text(), nullable=False),
            sa.Column("prev_hash", sa.String(64), nullable=False),
            sa.Column("hash", sa.String(64), nullable=False, unique=True),
        )
        op.create_index("ix_audit_log_ts", "audit_log", ["ts"])
        op.create_index("ix_audit_log_actor_action", "audit_log", ["actor", "action"])
        dialect = op.get_bind().dialect.name
        if dialect in ("sqlite", "postgresql"):
            for statement in trigger_ddl(dialect):
                op.execute(statement)
    op.create_table(
        "api_users",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(256), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", _TS, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("api_users.id"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=True),
        sa.Column("revoked_at", _TS, nullable=True),
    )
    op.create_index("ix_api_tokens_user_id", "api_tokens", ["user_id"])
    op.create_table(
        "api_approvals",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(256), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("requested_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.String(64), nullable=True),
        sa.Column("decided_at", _TS, nullable=True),
    )
    op.create_index("ix_api_approvals_status", "api_approvals", ["status"])
    op.create_table(
        "api_webhooks",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("event_types", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("last_seq", _ID, nullable=True),
    )
    op.create_table(
        "api_webhook_dead_letters",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("webhook_id", sa.Integer(), sa.ForeignKey("api_webhooks.id"), nullable=False),
        sa.Column("event_seq", _ID, nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("failed_at", _TS, nullable=False),
    )
    op.create_index("ix_api_webhook_dead_letters_webhook_id", "api_webhook_dead_letters", ["webhook_id"])


def downgrade() -> None:
    op.drop_table("api_webhook_dead_letters")
    op.drop_table("api_webhooks")
    op.drop_table("api_approvals")
    op.drop_table("api_tokens")
    op.drop_table("api_users")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_log_refuse_change() CASCADE")
    op.drop_table("audit_log")
