"""Four-eyes approvals: a sensitive operation is requested by one person and approved by a
different person with an approver role, before it expires, once.

The rules (``check_decision``) are pure; the store applies them with a conditional UPDATE
(``WHERE status = 'pending'``) so two racing approvals cannot both succeed, and an
approval is consumed by executing it, so it cannot be replayed.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from .security import Principal, Role, hash_password
from .tables import ApprovalRow, TokenRow, UserRow


@dataclass(frozen=True)
class Rule:
    requesters: tuple[Role, ...]
    approvers: tuple[Role, ...]


RULES: dict[str, Rule] = {
    "recording.export": Rule(("qa", "compliance", "supervisor"), ("compliance",)),
    "recording.purge": Rule(("compliance",), ("compliance", "admin")),
    "recording.erase": Rule(("compliance",), ("compliance", "admin")),
    "retention.change": Rule(("compliance", "admin"), ("compliance", "admin")),
    "key.destroy": Rule(("admin",), ("compliance",)),
    "password.reset": Rule(("admin", "supervisor"), ("admin",)),
    "transfer.confirm_high_value": Rule(("agent", "supervisor"), ("supervisor",)),
}
REQUESTERS: tuple[Role, ...] = tuple(sorted({r for rule in RULES.values() for r in rule.requesters}))
APPROVERS: tuple[Role, ...] = tuple(sorted({r for rule in RULES.values() for r in rule.approvers}))


class Refused(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def check_decision(row: ApprovalRow, who: Principal, now: datetime) -> None:
    """Raise ``Refused`` unless ``who`` may approve or reject ``row`` now."""
    if row.status != "pending":
        raise Refused(409, f"request already {row.status}: an approval cannot be replayed")
    if now >= _utc(row.expires_at):
        raise Refused(410, "request expired")
    if who.username == row.requested_by:
        raise Refused(403, "four-eyes rule: the requester cannot approve their own request")
    if who.role not in RULES[row.action].approvers:
        raise Refused(403, f"role {who.role} may not approve {row.action}")


def as_json(row: ApprovalRow) -> dict[str, Any]:
    return {"id": row.id, "action": row.action, "target": row.target, "params": row.params,
            "requested_by": row.requested_by, "requested_at": _utc(row.requested_at).isoformat(),
            "expires_at": _utc(row.expires_at).isoformat(), "status": row.status, "decided_by": row.decided_by}


# performs an executed request: (approval id, target, params, who) -> result fields
Executor = Callable[[str, str, dict[str, Any], str], dict[str, Any]]
# refuses a request at once when it could never be carried out: (target, params) -> reason or None
Check = Callable[[str, dict[str, Any]], str | None]


class Approvals:
    def __init__(self, db: Engine, ttl_seconds: float, *, executors: Mapping[str, Executor] | None = None,
                 checks: Mapping[str, Check] | None = None):
        self.db = db
        self.ttl = timedelta(seconds=ttl_seconds)
        self.executors = dict(executors or {})
        self.checks = dict(checks or {})

    def request(self, who: Principal, action: str, target: str, params: dict[str, Any]) -> dict[str, Any]:
        rule = RULES.get(action)
        if rule is None:
            raise Refused(422, f"unknown action {action!r}; one of {', '.join(sorted(RULES))}")
        if who.role not in rule.requesters:
            raise Refused(403, f"role {who.role} may not request {action}")
        check = self.checks.get(action)
        if check is not None and (refusal := check(target, params)) is not None:
            raise Refused(409, refusal)
        now = datetime.now(UTC)
        row = ApprovalRow(id=uuid.uuid4().hex, action=action, target=target, params=params,
                          requested_by=who.username, requested_at=now, expires_at=now + self.ttl, status="pending")
        with Session(self.db) as session, session.begin():
            session.add(row)
            session.flush()
            return as_json(row)

    def list(self, status: str | None = None) -> list[dict[str, Any]]:
        with Session(self.db) as session:
            query = select(ApprovalRow).order_by(ApprovalRow.requested_at.desc()).limit(500)
            if status:
                query = query.where(ApprovalRow.status == status)
            return [as_json(row) for row in session.scalars(query)]

    def decide(self, approval_id: str, who: Principal, approve: bool, now: datetime | None = None
               ) -> dict[str, Any]:
        now = now or datetime.now(UTC)
        with Session(self.db) as session, session.begin():
            row = session.get(ApprovalRow, approval_id)
            if row is None:
                raise Refused(404, f"no approval request {approval_id}")
            try:
                check_decision(row, who, now)
            except Refused as exc:
                if exc.status == 410:
                    self._expire(approval_id)
                raise
            done = session.execute(update(ApprovalRow)
                                   .where(ApprovalRow.id == approval_id, ApprovalRow.status == "pending")
                                   .values(status="approved" if approve else "rejected", decided_by=who.username,
                                           decided_at=now))
            if done.rowcount != 1:  # type: ignore[attr-defined]
                raise Refused(409, "request decided concurrently")
            session.refresh(row)
            return as_json(row)

    def _expire(self, approval_id: str) -> None:
        """Recorded in its own transaction: the refusal that follows rolls the caller's back."""
        with Session(self.db) as session, session.begin():
            session.execute(update(ApprovalRow).where(ApprovalRow.id == approval_id, ApprovalRow.status == "pending")
                            .values(status="expired"))

    def execute(self, approval_id: str, who: Principal) -> dict[str, Any]:
        """Consume an approved request (once); performs what the API itself can perform."""
        now = datetime.now(UTC)
        with Session(self.db) as session, session.begin():
            row = session.get(ApprovalRow, approval_id)
            if row is None:
                raise Refused(404, f"no approval request {approval_id}")
            if row.requested_by != who.username:
                raise Refused(403, "only the requester executes an approved request")
            if row.status != "approved":
                raise Refused(409, f"request is {row.status}, not approved: it cannot be executed")
            if now >= _utc(row.expires_at):
                raise Refused(410, "approval expired before execution")
            done = session.execute(update(ApprovalRow)
                                   .where(ApprovalRow.id == approval_id, ApprovalRow.status == "approved")
                                   .values(status="executed"))
            if done.rowcount != 1:  # type: ignore[attr-defined]
                raise Refused(409, "request already executed")
            result: dict[str, Any] = {"id": row.id, "action": row.action, "target": row.target, "status": "executed"}
            if row.action == "password.reset":
                result["temporary_password"] = _reset_password(session, row.target, now)
            action, target, params = row.action, row.target, dict(row.params or {})
        executor = self.executors.get(action)
        if executor is not None:  # claimed (committed) first, so a concurrent execute cannot run it twice
            try:
                result.update(executor(approval_id, target, params, who.username))
            except Exception:
                with Session(self.db) as session, session.begin():  # not done: it may be executed again
                    session.execute(update(ApprovalRow).where(ApprovalRow.id == approval_id)
                                    .values(status="approved"))
                raise
        return result


def _reset_password(session: Session, username: str, now: datetime) -> str:
    user = session.scalar(select(UserRow).where(UserRow.username == username))
    if user is None:
        raise Refused(404, f"no user {username!r}")
    password = secrets.token_urlsafe(12)
    user.password_hash, user.failed_logins, user.locked_until = hash_password(password), 0, None
    session.execute(update(TokenRow).where(TokenRow.user_id == user.id, TokenRow.revoked_at.is_(None))
                    .values(revoked_at=now))
    return password


APPROVALS: web.AppKey[Approvals] = web.AppKey("approvals", Approvals)
