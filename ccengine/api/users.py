"""Users and API tokens in the database (blocking; callers run it in a worker thread)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from .security import ROLES, LoginPolicy, Principal, Role, hash_password, hash_token, new_token, verify_password
from .tables import TokenRow, UserRow


class UserError(ValueError):
    """A user operation was refused; the message says why."""


@dataclass(frozen=True)
class LoginResult:
    principal: Principal | None
    token: str | None = None
    reason: str = ""


def _utc(at: datetime | None) -> datetime | None:
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


class UserStore:
    def __init__(self, db: Engine, policy: LoginPolicy, session_seconds: float = 8 * 3600.0):
        self.db = db
        self.policy = policy
        self.session_seconds = session_seconds

    def add(self, username: str, role: str, password: str | None = None, agent_id: str | None = None) -> None:
        if role not in ROLES:
            raise UserError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        if role == "agent" and not agent_id:
            raise UserError("an agent user needs the agent id it speaks for")
        if password is not None and len(password) < 12:
            raise UserError("password must have at least 12 characters")
        with Session(self.db) as session, session.begin():
            if session.scalar(select(UserRow.id).where(UserRow.username == username)) is not None:
                raise UserError(f"user {username!r} exists")
            session.add(UserRow(username=username, role=role, agent_id=agent_id, disabled=False, failed_logins=0,
                                password_hash=hash_password(password) if password else None,
                                created_at=datetime.now(UTC)))

    def list(self) -> list[dict[str, object]]:
        with Session(self.db) as session:
            return [{"username": u.username, "role": u.role, "agent_id": u.agent_id, "disabled": u.disabled,
                     "locked": bool(u.locked_until and _utc(u.locked_until) > datetime.now(UTC))}  # type: ignore[operator]
                    for u in session.scalars(select(UserRow).order_by(UserRow.username))]

    def create_token(self, username: str, name: str = "api", ttl_seconds: float | None = None) -> str:
        """A new token for ``username``; only its hash is kept, so it is shown once."""
        token = new_token()
        now = datetime.now(UTC)
        with Session(self.db) as session, session.begin():
            user = session.scalar(select(UserRow).where(UserRow.username == username))
            if user is None:
                raise UserError(f"no user {username!r}")
            session.add(TokenRow(user_id=user.id, name=name, token_hash=hash_token(token), created_at=now,
                                 expires_at=now + timedelta(seconds=ttl_seconds) if ttl_seconds else None))
        return token

    def revoke_tokens(self, username: str) -> int:
        now = datetime.now(UTC)
        with Session(self.db) as session, session.begin():
            rows = session.scalars(select(TokenRow).join(UserRow, TokenRow.user_id == UserRow.id)
                                   .where(UserRow.username == username, TokenRow.revoked_at.is_(None))).all()
            for row in rows:
                row.revoked_at = now
            return len(rows)

    def authenticate(self, token: str) -> Principal | None:
        now = datetime.now(UTC)
        with Session(self.db) as session:
            found = session.execute(select(TokenRow, UserRow).join(UserRow, TokenRow.user_id == UserRow.id)
                                    .where(TokenRow.token_hash == hash_token(token))).first()
            if found is None:
                return None
            row, user = found
            expires = _utc(row.expires_at)
            if row.revoked_at is not None or user.disabled or (expires is not None and expires <= now):
                return None
            return Principal(user.username, user.role, user.agent_id)  # type: ignore[arg-type]

    def login(self, username: str, password: str) -> LoginResult:
        """Password login issuing a session token; wrong passwords count towards a lockout."""
        now = datetime.now(UTC)
        with Session(self.db) as session, session.begin():
            user = session.scalar(select(UserRow).where(UserRow.username == username))
            if user is None or user.disabled:
                verify_password(password, hash_password("timing-equaliser"))
                return LoginResult(None, reason="invalid credentials")
            locked = _utc(user.locked_until)
            if locked is not None and locked > now:
                return LoginResult(None, reason="account locked after repeated failures")
            if not verify_password(password, user.password_hash):
                failed, until = self.policy.after_failure(user.failed_logins, now.timestamp())
                user.failed_logins = failed
                if until is not None:
                    user.locked_until = datetime.fromtimestamp(until, UTC)
                    user.failed_logins = 0
                    return LoginResult(None, reason="account locked after repeated failures")
                return LoginResult(None, reason="invalid credentials")
            user.failed_logins, user.locked_until = 0, None
            role: Role = user.role  # type: ignore[assignment]
            principal = Principal(user.username, role, user.agent_id)
        token = self.create_token(username, "session", self.session_seconds)
        return LoginResult(principal, token)
