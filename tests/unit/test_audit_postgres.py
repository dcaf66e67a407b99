"""The audit trail's append-only triggers on a real PostgreSQL server."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DatabaseError

from ccengine.audit.chain import AuditTrail


def test_postgres_refuses_update_and_delete_and_verify_names_a_tampered_row(postgres_url: str) -> None:
    trail = AuditTrail.from_url(postgres_url)
    for i in range(1, 6):
        trail.append(f"user{i}", "recording.export", f"rec-{i}", source="10.0.0.7")
    assert trail.verify() == []
    engine = create_engine(postgres_url)
    for sql, verb in (("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3", "UPDATE"),
                      ("DELETE FROM audit_log WHERE seq = 3", "DELETE")):
        with pytest.raises(DatabaseError, match=f"append-only: {verb} refused"), engine.begin() as conn:
            conn.execute(text(sql))
    assert [e.actor for e in trail.entries(3, 3)] == ["user3"]
    # an attacker with owner rights drops the trigger first: the chain still names the row
    with engine.begin() as conn:
        triggers = [r[0] for r in conn.execute(text(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_log'::regclass AND NOT tgisinternal"))]
        for trigger in triggers:
            conn.execute(text(f"DROP TRIGGER {trigger} ON audit_log"))
        conn.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3"))
    findings = trail.verify()
    assert (findings[0].subject, findings[0].check) == ("audit entry 3", "entry-hash")
    engine.dispose()
    trail.engine.dispose()
