"""Recording manifests: canonical JSON, Ed25519 signatures and an append-only hash chain.

A manifest states what a sealed recording is (ids, times, hashes of plaintext and ciphertext,
segments, PCI mask windows, key id). It is signed so that an edited manifest is detected, and each
signed manifest is appended to a hash chain so that a removed, reordered or swapped manifest is
detected too. A signed *head* file (size + last hash) catches truncation of the chain's tail; rolling
back both the log and the head to an older valid state needs an external anchor (e.g. an RFC 3161
timestamp of the head), which is outside this module.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .keyring import validate_id

MANIFEST_FORMAT = "ccengine.recording-manifest/1"
GENESIS_HASH = "0" * 64
_MANIFEST_DOMAIN = b"ccengine/manifest/v1\0"
_HEAD_DOMAIN = b"ccengine/manifest-chain-head/v1\0"


# --------------------------------------------------------------------------- shared helpers


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON (sorted keys, no spaces, UTF-8) so hashes and signatures are reproducible."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def format_utc(value: datetime) -> str:
    """One fixed textual form for instants; naive datetimes are refused, not guessed."""
    if value.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_utc(value: str) -> datetime:
    if not value.endswith("Z"):
        raise ValueError(f"timestamp {value!r} is not UTC (missing Z)")
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class Finding:
    """One verification failure (or, with severity ``info``, a notable state such as "shredded")."""

    subject: str
    check: str
    detail: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.subject}: {self.detail}"


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_or_create_signing_key(path: Path | str, *, create: bool = True) -> Ed25519PrivateKey:
    """Ed25519 key in PKCS#8 PEM (mode 0600); its public key is kept next to it as ``<path>.pub``."""
    path = Path(path)
    if path.exists():
        if path.stat().st_mode & 0o077:
            raise PermissionError(f"signing key {path} is accessible to group/other; chmod 600")
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return key
    if not create:
        raise FileNotFoundError(f"signing key {path} does not exist")
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
        fh.flush()
        os.fsync(fh.fileno())
    _write_atomic(public_key_path(path), public_key_pem(key.public_key()))
    return key


def public_key_path(signing_key_path: Path) -> Path:
    return signing_key_path.with_name(signing_key_path.name + ".pub")


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(path: Path | str) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return key


