"""Audit table and the triggers that make it append-only in the database itself.

The application never updates or deletes audit rows; the triggers make that a property of the
database, so a bug, a stray admin UPDATE or an ORM cascade cannot silently rewrite history. (A
superuser can still drop a trigger, which is why ``AuditTrail.verify`` checks the hash chain too.)

``ts`` is stored as fixed-format UTC text, not a timestamp type: the row hash is computed over the
exact stored text, and text round-trips identically on SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import DDL, BigInteger, Column, Index, Integer, MetaData, String, Table, Text, event

metadata = MetaData()

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("ts", String(32), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(100), nullable=False),
    Column("target", String(500), nullable=False),
    Column("source", String(200), nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    Index("ix_audit_log_ts", "ts"),
    Index("ix_audit_log_actor_action", "actor", "action"),
)

_MSG = "audit_log is append-only"

SQLITE_TRIGGERS = (
    f"CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
    f"BEGIN SELECT RAISE(ABORT, '{_MSG}: UPDATE refused'); END",
    f"CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
    f"BEGIN SELECT RAISE(ABORT, '{_MSG}: DELETE refused'); END",
)

POSTGRESQL_TRIGGERS = (
    "CREATE OR REPLACE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
    # No '%' placeholders: DDL text goes through driver paramstyle escaping, concatenation does not.
    f"BEGIN RAISE EXCEPTION USING MESSAGE = '{_MSG}: ' || TG_OP || ' refused', "
    "ERRCODE = 'insufficient_privilege'; END; $$",
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log "
    "FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change()",
    # TRUNCATE bypasses row triggers, so it needs its own statement-level trigger.
    "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change()",
)

POSTGRESQL_DROP = ("DROP FUNCTION IF EXISTS audit_log_refuse_change() CASCADE",)


def trigger_ddl(dialect: str) -> tuple[str, ...]:
    """The statements for one dialect (also for Alembic migrations: ``op.execute`` each)."""
    if dialect == "sqlite":
        return SQLITE_TRIGGERS
    if dialect == "postgresql":
        return POSTGRESQL_TRIGGERS
    raise NotImplementedError(f"no append-only triggers for dialect {dialect!r}")


def _ddl(statement: str, dialect: str) -> DDL:
    assert "%" not in statement, "DDL() %-formats its text"
    return DDL(statement).execute_if(dialect=dialect)  # type: ignore[no-untyped-call]


for _stmt in SQLITE_TRIGGERS:
    event.listen(audit_log, "after_create", _ddl(_stmt, "sqlite"))
for _stmt in POSTGRESQL_TRIGGERS:
    event.listen(audit_log, "after_create", _ddl(_stmt, "postgresql"))
for _stmt in POSTGRESQL_DROP:
    event.listen(audit_log, "after_drop", _ddl(_stmt, "postgresql"))
