"""Key-encryption keys (KEKs) and per-recording shred keys.

Key hierarchy used by the vault (why three levels):

* **KEK** (``KeyRing``): long-lived, rotated, ideally held by a KMS/HSM. It only ever wraps other keys.
* **Recording key** (``FileKeyStore`` entry): 32 random bytes per recording, stored *only* wrapped by
  the KEK, in a key store kept apart from the ciphertext. Destroying this entry is the crypto-shred.
* **Data key** (DEK): 32 random bytes per recording that encrypt the audio; stored *only* wrapped by
  the recording key, inside the ciphertext header (see ``streamcrypt``).

Because KEK-wrapped material never lives in the ciphertext, rotating or re-wrapping the KEK touches
only the small key-store entries and never changes the ciphertext bytes whose SHA-256 is signed in the
manifest. Because the header's wrapped DEK is useless without the recording key, destroying one entry
makes that one recording undecryptable while its ciphertext (and any backup of it) may remain. No key
below the KEK is ever written in plaintext.

Limits: unlinking a file does not guarantee erasure on journaling filesystems/SSDs or in backups of the
key-store directory; the entry is overwritten before unlinking as a best effort. Where backups of the
key store must also be covered, destroy the KEK itself (``KeyRing.destroy``), e.g. one KEK per
retention bucket, or use a KMS whose key deletion is authoritative.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .fileio import fsync_dir

KEY_BYTES = 32
_NONCE_BYTES = 12
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class KeyRingError(Exception):
    """Base class for key management failures."""


class UnwrapError(KeyRingError):
    """A wrapped key could not be unwrapped (wrong key, wrong context or tampered blob)."""


class UnknownKeyError(UnwrapError):
    """The wrapping key id is not known to this keyring or key store."""


class KeyDestroyedError(UnknownKeyError):
    """The key existed but was destroyed (crypto-shredded)."""


class InsecureKeyFileError(KeyRingError):
    """Key material is readable by group/other; refuse to use it rather than trust it."""


@dataclass(frozen=True)
class WrappedKey:
    """A key encrypted under the key named ``key_id``; safe to store anywhere."""

    key_id: str
    blob: bytes

    def to_json(self) -> dict[str, str]:
        return {"key_id": self.key_id, "blob": base64.b64encode(self.blob).decode("ascii")}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> WrappedKey:
        return cls(key_id=str(data["key_id"]), blob=base64.b64decode(data["blob"], validate=True))


@runtime_checkable
class KeyWrapper(Protocol):
    """Anything that can wrap/unwrap a data key; all a stream needs."""

    def wrap(self, data_key: bytes, aad: bytes) -> WrappedKey: ...

    def unwrap(self, wrapped: WrappedKey, aad: bytes) -> bytes: ...


@runtime_checkable
class KeyRing(KeyWrapper, Protocol):
    """KEK management; a KMS/HSM backend implements the same five operations.

    ``wrap`` always uses the current KEK; ``unwrap`` accepts any non-destroyed KEK so that old
    recordings still open after ``rotate``; ``rewrap`` moves a wrapped key to the current KEK.
    """

    def current_key_id(self) -> str: ...

    def key_ids(self) -> list[str]: ...

    def rotate(self) -> str: ...

    def rewrap(self, wrapped: WrappedKey, aad: bytes) -> WrappedKey: ...

    def destroy(self, key_id: str) -> None: ...


def validate_id(value: str, what: str = "id") -> str:
    """Ids become file names; restrict them so that no id can escape its directory."""
    if not _ID_RE.match(value):
        raise ValueError(f"invalid {what} {value!r}: use 1-128 of [A-Za-z0-9._-], not starting with . - _")
    return value


def _aad(key_id: str, aad: bytes) -> bytes:
    # Binding the wrapping key id stops a blob from being re-labelled as wrapped by another key.
    return b"ccengine/keywrap/v1\0" + key_id.encode() + b"\0" + aad


def aesgcm_wrap(kek: bytes, key_id: str, data_key: bytes, aad: bytes) -> WrappedKey:
    """AES-256-GCM key wrap (chosen over AES-KW because it binds associated data)."""
    nonce = os.urandom(_NONCE_BYTES)
    return WrappedKey(key_id, nonce + AESGCM(kek).encrypt(nonce, data_key, _aad(key_id, aad)))


def aesgcm_unwrap(kek: bytes, wrapped: WrappedKey, aad: bytes) -> bytes:
    blob = wrapped.blob
    if len(blob) < _NONCE_BYTES + 16:
        raise UnwrapError(f"wrapped key under {wrapped.key_id!r} is too short")
    try:
        return AESGCM(kek).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _aad(wrapped.key_id, aad))
    except InvalidTag:
        raise UnwrapError(f"wrapped key under {wrapped.key_id!r} failed authentication") from None


class StaticKeyWrapper:
    """Wraps under one fixed key; used for a recording key wrapping its recording's data key."""

    def __init__(self, key_id: str, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("key must be 32 bytes")
        self._key_id = key_id
        self._key = key

    def wrap(self, data_key: bytes, aad: bytes) -> WrappedKey:
        return aesgcm_wrap(self._key, self._key_id, data_key, aad)

    def unwrap(self, wrapped: WrappedKey, aad: bytes) -> bytes:
        if wrapped.key_id != self._key_id:
            raise UnknownKeyError(f"data key is wrapped under {wrapped.key_id!r}, not {self._key_id!r}")
        return aesgcm_unwrap(self._key, wrapped, aad)


def _ensure_private_dir(path: Path, create: bool) -> None:
    if create:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.is_dir():
        raise KeyRingError(f"key directory {path} does not exist")
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise InsecureKeyFileError(f"key directory {path} is accessible to group/other; chmod 700")


def _write_private(path: Path, data: bytes) -> None:
    """Write via a 0600 temp file + rename so a crash never leaves a half-written key."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def _read_private(path: Path) -> bytes:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise InsecureKeyFileError(f"key file {path} has mode {mode:o}; expected 600")
    return path.read_bytes()




def _shred_file(path: Path) -> None:
    """Best-effort overwrite then unlink (see module docstring for what this cannot guarantee)."""
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.write(b"\0" * size)
        fh.flush()
        os.fsync(fh.fileno())
    path.unlink()
    fsync_dir(path.parent)


def _tombstone(path: Path, what: str, reason: str) -> None:
    record = {"destroyed": what, "at": datetime.now(UTC).isoformat(), "reason": reason}
    _write_private(path, json.dumps(record, sort_keys=True).encode())


class FileKeyRing:
    """KEKs as 0600 files in a 0700 directory: ``<id>.kek`` (32 raw bytes) and ``CURRENT``.

    Meant for a lab or a single host; put the directory on a different volume (and backup path)
    than the vault, or implement ``KeyRing`` over a KMS/HSM.
    """

    def __init__(self, directory: Path | str, *, create: bool = True) -> None:
        self.directory = Path(directory)
        _ensure_private_dir(self.directory, create)
        if not (self.directory / "CURRENT").exists():
            if not create:
                raise KeyRingError(f"no keyring in {self.directory}")
            self.rotate()

    def _kek_path(self, key_id: str) -> Path:
        return self.directory / f"{validate_id(key_id, 'key id')}.kek"

    def _load(self, key_id: str) -> bytes:
        path = self._kek_path(key_id)
        if not path.exists():
            if path.with_suffix(".destroyed").exists():
                raise KeyDestroyedError(f"KEK {key_id!r} was destroyed")
            raise UnknownKeyError(f"KEK {key_id!r} is not in {self.directory}")
        key = _read_private(path)
        if len(key) != KEY_BYTES:
            raise KeyRingError(f"KEK file {path} is corrupt")
        return key

    def current_key_id(self) -> str:
        return (self.directory / "CURRENT").read_text().strip()

    def key_ids(self) -> list[str]:
        return sorted(p.stem for p in self.directory.glob("*.kek"))

    def rotate(self) -> str:
        """Create a new KEK and make it current; older KEKs stay usable for unwrap."""
        key_id = f"kek-{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"
        _write_private(self._kek_path(key_id), AESGCM.generate_key(bit_length=256))
        _write_private(self.directory / "CURRENT", key_id.encode())
        return key_id

    def wrap(self, data_key: bytes, aad: bytes) -> WrappedKey:
        key_id = self.current_key_id()
        return aesgcm_wrap(self._load(key_id), key_id, data_key, aad)

    def unwrap(self, wrapped: WrappedKey, aad: bytes) -> bytes:
        return aesgcm_unwrap(self._load(wrapped.key_id), wrapped, aad)

    def rewrap(self, wrapped: WrappedKey, aad: bytes) -> WrappedKey:
        if wrapped.key_id == self.current_key_id():
            return wrapped
        return self.wrap(self.unwrap(wrapped, aad), aad)

    def destroy(self, key_id: str) -> None:
        """Destroy a KEK: everything still wrapped under it becomes unrecoverable."""
        if key_id == self.current_key_id():
            raise KeyRingError("refusing to destroy the current KEK; rotate first")
        path = self._kek_path(key_id)
        if not path.exists():
            raise UnknownKeyError(f"KEK {key_id!r} is not in {self.directory}")
        _tombstone(path.with_suffix(".destroyed"), key_id, "kek destroyed")
        _shred_file(path)


class FileKeyStore:
    """Per-recording keys, each stored only wrapped by a ``KeyRing``, one 0600 JSON file per ref.

    ``destroy`` is the crypto-shred of one recording; it leaves a tombstone so that verification can
    say "shredded" instead of "missing".
    """

    def __init__(self, directory: Path | str, keyring: KeyRing | None, *, create: bool = True) -> None:
        self.directory = Path(directory)
        self.keyring = keyring
        _ensure_private_dir(self.directory, create)

    @staticmethod
    def _aad(ref: str) -> bytes:
        return b"ccengine/keystore/v1\0" + ref.encode()

    def _path(self, ref: str) -> Path:
        return self.directory / f"{validate_id(ref, 'key ref')}.key"

    def _ring(self) -> KeyRing:
        if self.keyring is None:
            raise KeyRingError("no keyring configured; cannot use recording keys")
        return self.keyring

    def create(self, ref: str) -> bytes:
        path = self._path(ref)
        if path.exists() or path.with_suffix(".destroyed").exists():
            raise KeyRingError(f"key ref {ref!r} already used")
        key = AESGCM.generate_key(bit_length=256)
        wrapped = self._ring().wrap(key, self._aad(ref))
        _write_private(path, json.dumps(wrapped.to_json(), sort_keys=True).encode())
        return key

    def wrapped(self, ref: str) -> WrappedKey:
        path = self._path(ref)
        if not path.exists():
            if path.with_suffix(".destroyed").exists():
                raise KeyDestroyedError(f"recording key {ref!r} was destroyed (crypto-shredded)")
            raise UnknownKeyError(f"no recording key {ref!r}")
        return WrappedKey.from_json(json.loads(_read_private(path)))

    def load(self, ref: str) -> bytes:
        return self._ring().unwrap(self.wrapped(ref), self._aad(ref))

    def wrapper(self, ref: str) -> StaticKeyWrapper:
        return StaticKeyWrapper(ref, self.load(ref))

    def status(self, ref: str) -> str:
        """``present``, ``destroyed`` or ``missing``."""
        path = self._path(ref)
        if path.exists():
            return "present"
        return "destroyed" if path.with_suffix(".destroyed").exists() else "missing"

    def destroyed_at(self, ref: str) -> str | None:
        tomb = self._path(ref).with_suffix(".destroyed")
        if not tomb.exists():
            return None
        return str(json.loads(tomb.read_text()).get("at"))

    def refs(self) -> list[str]:
        return sorted(p.stem for p in self.directory.glob("*.key"))

    def destroy(self, ref: str, reason: str = "") -> None:
        path = self._path(ref)
        if not path.exists():
            raise UnknownKeyError(f"no recording key {ref!r}")
        _tombstone(path.with_suffix(".destroyed"), ref, reason)
        _shred_file(path)

    def discard(self, ref: str) -> None:
        """Remove an entry that never protected stored data (a seal that failed); no tombstone."""
        path = self._path(ref)
        if path.exists():
            _shred_file(path)

    def rewrap_all(self) -> int:
        """Move every entry to the current KEK (after ``rotate``); returns how many changed."""
        ring = self._ring()
        changed = 0
        for ref in self.refs():
            old = self.wrapped(ref)
            new = ring.rewrap(old, self._aad(ref))
            if new != old:
                _write_private(self._path(ref), json.dumps(new.to_json(), sort_keys=True).encode())
                changed += 1
        return changed
