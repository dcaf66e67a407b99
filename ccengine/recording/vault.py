"""Filesystem recording vault: seal (encrypt + hash + sign + chain), open, verify, shred.

Layout under ``root``::

    recordings/<id>/data.ccs        streamcrypt ciphertext (header holds the DEK wrapped by the
                                    recording key; context = recording id)
    recordings/<id>/manifest.json   signed manifest
    manifests.jsonl (+ .head)       hash chain of signed manifests, signed head
    keystore/<id>.key               recording key wrapped by the KEK (destroyed => shredded)
    keyring/, signing.key           defaults for a lab; production passes a KMS-backed KeyRing and
                                    a signing key (and a pinned public key) kept outside the vault

The chain append is the commit point of a seal: a recording directory without a chain entry is
reported by ``verify``. Retention, legal hold and four-eyes approval are enforced by the caller of
``shred`` (the retention service), not here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .fileio import fsync_dir
from .keyring import FileKeyRing, FileKeyStore, KeyRing, KeyRingError, StaticKeyWrapper, validate_id
from .manifest import (
    ChainEntry,
    Finding,
    Manifest,
    ManifestChain,
    ManifestSigner,
    MaskWindow,
    Segment,
    SignedManifest,
    _write_atomic,
    load_public_key,
    public_key_path,
)
from .pcimask import MaskedReader, mask_wav
from .streamcrypt import DEFAULT_CHUNK_SIZE, DecryptingReader, StreamError, encrypt_stream

DATA_FILE = "data.ccs"
MANIFEST_FILE = "manifest.json"


class VaultError(Exception):
    pass


@dataclass(frozen=True)
class ManifestFields:
    """What the capture side knows about a recording; the vault adds hashes, sizes and keys."""

    recording_id: str
    call_ids: Sequence[str]
    started_at: datetime
    ended_at: datetime
    segments: Sequence[Segment] = ()
    mask_windows: Sequence[MaskWindow] = ()


@dataclass(frozen=True)
class SealedRecord:
    manifest: Manifest
    chain_seq: int
    path: Path


@dataclass(frozen=True)
class RecordingSummary:
    manifest: Manifest
    chain_seq: int
    key_status: str


class _Sha256Count:
    """SHA-256 and byte count of a stream fed piece by piece (from a streamcrypt lane)."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.size = 0

    def update(self, data: bytes | memoryview) -> None:
        self._hash.update(data)
        self.size += len(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _hash_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size




class Vault:
    def __init__(
        self,
        root: Path | str,
        keyring: KeyRing | None = None,
        *,
        signing_key: Path | str | None = None,
        public_key: Ed25519PublicKey | None = None,
        keystore_dir: Path | str | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        create: bool = True,
    ) -> None:
        self.root = Path(root)
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        elif not self.root.is_dir():
            raise VaultError(f"vault directory {self.root} does not exist")
        if keyring is None and (create or (self.root / "keyring").exists()):
            keyring = FileKeyRing(self.root / "keyring", create=create)
        self.keyring = keyring
        self.keystore = FileKeyStore(keystore_dir or self.root / "keystore", keyring, create=create)
        self.signing_key_path = Path(signing_key) if signing_key else self.root / "signing.key"
        self._public_key = public_key
        self._signer: ManifestSigner | None = None
        self.chunk_size = chunk_size
        self.recordings_dir = self.root / "recordings"
        self.chain = ManifestChain(self.root / "manifests.jsonl")

    # ------------------------------------------------------------------ keys

    @property
    def signer(self) -> ManifestSigner:
        if self._signer is None:
            self._signer = ManifestSigner.from_file(self.signing_key_path, create=True)
            self.chain.signer = self._signer
        return self._signer

    @property
    def public_key(self) -> Ed25519PublicKey:
        """Pin ``public_key=`` in production: a key read from the vault itself proves little."""
        if self._public_key is None:
            pub = public_key_path(self.signing_key_path)
            if pub.exists():
                self._public_key = load_public_key(pub)
            else:
                self._public_key = self.signer.public_key
        return self._public_key

    def rotate_kek(self, *, rewrap: bool = True) -> str:
        """New KEK for new recordings; with ``rewrap`` existing recording keys move to it too."""
        if self.keyring is None:
            raise VaultError("no keyring configured")
        key_id = self.keyring.rotate()
        if rewrap:
            self.keystore.rewrap_all()
        return key_id

    # ------------------------------------------------------------------ seal

    def _dir(self, recording_id: str) -> Path:
        return self.recordings_dir / validate_id(recording_id, "recording id")

    def seal(
        self, plaintext_path: Path | str, fields: ManifestFields, *, apply_masks: bool = True
    ) -> SealedRecord:
        """Encrypt, hash, sign and chain a finished recording, then remove the plaintext.

        With ``apply_masks`` (default) the manifest's mask windows are silenced while encrypting, so
        the stored audio never contains them even if capture did not mask; this needs a PCM16 WAV.
        """
        plaintext_path = Path(plaintext_path)
        rid = fields.recording_id
        rdir = self._dir(rid)
        signer = self.signer
        if not plaintext_path.is_file():
            raise VaultError(f"{plaintext_path} is not a file")
        self.recordings_dir.mkdir(parents=True, exist_ok=True)
        try:
            rdir.mkdir(mode=0o750)
        except FileExistsError:
            raise VaultError(f"recording {rid} already exists in the vault") from None
        try:
            key = self.keystore.create(rid)
            pt_hash, ct_hash = _Sha256Count(), _Sha256Count()
            data_path = rdir / DATA_FILE
            with open(plaintext_path, "rb") as raw, open(data_path, "xb") as out:
                length = os.fstat(raw.fileno()).st_size
                windows = [w.seconds for w in fields.mask_windows]
                src: BinaryIO = raw
                if windows and apply_masks:
                    src = MaskedReader(raw, windows)  # type: ignore[assignment]
                header = encrypt_stream(
                    src,
                    out,
                    StaticKeyWrapper(rid, key),
                    context=rid.encode(),
                    length=length,
                    chunk_size=self.chunk_size,
                    on_plaintext=pt_hash.update,
                    on_ciphertext=ct_hash.update,
                )
                out.flush()
                os.fsync(out.fileno())
            del key
            pt_sha, ct_sha = pt_hash.hexdigest(), ct_hash.hexdigest()
            manifest = Manifest(
                recording_id=rid,
                call_ids=tuple(fields.call_ids),
                started_at=fields.started_at,
                ended_at=fields.ended_at,
                plaintext_sha256=pt_sha,
                ciphertext_sha256=ct_sha,
                plaintext_bytes=length,
                ciphertext_bytes=ct_hash.size,
                key_id=self.keystore.wrapped(rid).key_id,
                key_ref=header.key_id,
                chunk_size=header.chunk_size,
                sealed_at=datetime.now(UTC),
                segments=tuple(fields.segments),
                mask_windows=tuple(fields.mask_windows),
            )
            signed = signer.sign(manifest)
            _write_atomic(
                rdir / MANIFEST_FILE, json.dumps(signed.to_json(), indent=2, sort_keys=True).encode()
            )
            fsync_dir(rdir)
            entry = self.chain.append(signed)
        except BaseException:
            shutil.rmtree(rdir, ignore_errors=True)
            with contextlib.suppress(KeyRingError, OSError):
                self.keystore.discard(rid)
            raise
        plaintext_path.unlink()
        fsync_dir(plaintext_path.parent)
        return SealedRecord(manifest, entry.seq, rdir / DATA_FILE)

    # ------------------------------------------------------------------ read

    def manifest(self, recording_id: str) -> SignedManifest:
        path = self._dir(recording_id) / MANIFEST_FILE
        return SignedManifest.from_json(json.loads(path.read_bytes()))

    @contextlib.contextmanager
    def open(self, recording_id: str) -> Iterator[DecryptingReader]:
        """Streaming plaintext of a recording; each chunk is authenticated before it is returned.

        The manifest signature is checked first; read to EOF to know the stream is complete.
        """
        signed = self.manifest(recording_id)
        if not signed.verify(self.public_key) or signed.manifest.recording_id != recording_id:
            raise VaultError(f"recording {recording_id}: manifest signature invalid or not this recording")
        wrapper = self.keystore.wrapper(recording_id)
        with open(self._dir(recording_id) / DATA_FILE, "rb") as fh:
            yield DecryptingReader(fh, wrapper, expected_context=recording_id.encode())

    def export(self, recording_id: str, out: BinaryIO, *, masked: bool = True) -> Manifest:
        """Write the plaintext WAV; ``masked`` re-applies the manifest's windows (defence in depth)."""
        manifest = self.manifest(recording_id).manifest
        with self.open(recording_id) as reader:
            if masked:
                mask_wav(reader, out, [w.seconds for w in manifest.mask_windows])  # type: ignore[arg-type]
            else:
                for chunk in reader.iter_chunks():
                    out.write(chunk)
        return manifest

    def recordings(self) -> list[RecordingSummary]:
        return [
            RecordingSummary(e.signed.manifest, e.seq, self.keystore.status(e.signed.manifest.recording_id))
            for e in self.chain.entries()
        ]

    def shred(self, recording_id: str, reason: str = "") -> None:
        """Crypto-shred: destroy the recording key; ciphertext and manifest stay, undecryptable."""
        self.keystore.destroy(validate_id(recording_id, "recording id"), reason)

    # ------------------------------------------------------------------ verify

    def verify(self, recording_id: str | None = None) -> list[Finding]:
        """Check one recording (or, with ``None``, the chain and every recording).

        Each finding names the recording/manifest/chain entry and the check that failed.
        """
        key = self.public_key
        entries: dict[str, ChainEntry] = {}
        for entry in self.chain.entries():
            entries.setdefault(entry.signed.manifest.recording_id, entry)
        if recording_id is not None:
            validate_id(recording_id, "recording id")
            return self._verify_recording(recording_id, entries.get(recording_id), key)
        findings = self.chain.verify(key)
        on_disk = (
            sorted(p.name for p in self.recordings_dir.iterdir()) if self.recordings_dir.exists() else []
        )
        for rid in sorted(set(on_disk) | set(entries)):
            findings += self._verify_recording(rid, entries.get(rid), key)
        return findings

    def _verify_recording(self, rid: str, entry: ChainEntry | None, key: Ed25519PublicKey) -> list[Finding]:
        subject = f"recording {rid}"
        out: list[Finding] = []
        rdir = self.recordings_dir / rid
        if not rdir.is_dir():
            return [Finding(subject, "missing", "recording directory missing")]
        if entry is None:
            out.append(Finding(subject, "chain-membership", "not in the manifest chain"))
        trusted: Manifest | None = None
        if entry is not None and entry.signed.verify(key) and entry.signed.manifest.recording_id == rid:
            trusted = entry.signed.manifest
        try:
            signed = self.manifest(rid)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            out.append(
                Finding(f"manifest {rid}", "manifest-format", f"manifest missing or unreadable ({exc})")
            )
        else:
            if not signed.verify(key):
                out.append(Finding(f"manifest {rid}", "manifest-signature", "signature invalid"))
            elif trusted is None and entry is None:
                trusted = signed.manifest
            named = signed.manifest.recording_id
            if named != rid:
                out.append(
                    Finding(
                        subject,
                        "manifest-identity",
                        f"manifest file names recording {named} (manifests swapped or misplaced)",
                    )
                )
            if entry is not None and signed.canonical() != entry.signed.canonical():
                out.append(
                    Finding(subject, "manifest-chain", f"manifest differs from chain entry {entry.seq}")
                )
        if trusted is None:
            out.append(
                Finding(subject, "no-trusted-manifest", "no validly signed manifest; content not checked")
            )
            return out

        data = rdir / DATA_FILE
        if not data.is_file():
            out.append(Finding(subject, "ciphertext-missing", "ciphertext file missing"))
            return out
        ct_sha, ct_size = _hash_file(data)
        if ct_size != trusted.ciphertext_bytes:
            out.append(
                Finding(
                    subject,
                    "ciphertext-size",
                    f"ciphertext is {ct_size} bytes, manifest says {trusted.ciphertext_bytes}",
                )
            )
        if ct_sha != trusted.ciphertext_sha256:
            out.append(Finding(subject, "ciphertext-sha256", "ciphertext sha256 mismatch"))

        status = self.keystore.status(rid)
        if status == "destroyed":
            out.append(
                Finding(
                    subject,
                    "shredded",
                    f"data key destroyed at {self.keystore.destroyed_at(rid)} "
                    "(crypto-shredded; content undecryptable by design)",
                    "info",
                )
            )
            return out
        if status == "missing":
            out.append(Finding(subject, "key-missing", "recording key missing from the key store"))
            return out
        try:
            wrapper = self.keystore.wrapper(rid)
        except KeyRingError as exc:
            out.append(Finding(subject, "key-unwrap", f"recording key unavailable ({exc})"))
            return out
        pt = hashlib.sha256()
        size = 0
        try:
            with open(data, "rb") as fh:
                reader = DecryptingReader(fh, wrapper, expected_context=rid.encode())
                for chunk in reader.iter_chunks():
                    pt.update(chunk)
                    size += len(chunk)
        except StreamError as exc:
            out.append(Finding(subject, exc.check, str(exc)))
            return out
        if size != trusted.plaintext_bytes or pt.hexdigest() != trusted.plaintext_sha256:
            out.append(
                Finding(
                    subject,
                    "plaintext-sha256",
                    "plaintext sha256 mismatch (decrypts, but is not the sealed recording)",
                )
            )
        return out
