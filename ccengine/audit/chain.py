"""Hash-chained audit trail on SQLAlchemy 2 (PCI DSS 10.2: who, what, when, where from, outcome).

Each row carries the previous row's hash, and its own hash over all of its fields, so an edited row
breaks its own hash, a deleted row leaves a gap in ``seq`` and a broken link, and a reordered row
breaks links. The database triggers (``schema``) refuse UPDATE/DELETE in the first place; the chain
is what still catches tampering by someone who can drop a trigger. Removing the newest rows is only
detectable against a previously exported (signed) range or an external anchor of the head hash.

``export`` writes a range as JSON signed with Ed25519 that ``verify_export`` checks offline, without
the database.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Engine, create_engine, func, insert, select
from sqlalchemy.exc import IntegrityError

from ccengine.recording.manifest import (
    GENESIS_HASH,
    Finding,
    b64,
    canonical_json,
    format_utc,
    key_fingerprint,
    sha256_hex,
    unb64,
    verify_ed25519,
)
from ccengine.recording.pcimask import find_card_numbers

from .schema import audit_log, metadata

OUTCOMES = frozenset({"success", "failure", "denied", "error"})
EXPORT_FORMAT = "ccengine.audit-export/1"
_EXPORT_DOMAIN = b"ccengine/audit-export/v1\0"
_APPEND_RETRIES = 8


class SensitiveDataError(ValueError):
    """Refused: the entry would store a card number (PCI DSS 3.3/3.5 forbids it in logs)."""


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    ts: str
    actor: str
    action: str
    target: str
    source: str
    outcome: str
    details: str
    prev_hash: str
    hash: str

    def computed_hash(self) -> str:
        body = asdict(self)
        del body["hash"]
        return sha256_hex(canonical_json(body))

    @property
    def details_obj(self) -> Any:
        return json.loads(self.details)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuditEntry:
        return cls(
            seq=int(data["seq"]),
            ts=str(data["ts"]),
            actor=str(data["actor"]),
            action=str(data["action"]),
            target=str(data["target"]),
            source=str(data["source"]),
            outcome=str(data["outcome"]),
            details=str(data["details"]),
            prev_hash=str(data["prev_hash"]),
            hash=str(data["hash"]),
        )


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AuditTrail:
    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self.engine = engine
        self._clock = clock

    @classmethod
    def from_url(cls, url: str, *, create: bool = True) -> AuditTrail:
        trail = cls(create_engine(url))
        if create:
            trail.create_schema()
        return trail

    def create_schema(self) -> None:
        """Create the table and, via DDL events, the append-only triggers for this dialect."""
        metadata.create_all(self.engine)

    def append(
        self,
        actor: str,
        action: str,
        target: str = "",
        *,
        source: str = "",
        outcome: str = "success",
        details: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Append one entry; concurrent appenders race on the ``seq`` primary key and retry."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}")
        if not actor or not action:
            raise ValueError("actor and action are required")
        details_text = canonical_json(dict(details or {})).decode()
        for text in (actor, action, target, source, details_text):
            if find_card_numbers(text):
                raise SensitiveDataError("refusing to write a card number into the audit trail")
        for _ in range(_APPEND_RETRIES):
            try:
                with self.engine.begin() as conn:
                    last = conn.execute(
                        select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
                    ).first()
                    seq, prev = (int(last.seq) + 1, str(last.hash)) if last else (1, GENESIS_HASH)
                    draft = AuditEntry(
                        seq, format_utc(self._clock()), actor, action, target, source, outcome,
                        details_text, prev, "",
                    )  # fmt: skip
                    entry = AuditEntry(**{**asdict(draft), "hash": draft.computed_hash()})
                    conn.execute(insert(audit_log).values(**entry.to_json()))
                return entry
            except IntegrityError:
                continue
        raise RuntimeError("could not append to the audit trail: too much contention")

    def entries(self, start: int | None = None, end: int | None = None) -> Iterator[AuditEntry]:
        query = select(audit_log).order_by(audit_log.c.seq)
        if start is not None:
            query = query.where(audit_log.c.seq >= start)
        if end is not None:
            query = query.where(audit_log.c.seq <= end)
        with self.engine.connect() as conn:
            for row in conn.execution_options(yield_per=1000).execute(query):
                yield AuditEntry.from_json(dict(row._mapping))

    def seq_range_for_time(self, since: datetime | None, until: datetime | None) -> tuple[int, int] | None:
        """Map a time range to the seq range that covers it (exports are by seq to stay contiguous)."""
        query = select(func.min(audit_log.c.seq), func.max(audit_log.c.seq))
        if since is not None:
            query = query.where(audit_log.c.ts >= format_utc(since))
        if until is not None:
            query = query.where(audit_log.c.ts <= format_utc(until))
        with self.engine.connect() as conn:
            lo, hi = conn.execute(query).one()
        return None if lo is None else (int(lo), int(hi))

    def verify(self) -> list[Finding]:
        """Walk the whole chain; the first finding names the first broken entry."""
        findings: list[Finding] = []
        expected_seq, prev_hash, prev_seq = 1, GENESIS_HASH, 0
        for entry in self.entries():
            subject = f"audit entry {entry.seq}"
            if entry.seq != expected_seq:
                missing = (
                    f"{expected_seq}" if entry.seq == expected_seq + 1 else f"{expected_seq}-{entry.seq - 1}"
                )
                findings.append(
                    Finding(
                        f"audit entry {missing}",
                        "gap",
                        f"missing: seq jumps from {prev_seq} to {entry.seq} (row deleted)",
                    )
                )
            if entry.prev_hash != prev_hash:
                findings.append(
                    Finding(
                        subject,
                        "prev-hash",
                        f"prev-hash mismatch (entry {prev_seq} was edited or entries before it removed)",
                    )
                )
            if entry.computed_hash() != entry.hash:
                findings.append(Finding(subject, "entry-hash", "hash mismatch (row edited)"))
            expected_seq, prev_hash, prev_seq = entry.seq + 1, entry.hash, entry.seq
        return findings

    def export(
        self,
        out: Path | str,
        signing_key: Ed25519PrivateKey,
        start: int | None = None,
        end: int | None = None,
    ) -> dict[str, Any]:
        """Write entries ``start..end`` (inclusive seq) as a signed JSON document; returns it.

        The range is exported as stored, broken links included, so the export is evidence of the
        database's state; ``verify_export`` will report any break.
        """
        entries = [e.to_json() for e in self.entries(start, end)]
        public = signing_key.public_key()
        doc: dict[str, Any] = {
            "format": EXPORT_FORMAT,
            "exported_at": format_utc(self._clock()),
            "first_seq": entries[0]["seq"] if entries else None,
            "last_seq": entries[-1]["seq"] if entries else None,
            "count": len(entries),
            "anchor_prev_hash": entries[0]["prev_hash"] if entries else None,
            "head_hash": entries[-1]["hash"] if entries else None,
            "signer": key_fingerprint(public),
            "public_key": b64(
                public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            ),
            "entries": entries,
        }
        doc["signature"] = b64(signing_key.sign(_EXPORT_DOMAIN + canonical_json(doc)))
        Path(out).write_bytes(json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n")
        return doc


def verify_export(
    source: Path | str | Mapping[str, Any], public_key: Ed25519PublicKey | None = None
) -> list[Finding]:
    """Offline check of an export: signature, contiguity, links and every entry's hash.

    Without ``public_key`` the key embedded in the export is used and an ``info`` finding says so:
    that proves integrity since signing, not who signed; pin the key to prove origin.
    """
    if isinstance(source, Mapping):
        doc = dict(source)
    else:
        try:
            doc = json.loads(Path(source).read_bytes())
        except (OSError, ValueError) as exc:
            return [Finding("export", "format", f"unreadable ({exc})")]
    findings: list[Finding] = []
    if doc.get("format") != EXPORT_FORMAT:
        return [Finding("export", "format", f"unknown format {doc.get('format')!r}")]
    try:
        signature = unb64(doc.pop("signature"))
        if public_key is None:
            public_key = Ed25519PublicKey.from_public_bytes(unb64(doc["public_key"]))
            findings.append(
                Finding(
                    "export",
                    "signer-unpinned",
                    f"signature checked against embedded key {doc['signer']}",
                    "info",
                )
            )
        elif key_fingerprint(public_key) != doc["signer"]:
            findings.append(Finding("export", "signer", f"signed by {doc['signer']}, not the pinned key"))
        raw_entries = list(doc["entries"])
    except (KeyError, TypeError, ValueError) as exc:
        return [Finding("export", "format", f"malformed export ({exc})")]
    if not verify_ed25519(public_key, signature, _EXPORT_DOMAIN + canonical_json(doc)):
        findings.append(Finding("export", "signature", "signature invalid (export modified after signing)"))
    if doc.get("count") != len(raw_entries):
        findings.append(
            Finding("export", "count", f"holds {len(raw_entries)} entries, header says {doc.get('count')}")
        )
    prev: AuditEntry | None = None
    for pos, raw in enumerate(raw_entries):
        try:
            entry = AuditEntry.from_json(raw)
        except (KeyError, TypeError, ValueError) as exc:
            findings.append(Finding(f"export entry #{pos}", "entry-format", f"unreadable ({exc})"))
            prev = None
            continue
        subject = f"audit entry {entry.seq}"
        if prev is None and pos == 0 and entry.prev_hash != doc.get("anchor_prev_hash"):
            findings.append(Finding(subject, "anchor", "first entry does not match the export's anchor hash"))
        if prev is not None:
            if entry.seq != prev.seq + 1:
                findings.append(Finding(subject, "gap", f"seq jumps from {prev.seq} to {entry.seq}"))
            if entry.prev_hash != prev.hash:
                findings.append(Finding(subject, "prev-hash", "prev-hash mismatch"))
        if entry.computed_hash() != entry.hash:
            findings.append(Finding(subject, "entry-hash", "hash mismatch (entry edited)"))
        prev = entry
    if prev is not None and prev.hash != doc.get("head_hash"):
        findings.append(Finding("export", "head", "last entry hash differs from the export's head hash"))
    return findings
