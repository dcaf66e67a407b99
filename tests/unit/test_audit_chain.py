"""Audit trail on a real SQLite file: triggers refuse changes; verify and exports name tampering."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import create_engine, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DatabaseError
from sqlalchemy.schema import CreateTable

from ccengine.audit.chain import AuditTrail, SensitiveDataError, verify_export
from ccengine.audit.cli import audit
from ccengine.audit.schema import audit_log, trigger_ddl
from ccengine.recording.manifest import load_or_create_signing_key, load_public_key


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture()
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'audit.db'}"


@pytest.fixture()
def trail(db_url: str) -> AuditTrail:
    t = AuditTrail(create_engine(db_url), clock=Clock())
    t.create_schema()
    for i in range(1, 9):
        t.append(f"user{i % 3}", "recording.playback", f"rec-{i}", source="10.0.0.5",
                 outcome="success" if i % 4 else "denied", details={"n": i, "why": "qa review"})  # fmt: skip
    return t


def raw(db_url: str, sql: str) -> None:
    """Bypass the application, as an attacker with database access would."""
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text(sql))
    engine.dispose()


def test_chain_is_valid_and_linked(trail: AuditTrail) -> None:
    entries = list(trail.entries())
    assert [e.seq for e in entries] == list(range(1, 9))
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    assert entries[0].ts == "2025-01-01T09:00:01.000000Z"
    assert entries[3].outcome == "denied" and entries[3].details_obj == {"n": 4, "why": "qa review"}
    assert trail.verify() == []


def test_update_and_delete_refused_by_triggers(trail: AuditTrail, db_url: str) -> None:
    with pytest.raises(DatabaseError, match="append-only: UPDATE refused"):
        raw(db_url, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3")
    with pytest.raises(DatabaseError, match="append-only: DELETE refused"):
        raw(db_url, "DELETE FROM audit_log WHERE seq = 3")
    assert trail.verify() == []
    assert [e.actor for e in trail.entries(3, 3)] == ["user0"]


def test_edited_row_named(trail: AuditTrail, db_url: str) -> None:
    raw(db_url, "DROP TRIGGER audit_log_no_update")
    raw(db_url, "UPDATE audit_log SET outcome = 'success' WHERE seq = 4")
    found = trail.verify()
    assert [str(f) for f in found] == ["audit entry 4: hash mismatch (row edited)"]


def test_edited_row_with_recomputed_hash_named_by_next_link(trail: AuditTrail, db_url: str) -> None:
    raw(db_url, "DROP TRIGGER audit_log_no_update")
    forged = next(iter(trail.entries(5, 5)))
    forged = type(forged)(**{**forged.to_json(), "actor": "nobody"})
    new_hash = forged.computed_hash()
    raw(db_url, f"UPDATE audit_log SET actor = 'nobody', hash = '{new_hash}' WHERE seq = 5")
    found = trail.verify()
    assert found[0].subject == "audit entry 6" and found[0].check == "prev-hash"


def test_deleted_row_named(trail: AuditTrail, db_url: str) -> None:
    raw(db_url, "DROP TRIGGER audit_log_no_delete")
    raw(db_url, "DELETE FROM audit_log WHERE seq = 6")
    found = trail.verify()
    assert str(found[0]) == "audit entry 6: missing: seq jumps from 5 to 7 (row deleted)"
    assert (found[1].subject, found[1].check) == ("audit entry 7", "prev-hash")


def test_deleted_first_row_named(trail: AuditTrail, db_url: str) -> None:
    raw(db_url, "DROP TRIGGER audit_log_no_delete")
    raw(db_url, "DELETE FROM audit_log WHERE seq <= 2")
    assert str(trail.verify()[0]) == "audit entry 1-2: missing: seq jumps from 0 to 3 (row deleted)"


def test_append_continues_chain_and_refuses_card_numbers(trail: AuditTrail) -> None:
    e = trail.append("agent7", "payment.capture", "call-1", details={"masked": "411111******1111"})
    assert e.seq == 9
    with pytest.raises(SensitiveDataError):
        trail.append("agent7", "payment.capture", "call-1", details={"dtmf": "4111 1111 1111 1111"})
    with pytest.raises(ValueError, match="outcome"):
        trail.append("agent7", "x", outcome="maybe")
    assert trail.verify() == []


def test_export_verifies_offline_and_detects_modification(trail: AuditTrail, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    out = tmp_path / "range.json"
    doc = trail.export(out, key, 3, 6)
    assert (doc["first_seq"], doc["last_seq"], doc["count"]) == (3, 6, 4)
    assert verify_export(out, key.public_key()) == []
    unpinned = verify_export(out)
    assert [f.severity for f in unpinned] == ["info"]

    edited = json.loads(out.read_bytes())
    edited["entries"][1]["actor"] = "mallory"
    found = [str(f) for f in verify_export(edited, key.public_key())]
    assert found == [
        "export: signature invalid (export modified after signing)",
        "audit entry 4: hash mismatch (entry edited)",
    ]

    dropped = json.loads(out.read_bytes())
    del dropped["entries"][2]
    dropped["count"] = 3
    checks = [(f.subject, f.check) for f in verify_export(dropped, key.public_key())]
    assert ("audit entry 6", "gap") in checks and ("export", "signature") in checks

    resigned = json.loads(out.read_bytes())
    other = Ed25519PrivateKey.generate()
    path2 = tmp_path / "other.json"
    AuditTrail(trail.engine).export(path2, other, 3, 6)
    assert [f.check for f in verify_export(path2, key.public_key())][:2] == ["signer", "signature"]
    assert resigned["signer"] != json.loads(path2.read_bytes())["signer"]


def test_cli_verify_and_export(trail: AuditTrail, db_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(audit, ["--db-url", db_url, "verify"])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output

    key_path = tmp_path / "audit-sign.key"
    out = tmp_path / "export.json"
    result = runner.invoke(audit, ["--db-url", db_url, "export", "--out", str(out), "--signing-key",
                                   str(key_path), "--since", "2025-01-01T09:00:03Z"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "exported 6 entries (3..8)" in result.output
    pub = str(key_path) + ".pub"
    result = runner.invoke(audit, ["verify", "--export", str(out), "--public-key", pub])
    assert result.exit_code == 0, result.output
    assert (
        load_public_key(pub).public_bytes_raw()
        == load_or_create_signing_key(key_path).public_key().public_bytes_raw()
    )

    raw(db_url, "DROP TRIGGER audit_log_no_delete")
    raw(db_url, "DELETE FROM audit_log WHERE seq = 2")
    result = runner.invoke(audit, ["--db-url", db_url, "verify"])
    assert result.exit_code == 1
    assert (
        result.output.splitlines()[0]
        == "ERROR: audit entry 2: missing: seq jumps from 1 to 3 (row deleted) [gap]"
    )


def test_postgresql_ddl_is_emitted_for_postgres_only() -> None:
    stmts = trigger_ddl("postgresql")
    assert any("LANGUAGE plpgsql" in s for s in stmts)
    assert any("BEFORE UPDATE OR DELETE ON audit_log" in s for s in stmts)
    assert any("BEFORE TRUNCATE" in s for s in stmts)
    assert "RAISE(ABORT" in " ".join(trigger_ddl("sqlite"))
    assert "CREATE TABLE audit_log" in str(CreateTable(audit_log).compile(dialect=postgresql.dialect()))
    with pytest.raises(NotImplementedError):
        trigger_ddl("mysql")