def key_fingerprint(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:32]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def verify_ed25519(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


# --------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class MaskWindow:
    """A PCI mask window as millisecond offsets from the recording start (ints: canonical JSON)."""

    start_ms: int
    end_ms: int
    reason: str

    def __post_init__(self) -> None:
        if not 0 <= self.start_ms <= self.end_ms:
            raise ValueError(f"bad mask window {self.start_ms}..{self.end_ms} ms")

    @classmethod
    def from_seconds(cls, start: float, end: float, reason: str) -> MaskWindow:
        return cls(int(start * 1000), -(-int(end * 1_000_000) // 1000), reason)

    @property
    def seconds(self) -> tuple[float, float]:
        return self.start_ms / 1000, self.end_ms / 1000

    def to_json(self) -> dict[str, Any]:
        return {"start_ms": self.start_ms, "end_ms": self.end_ms, "reason": self.reason}


@dataclass(frozen=True)
class Segment:
    """A contiguous piece of capture; a restart after a tamper attempt starts a new segment."""

    index: int
    started_at: datetime
    ended_at: datetime
    reason: str = "start"

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "started_at": format_utc(self.started_at),
            "ended_at": format_utc(self.ended_at),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Manifest:
    recording_id: str
    call_ids: tuple[str, ...]
    started_at: datetime
    ended_at: datetime
    plaintext_sha256: str
    ciphertext_sha256: str
    plaintext_bytes: int
    ciphertext_bytes: int
    key_id: str
    key_ref: str
    chunk_size: int
    sealed_at: datetime
    segments: tuple[Segment, ...] = ()
    mask_windows: tuple[MaskWindow, ...] = ()
    format: str = field(default=MANIFEST_FORMAT)

    def __post_init__(self) -> None:
        validate_id(self.recording_id, "recording id")
        if self.ended_at < self.started_at:
            raise ValueError("recording ends before it starts")
        for name in ("plaintext_sha256", "ciphertext_sha256"):
            value = getattr(self, name)
            if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
                raise ValueError(f"{name} must be 64 lowercase hex digits")

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "recording_id": self.recording_id,
            "call_ids": list(self.call_ids),
            "started_at": format_utc(self.started_at),
            "ended_at": format_utc(self.ended_at),
            "plaintext_sha256": self.plaintext_sha256,
            "ciphertext_sha256": self.ciphertext_sha256,
            "plaintext_bytes": self.plaintext_bytes,
            "ciphertext_bytes": self.ciphertext_bytes,
            "key_id": self.key_id,
            "key_ref": self.key_ref,
            "chunk_size": self.chunk_size,
            "sealed_at": format_utc(self.sealed_at),
            "segments": [s.to_json() for s in self.segments],
            "mask_windows": [w.to_json() for w in self.mask_windows],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Manifest:
        if data.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"unknown manifest format {data.get('format')!r}")
        return cls(
            recording_id=str(data["recording_id"]),
            call_ids=tuple(str(c) for c in data["call_ids"]),
            started_at=parse_utc(data["started_at"]),
            ended_at=parse_utc(data["ended_at"]),
            plaintext_sha256=str(data["plaintext_sha256"]),
            ciphertext_sha256=str(data["ciphertext_sha256"]),
            plaintext_bytes=int(data["plaintext_bytes"]),
            ciphertext_bytes=int(data["ciphertext_bytes"]),
            key_id=str(data["key_id"]),
            key_ref=str(data["key_ref"]),
            chunk_size=int(data["chunk_size"]),
            sealed_at=parse_utc(data["sealed_at"]),
            segments=tuple(
                Segment(
                    int(s["index"]), parse_utc(s["started_at"]), parse_utc(s["ended_at"]), str(s["reason"])
                )
                for s in data["segments"]
            ),
            mask_windows=tuple(
                MaskWindow(int(w["start_ms"]), int(w["end_ms"]), str(w["reason"]))
                for w in data["mask_windows"]
            ),
        )

    def canonical(self) -> bytes:
        return canonical_json(self.to_json())

    @property
    def duration_s(self) -> float:
        return (self.ended_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class SignedManifest:
    manifest: Manifest
    signature: bytes
    signer: str

    def to_json(self) -> dict[str, Any]:
        return {"manifest": self.manifest.to_json(), "signature": b64(self.signature), "signer": self.signer}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SignedManifest:
        return cls(Manifest.from_json(data["manifest"]), unb64(data["signature"]), str(data["signer"]))

    def canonical(self) -> bytes:
        return canonical_json(self.to_json())

    def verify(self, key: Ed25519PublicKey) -> bool:
        return verify_ed25519(key, self.signature, _MANIFEST_DOMAIN + self.manifest.canonical())


class ManifestSigner:
    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_key = key.public_key()
        self.fingerprint = key_fingerprint(self.public_key)

    @classmethod
    def from_file(cls, path: Path | str, *, create: bool = True) -> ManifestSigner:
        return cls(load_or_create_signing_key(path, create=create))

    def sign(self, manifest: Manifest) -> SignedManifest:
        return SignedManifest(
            manifest, self._key.sign(_MANIFEST_DOMAIN + manifest.canonical()), self.fingerprint
        )

    def sign_bytes(self, domain: bytes, data: bytes) -> bytes:
        return self._key.sign(domain + data)


# --------------------------------------------------------------------------- hash chain


@dataclass(frozen=True)
class ChainEntry:
    seq: int
    prev_hash: str
    signed: SignedManifest
    hash: str

    def body(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "prev_hash": self.prev_hash,
            "recording_id": self.signed.manifest.recording_id,
            "signed_manifest": self.signed.to_json(),
        }

    def computed_hash(self) -> str:
        return sha256_hex(canonical_json(self.body()))

    def to_line(self) -> bytes:
        return canonical_json({**self.body(), "hash": self.hash}) + b"\n"


class ChainIntegrityError(Exception):
    """The chain is not in a state that may be extended."""


class ManifestChain:
    """Append-only JSON-lines log: one entry per sealed manifest, each holding the previous hash.

    The full signed manifest is in the entry, so the chain alone can rebuild every manifest file.
    """

    def __init__(self, path: Path | str, signer: ManifestSigner | None = None) -> None:
        self.path = Path(path)
        self.head_path = self.path.with_name(self.path.name + ".head")
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.signer = signer

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _raw_lines(self) -> list[bytes]:
        if not self.path.exists():
            return []
        return [line for line in self.path.read_bytes().split(b"\n") if line.strip()]

    def _tail(self) -> tuple[int, str]:
        """(next seq, last hash); refuses to extend a log that disagrees with its signed head,
        since appending would re-sign (and so hide) a truncation or edit."""
        lines = self._raw_lines()
        last = _parse_entry(lines[-1]) if lines else None
        size, head = (last.seq, last.hash) if last else (0, GENESIS_HASH)
        if self.head_path.exists():
            signed_head = json.loads(self.head_path.read_bytes())
            if (signed_head["size"], signed_head["head"]) != (size, head) or size != len(lines):
                raise ChainIntegrityError(
                    f"chain log ({len(lines)} entries) disagrees with its signed head; run verify"
                )
        elif lines:
            raise ChainIntegrityError("chain log exists without a signed head; run verify")
        return size + 1, head

    def append(self, signed: SignedManifest) -> ChainEntry:
        if self.signer is None:
            raise RuntimeError("a signer is required to append (the head is re-signed)")
        with self._locked():
            seq, prev = self._tail()
            draft = ChainEntry(seq, prev, signed, "")
            entry = ChainEntry(seq, prev, signed, draft.computed_hash())
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, entry.to_line())
                os.fsync(fd)
            finally:
                os.close(fd)
            self._write_head(seq, entry.hash)
            return entry

    def _write_head(self, size: int, head: str) -> None:
        assert self.signer is not None
        body = {"size": size, "head": head, "signer": self.signer.fingerprint}
        sig = self.signer.sign_bytes(_HEAD_DOMAIN, canonical_json(body))
        _write_atomic(self.head_path, canonical_json({**body, "signature": b64(sig)}) + b"\n")

    def entries(self) -> Iterator[ChainEntry]:
        """Well-formed entries only; ``verify`` reports malformed lines."""
        for line in self._raw_lines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                yield _parse_entry(line)

    def find(self, recording_id: str) -> ChainEntry | None:
        for entry in self.entries():
            if entry.signed.manifest.recording_id == recording_id:
                return entry
        return None

    def verify(self, key: Ed25519PublicKey) -> list[Finding]:
        """Check every link; the first finding names the first broken entry (by position)."""
        findings: list[Finding] = []
        prev = GENESIS_HASH
        seen: dict[str, int] = {}
        lines = self._raw_lines()
        for pos, line in enumerate(lines, start=1):
            subject = f"chain entry {pos}"
            try:
                entry = _parse_entry(line)
            except (ValueError, KeyError, TypeError) as exc:
                findings.append(Finding(subject, "entry-format", f"unreadable entry ({exc})"))
                prev = "unknown"
                continue
            if entry.seq != pos:
                findings.append(
                    Finding(
                        subject,
                        "seq",
                        f"seq is {entry.seq}, expected {pos} (entries missing, inserted or reordered)",
                    )
                )
            if prev != "unknown" and entry.prev_hash != prev:
                findings.append(
                    Finding(
                        subject,
                        "prev-hash",
                        "prev-hash mismatch (previous entry removed, edited or reordered)",
                    )
                )
            if entry.computed_hash() != entry.hash:
                findings.append(Finding(subject, "entry-hash", "entry hash mismatch (entry edited)"))
            if not entry.signed.verify(key):
                rid = entry.signed.manifest.recording_id
                findings.append(Finding(subject, "manifest-signature", f"manifest {rid}: signature invalid"))
            rid = entry.signed.manifest.recording_id
            if rid in seen:
                findings.append(
                    Finding(subject, "duplicate", f"recording {rid} already sealed in entry {seen[rid]}")
                )
            seen.setdefault(rid, pos)
            prev = entry.hash
        findings += self._verify_head(key, len(lines), prev)
        return findings

    def _verify_head(self, key: Ed25519PublicKey, size: int, last_hash: str) -> list[Finding]:
        if not self.head_path.exists():
            if size:
                return [
                    Finding("chain head", "head-missing", "signed head missing (cannot rule out truncation)")
                ]
            return []
        try:
            head = json.loads(self.head_path.read_bytes())
            body = {k: head[k] for k in ("size", "head", "signer")}
            sig = unb64(head["signature"])
        except (ValueError, KeyError, TypeError) as exc:
            return [Finding("chain head", "head-format", f"unreadable signed head ({exc})")]
        if not verify_ed25519(key, sig, _HEAD_DOMAIN + canonical_json(body)):
            return [Finding("chain head", "head-signature", "signature invalid")]
        if body["size"] > size:
            return [
                Finding(
                    "chain head",
                    "truncation",
                    f"log has {size} entries but the signed head says {body['size']} (chain truncated)",
                )
            ]
        if body["size"] < size:
            return [
                Finding(
                    "chain head",
                    "head-stale",
                    f"log has {size} entries but the signed head says {body['size']} (unsigned appends)",
                )
            ]
        if body["head"] != last_hash:
            return [Finding("chain head", "head-hash", "last entry hash differs from the signed head")]
        return []


def _parse_entry(line: bytes) -> ChainEntry:
    data = json.loads(line)
    return ChainEntry(
        seq=int(data["seq"]),
        prev_hash=str(data["prev_hash"]),
        signed=SignedManifest.from_json(data["signed_manifest"]),
        hash=str(data["hash"]),
    )


def windows_from_seconds(windows: Sequence[tuple[float, float, str]]) -> tuple[MaskWindow, ...]:
    return tuple(MaskWindow.from_seconds(a, b, r) for a, b, r in windows)
