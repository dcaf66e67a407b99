"""Users and API tokens in the database (blocking; callers run it in a worker thread)."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from .security import ROLES, LoginPolicy, Principal, Role, hash_password, hash_token, new_token, verify_password
from .tables import TokenRow, UserRow


class UserError(ValueError):
    """A user operation was refused; the message says why, ``status`` how an API answers it."""

    def __init__(self, reason: str, status: int = 422):
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class LoginResult:
    principal: Principal | None
    token: str | None = None
    reason: str = ""


def _utc(at: datetime | None) -> datetime | None:
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


def _iso(at: datetime | None) -> str | None:
    utc = _utc(at)
    return utc.isoformat() if utc is not None else None


def _user(session: Session, username: str) -> UserRow:
    user = session.scalar(select(UserRow).where(UserRow.username == username))
    if user is None:
        raise UserError(f"no user {username!r}", 404)
    return user


def _revoke_all(session: Session, username: str, now: datetime) -> int:
    rows = session.scalars(select(TokenRow).join(UserRow, TokenRow.user_id == UserRow.id)
                           .where(UserRow.username == username, TokenRow.revoked_at.is_(None))).all()
    for row in rows:
        row.revoked_at = now
    return len(rows)


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
                raise UserError(f"user {username!r} exists", 409)
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
                raise UserError(f"no user {username!r}", 404)
            session.add(TokenRow(user_id=user.id, name=name, token_hash=hash_token(token), created_at=now,
                                 expires_at=now + timedelta(seconds=ttl_seconds) if ttl_seconds else None))
        return token

    def revoke_tokens(self, username: str) -> int:
        with Session(self.db) as session, session.begin():
            return _revoke_all(session, username, datetime.now(UTC))

    def tokens(self, username: str) -> builtins.list[dict[str, object]]:
        """The user's tokens without their hashes: what an admin needs to pick one to revoke."""
        with Session(self.db) as session:
            user = _user(session, username)
            rows = session.scalars(select(TokenRow).where(TokenRow.user_id == user.id).order_by(TokenRow.id))
            return [{"id": t.id, "name": t.name, "created_at": _iso(t.created_at), "expires_at": _iso(t.expires_at),
                     "revoked_at": _iso(t.revoked_at)} for t in rows]

    def revoke_token(self, username: str, token_id: int) -> None:
        with Session(self.db) as session, session.begin():
            user = _user(session, username)
            row = session.scalar(select(TokenRow).where(TokenRow.id == token_id, TokenRow.user_id == user.id))
            if row is None:
                raise UserError(f"user {username!r} has no token {token_id}", 404)
            if row.revoked_at is not None:
                raise UserError(f"token {token_id} is already revoked", 409)
            row.revoked_at = datetime.now(UTC)

    def change(self, actor: str, username: str, *, role: str | None = None, agent_id: str | None = None,
               disabled: bool | None = None) -> dict[str, object]:
        """Change a user's role (and agent id) or disable / enable them. Disabling revokes every token
        and session at once. An admin cannot change or disable themselves, and the last enabled admin
        cannot be demoted or disabled (nobody could administer users any more)."""
        if role is not None and role not in ROLES:
            raise UserError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        with Session(self.db) as session, session.begin():
            # lock the enabled admins (PostgreSQL; SQLite serialises writers): two admins demoting
            # each other at once cannot both pass the last-admin check
            admins = session.scalars(select(UserRow).where(UserRow.role == "admin", UserRow.disabled.is_(False))
                                     .with_for_update()).all()
            user = _user(session, username)
            if username == actor:
                raise UserError("an admin cannot change their own role or disable themselves", 409)
            demoted = (role is not None and role != "admin") or disabled is True
            if demoted and user.role == "admin" and not user.disabled and len(admins) <= 1:
                raise UserError(f"{username!r} is the last enabled admin", 409)
            if role is not None:
                if role == "agent" and not (agent_id or user.agent_id):
                    raise UserError("an agent user needs the agent id it speaks for")
                user.role = role
            if agent_id is not None:
                user.agent_id = agent_id
            revoked = 0
            if disabled is not None:
                user.disabled = disabled
                if disabled:
                    revoked = _revoke_all(session, username, datetime.now(UTC))
            return {"username": user.username, "role": user.role, "agent_id": user.agent_id,
                    "disabled": user.disabled, "tokens_revoked": revoked}

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
            return Principal(user.username, user.role, user.agent_id, row.id)  # type: ignore[arg-type]

    def principal(self, username: str) -> Principal | None:
        """Who ``username`` is now (None if unknown or disabled): a deferred action acts with today's rights."""
        with Session(self.db) as session:
            user = session.scalar(select(UserRow).where(UserRow.username == username))
            if user is None or user.disabled:
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
