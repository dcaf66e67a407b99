"""Keeping sealed recordings: legal holds, the expiry purge and erasure requests.

The rules are in :mod:`ccengine.recording.retention` (pure); this module applies
them to the store and the vault. Destroying a recording means crypto-shredding
it: its data key is destroyed, the ciphertext and the signed manifest stay, so
the chain still verifies and shows that the recording existed and when it went.
Every destruction runs under an executed four-eyes approval (the API's
``recording.purge`` / ``recording.erase``) and is written to the audit trail.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import Engine, or_, select
from sqlalchemy.orm import Session

from ..audit.chain import AuditTrail
from ..store.schema import CallRow, LegalHoldRow, RetentionRow
from .retention import Kept, RetentionConfig, check_extension, destroy_refusal
from .vault import Vault

HoldKind = Literal["recording", "call", "caller"]


class KeepingError(Exception):
    """A request that cannot be honoured; ``str()`` is the reason to give back."""


@dataclass(frozen=True)
class Outcome:
    recording_id: str
    destroyed: bool
    reason: str = ""  # why not, when not


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


class Keeping:
    def __init__(self, db: Engine, vault: Vault, audit: AuditTrail | None = None,
                 config: RetentionConfig | None = None):
        self.db = db
        self.vault = vault
        self.audit = audit
        self.config = config

    # -- facts ----------------------------------------------------------------------------------
    def kept(self, recording_id: str) -> Kept:
        with Session(self.db) as session:
            row = session.get(RetentionRow, recording_id)
            if row is None:
                raise KeepingError(f"no sealed recording {recording_id}")
            return self._kept(session, row)

    def _kept(self, session: Session, row: RetentionRow) -> Kept:
        caller = session.scalar(select(CallRow.caller_number).where(CallRow.id == row.call_id)) if row.call_id else None
        covers = [(LegalHoldRow.kind == "recording") & (LegalHoldRow.target == row.recording_id)]
        if row.call_id:
            covers.append((LegalHoldRow.kind == "call") & (LegalHoldRow.target == row.call_id))
        if caller:
            covers.append((LegalHoldRow.kind == "caller") & (LegalHoldRow.target == caller))
        holds = session.scalars(select(LegalHoldRow.reason).where(LegalHoldRow.released_at.is_(None), or_(*covers))
                                .order_by(LegalHoldRow.placed_at))
        return Kept(row.recording_id, row.policy, _utc(row.sealed_at), _utc(row.retain_until),
                    holds=tuple(holds), purged=row.purged_at is not None)

    def due(self, now: datetime | None = None) -> list[Kept]:
        """Recordings past their keeping period, not purged (held ones included, marked)."""
        now = now or datetime.now(UTC)
        with Session(self.db) as session:
            rows = session.scalars(select(RetentionRow).where(RetentionRow.purged_at.is_(None),
                                                              RetentionRow.retain_until <= now)
                                   .order_by(RetentionRow.retain_until))
            return [self._kept(session, row) for row in rows]

    # -- holds ----------------------------------------------------------------------------------
    def place_hold(self, kind: HoldKind, target: str, reason: str, by: str) -> str:
        if not reason.strip():
            raise KeepingError("a legal hold needs a reason (case or matter reference)")
        hold_id = str(uuid.uuid4())
        with Session(self.db) as session, session.begin():
            session.add(LegalHoldRow(id=hold_id, kind=kind, target=target, reason=reason.strip(), placed_by=by,
                                     placed_at=datetime.now(UTC)))
        self._audit(by, "legal_hold.place", f"{kind}:{target}", {"hold_id": hold_id, "reason": reason})
        return hold_id

    def release_hold(self, hold_id: str, by: str) -> None:
        with Session(self.db) as session, session.begin():
            row = session.get(LegalHoldRow, hold_id)
            if row is None or row.released_at is not None:
                raise KeepingError(f"no active legal hold {hold_id}")
            if row.placed_by == by:
                raise KeepingError("four-eyes rule: a hold is released by someone other than who placed it")
            row.released_by, row.released_at = by, datetime.now(UTC)
        self._audit(by, "legal_hold.release", hold_id, {})

    # -- extension ------------------------------------------------------------------------------
    def extend(self, recording_id: str, until: datetime, *, by: str, approval_id: str) -> None:
        """Keep a recording longer (e.g. at the regulator's request), within its policy's limit."""
        if self.config is None:
            raise KeepingError("no retention policies are loaded")
        refusal = check_extension(self.config, self.kept(recording_id), until)
        if refusal is not None:
            raise KeepingError(refusal)
        with Session(self.db) as session, session.begin():
            row = session.get(RetentionRow, recording_id)
            assert row is not None
            row.retain_until = until
        self._audit(by, "retention.change", recording_id, {"approval_id": approval_id, "until": until.isoformat()})

    # -- destruction ----------------------------------------------------------------------------
    def destroy(self, recording_ids: list[str], *, by: str, approval_id: str,
                reason: Literal["expired", "erasure"], now: datetime | None = None) -> list[Outcome]:
        """Crypto-shred each recording that no retention period or hold protects;
        the others are refused with the legal ground. Called once an approval
        for exactly this request was executed (see ``ccengine.api.approvals``)."""
        now = now or datetime.now(UTC)
        outcomes = []
        for recording_id in recording_ids:
            try:
                refusal = destroy_refusal(self.kept(recording_id), now)
            except KeepingError as exc:
                refusal = str(exc)
            if refusal is None:
                self.vault.shred(recording_id, reason=f"{reason} (approval {approval_id})")
                with Session(self.db) as session, session.begin():
                    row = session.get(RetentionRow, recording_id)
                    assert row is not None
                    row.purged_at, row.purged_by, row.purge_reason = now, by, reason
            outcomes.append(Outcome(recording_id, refusal is None, refusal or ""))
            self._audit(by, f"recording.{'purge' if reason == 'expired' else 'erase'}", recording_id,
                        {"approval_id": approval_id, "refused": refusal or ""},
                        outcome="success" if refusal is None else "denied")
        return outcomes

    def _audit(self, actor: str, action: str, target: str, details: dict[str, str],
               outcome: str = "success") -> None:
        if self.audit is not None:
            self.audit.append(actor, action, target, source="engine", outcome=outcome, details=details)
