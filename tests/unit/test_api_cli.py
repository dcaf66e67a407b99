"""`ccengine users` and `ccengine tokens` on a real database: hashed storage, audited, clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from ccengine.api.security import LoginPolicy, hash_token
from ccengine.api.tables import TokenRow
from ccengine.api.users import UserStore
from ccengine.audit.chain import AuditTrail
from ccengine.store.database import make_engine


def cli(config: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ccengine.cli.main", "-c", str(config), *args], input=stdin,
                          capture_output=True, text=True, timeout=60)


def test_users_and_tokens_cli(tmp_path: Path) -> None:
    config = tmp_path / "ccengine.yaml"
    db_url = f"sqlite:///{tmp_path / 'cli.db'}"
    config.write_text("pbx: {ami: {username: u, secret: s}, ari: {username: u, password: p}}\n"
                      f"database: {{url: '{db_url}'}}\n")
    done = cli(config, "users", "add", "alice", "--role", "supervisor", "--password", "a long password here")
    assert done.returncode == 0, done.stderr
    bad = cli(config, "users", "add", "bob", "--role", "agent", "--password", "")
    assert bad.returncode == 1 and "agent id" in bad.stderr
    dup = cli(config, "users", "add", "alice", "--role", "qa", "--password", "")
    assert dup.returncode == 1 and "exists" in dup.stderr
    token = cli(config, "tokens", "create", "alice", "--name", "wallboard").stdout.strip()
    assert token.startswith("cce_")
    assert "alice" in cli(config, "users", "list").stdout
    assert cli(config, "tokens", "create", "nobody").returncode == 1
    db = make_engine(db_url)
    with Session(db) as session:
        assert list(session.scalars(select(TokenRow.token_hash))) == [hash_token(token)]
    store = UserStore(db, LoginPolicy(5, 60))
    assert store.authenticate(token).username == "alice"  # type: ignore[union-attr]
    assert store.login("alice", "a long password here").principal is not None
    assert "2 token(s) revoked" in cli(config, "tokens", "revoke", "alice").stdout  # + the login session
    assert store.authenticate(token) is None
    actions = [e.action for e in AuditTrail(db).entries()]
    assert actions == ["user.create", "token.create", "token.revoke"]
