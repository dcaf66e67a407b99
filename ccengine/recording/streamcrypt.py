"""Chunked streaming AES-256-GCM file format (a STREAM construction) for recordings.

Layout (all integers big-endian)::

    header  = magic "CCSTRM" | version u8 | alg u8 | chunk_size u32 | plaintext_length u64
              | nonce_prefix[7] | salt[16] | key_id (u16 len + utf-8) | context (u16 len + bytes)
              | wrapped_key (u16 len + bytes) | header_mac[32]
    chunk i = AES-256-GCM(enc_key, nonce = prefix | u32(i) | u8(last), chunk plaintext,
                          aad = SHA-256(header))      (ciphertext + 16-byte tag)

``enc_key`` and ``mac_key`` are HKDF-SHA256 subkeys of a random per-stream data key (DEK), which is
only stored wrapped (``wrapped_key``, AAD = context). Why each piece:

* The header MAC names header tampering before any chunk is touched; hashing the header into every
  chunk's AAD additionally binds the chunks to this exact header.
* The declared plaintext length fixes the number and size of chunks, so truncation (anywhere, even
  mid-chunk) and trailing bytes are structural facts, not guesses from a failing tag.
* Chunk index + last flag in the nonce make reordering, dropping and duplicating chunks fail
  authentication; on failure the reader tries the chunk under other indices to say *which* of
  those happened.

Encryption therefore needs the length up front (from ``length=`` or a seekable source); recordings
are sealed after they end, so that is always known. Decryption is streaming: each chunk is
authenticated before its plaintext is released, but a consumer must read to EOF to know the whole
stream is intact.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import struct
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .fileio import ChunkStream
from .keyring import KeyDestroyedError, KeyRingError, KeyWrapper, WrappedKey

MAGIC = b"CCSTRM"
VERSION = 1
ALG_AES256GCM_HKDF_SHA256 = 1
DEFAULT_CHUNK_SIZE = 64 * 1024
MIN_CHUNK_SIZE = 16
MAX_CHUNK_SIZE = 64 * 1024 * 1024
TAG_BYTES = 16
PREFIX_BYTES = 7
SALT_BYTES = 16
MAC_BYTES = 32
MAX_CHUNKS = 2**32
DIAGNOSE_WINDOW = 1024
IO_BLOCK = 1024 * 1024

_FIXED = struct.Struct(">6sBBIQ7s16s")
_NONCE_TAIL = struct.Struct(">IB")
_U16 = struct.Struct(">H")
_WRAP_AAD = b"ccengine/streamcrypt/v1/dek\0"
_HKDF_INFO = b"ccengine/streamcrypt/v1/subkeys"

OnBytes = Callable[[bytes | memoryview], None]


class StreamError(Exception):
    """Base class; ``check`` names the failed check for reports."""

    check = "stream"


class MalformedHeaderError(StreamError):
    check = "header-format"


class KeyUnwrapError(StreamError):
    check = "key-unwrap"


class DataKeyDestroyedError(KeyUnwrapError):
    check = "key-destroyed"


class HeaderAuthError(StreamError):
    check = "header-mac"


class ContextMismatchError(StreamError):
    check = "header-context"


class ChunkAuthError(StreamError):
    check = "chunk-auth"

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.position = position


class ChunkReorderedError(ChunkAuthError):
    check = "chunk-order"

    def __init__(self, message: str, position: int, found_index: int) -> None:
        super().__init__(message, position)
        self.found_index = found_index


class ChunkDuplicatedError(ChunkAuthError):
    check = "chunk-duplicate"

    def __init__(self, message: str, position: int, found_index: int) -> None:
        super().__init__(message, position)
        self.found_index = found_index


class HeaderMismatchError(ChunkAuthError):
    check = "header-body-mismatch"


class TruncatedError(StreamError):
    check = "truncation"


class TrailingDataError(StreamError):
    check = "trailing-data"


@dataclass(frozen=True)
class StreamHeader:
    version: int
    chunk_size: int
    plaintext_length: int
    nonce_prefix: bytes
    salt: bytes
    key_id: str
    context: bytes
    wrapped_key: bytes
    mac: bytes
    raw: bytes

    @property
    def n_chunks(self) -> int:
        return chunk_count(self.plaintext_length, self.chunk_size)

    def chunk_plain_len(self, index: int) -> int:
        if index < self.n_chunks - 1:
            return self.chunk_size
        return self.plaintext_length - self.chunk_size * (self.n_chunks - 1)

    @property
    def ciphertext_length(self) -> int:
        return len(self.raw) + self.plaintext_length + TAG_BYTES * self.n_chunks

    @property
    def wrapped(self) -> WrappedKey:
        return WrappedKey(self.key_id, self.wrapped_key)


def chunk_count(plaintext_length: int, chunk_size: int) -> int:
    """An empty stream still has one (empty, final) chunk so that its end is authenticated."""
    return max(1, -(-plaintext_length // chunk_size))


def ciphertext_length(plaintext_length: int, chunk_size: int, header_length: int) -> int:
    return header_length + plaintext_length + TAG_BYTES * chunk_count(plaintext_length, chunk_size)


def _subkeys(dek: bytes, salt: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=salt, info=_HKDF_INFO).derive(dek)
    return okm[:32], okm[32:]


def _plain_len(index: int, n: int, chunk_size: int, length: int) -> int:
    return chunk_size if index < n - 1 else length - chunk_size * (n - 1)


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + _NONCE_TAIL.pack(index, 1 if last else 0)


def _var(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError("header field longer than 65535 bytes")
    return _U16.pack(len(data)) + data


def _read_exact(src: BinaryIO, size: int) -> bytes:
    parts: list[bytes] = []
    need = size
    while need:
        part = src.read(need)
        if not part:
            break
        parts.append(part)
        need -= len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _source_length(src: BinaryIO) -> int:
    try:
        pos = src.tell()
        end = src.seek(0, io.SEEK_END)
        src.seek(pos)
        return end - pos
    except (OSError, io.UnsupportedOperation, AttributeError):
        raise ValueError("length= is required for a non-seekable source") from None


def encrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    wrapper: KeyWrapper,
    *,
    context: bytes = b"",
    length: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_plaintext: OnBytes | None = None,
    on_ciphertext: OnBytes | None = None,
) -> StreamHeader:
    """Encrypt ``length`` bytes of ``src`` to ``dst`` under a fresh data key; returns the header.

    ``context`` (e.g. the recording id) is bound into the key wrap and the header so that a stream
    cannot be passed off as another. The callbacks see every plaintext/ciphertext piece in order
    (the vault hashes both without a second pass). For streams of more than one I/O block they run
    on worker threads, concurrently with encryption; either way they get views of reused buffers, so
    a callback must consume its piece before returning (``hashlib`` objects' ``update`` does, and
    releases the GIL while it does).
    """
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be in [{MIN_CHUNK_SIZE}, {MAX_CHUNK_SIZE}]")
    if length is None:
        length = _source_length(src)
    if length < 0:
        raise ValueError("length must be >= 0")
    n = chunk_count(length, chunk_size)
    if n > MAX_CHUNKS:
        raise ValueError("stream too long for this chunk size")

    dek = AESGCM.generate_key(bit_length=256)
    prefix, salt = os.urandom(PREFIX_BYTES), os.urandom(SALT_BYTES)
    enc_key, mac_key = _subkeys(dek, salt)
    wrapped = wrapper.wrap(dek, _WRAP_AAD + context)
    del dek
    body = (
        _FIXED.pack(MAGIC, VERSION, ALG_AES256GCM_HKDF_SHA256, chunk_size, length, prefix, salt)
        + _var(wrapped.key_id.encode())
        + _var(context)
        + _var(wrapped.blob)
    )
    raw = body + hmac.new(mac_key, body, hashlib.sha256).digest()
    header = _parse_header_bytes(raw)
    dst.write(raw)
    if on_ciphertext:
        on_ciphertext(raw)
    _encrypt_chunks(src, dst, AESGCM(enc_key), prefix, hashlib.sha256(raw).digest(), length, chunk_size,
                    on_plaintext, on_ciphertext)
    if src.read(1):
        raise ValueError(f"source is longer than the declared {length} bytes")
    return header


def _readinto_exact(src: BinaryIO, view: memoryview) -> int:
    readinto = cast(io.BufferedIOBase, src).readinto  # every binary file object has it; BinaryIO omits it
    got = 0
    while got < len(view):
        part = readinto(view[got:])
        if not part:
            break
        got += part
    return got


def _encrypt_chunks(src: BinaryIO, dst: BinaryIO, aead: AESGCM, prefix: bytes, aad: bytes, length: int,
                    chunk_size: int, on_plaintext: OnBytes | None, on_ciphertext: OnBytes | None) -> None:
    """The chunk loop as a three-lane pipeline over I/O blocks of several chunks.

    The plaintext lane reads block b+1 and hands it to ``on_plaintext`` while this thread encrypts
    block b and the ciphertext lane writes block b-1 and hands it to ``on_ciphertext``. Reads,
    writes, AES-GCM (``encrypt_into``) and hashlib all release the GIL, so the lanes run on
    separate cores, each doing about a third of the work. Buffers are preallocated, two per lane,
    and one is refilled only once every lane is done with its previous contents.
    """
    n = chunk_count(length, chunk_size)
    per_block = max(1, IO_BLOCK // chunk_size)
    block = min(length, per_block * chunk_size)
    plain = [memoryview(bytearray(block)), memoryview(bytearray(block))]
    cipher = [memoryview(bytearray(block + TAG_BYTES * per_block)) for _ in range(2)]
    blocks = [range(first, min(n, first + per_block)) for first in range(0, n, per_block)]

    def load(b: int) -> memoryview:
        pv = plain[b % 2][: sum(_plain_len(i, n, chunk_size, length) for i in blocks[b])]
        if _readinto_exact(src, pv) != len(pv):
            raise ValueError(f"source ended early: expected {length} bytes")
        if on_plaintext:
            on_plaintext(pv)
        return pv

    def emit(ct: memoryview) -> None:
        dst.write(ct)
        if on_ciphertext:
            on_ciphertext(ct)

    if len(blocks) == 1:  # nothing to overlap: handing over to the lanes would only add latency
        emit(_encrypt_block(aead, prefix, aad, n, chunk_size, length, blocks[0], load(0), cipher[0]))
        return
    pt_lane, ct_lane = _lanes()
    loading: Future[memoryview] = pt_lane.submit(load, 0)
    written: list[Future[None] | None] = [None, None]
    try:
        for b, indices in enumerate(blocks):
            pv = loading.result()
            if b + 1 < len(blocks):  # its buffer held block b-1, which this thread has encrypted
                loading = pt_lane.submit(load, b + 1)
            slot = written[b % 2]
            if slot is not None:
                slot.result()  # block b-2 is written and hashed: its buffer is free
            ct = _encrypt_block(aead, prefix, aad, n, chunk_size, length, indices, pv, cipher[b % 2])
            written[b % 2] = ct_lane.submit(emit, ct)
        for future in written:
            if future is not None:
                future.result()
    finally:  # on failure too: no lane may touch a buffer after we return
        pending: list[Future[Any]] = [loading, *(f for f in written if f is not None)]
        wait(pending)


def _encrypt_block(aead: AESGCM, prefix: bytes, aad: bytes, n: int, chunk_size: int, length: int,
                   indices: range, pv: memoryview, out: memoryview) -> memoryview:
    cv = out[: len(pv) + TAG_BYTES * len(indices)]
    p_off = c_off = 0
    for index in indices:
        size = _plain_len(index, n, chunk_size, length)
        nonce = prefix + _NONCE_TAIL.pack(index, index == n - 1)
        aead.encrypt_into(nonce, pv[p_off : p_off + size], aad, cv[c_off : c_off + size + TAG_BYTES])
        p_off += size
        c_off += size + TAG_BYTES
    return cv


_LANE_LOCK = threading.Lock()
_LANES: tuple[ThreadPoolExecutor, ThreadPoolExecutor] | None = None


def _lanes() -> tuple[ThreadPoolExecutor, ThreadPoolExecutor]:
    """The plaintext and ciphertext lanes, one thread each, started once: a seal pays no thread
    start. Streams encrypted at the same time share them; each stream's tasks stay in order."""
    global _LANES
    with _LANE_LOCK:
        if _LANES is None:
            _LANES = ThreadPoolExecutor(1, "streamcrypt-pt"), ThreadPoolExecutor(1, "streamcrypt-ct")
        return _LANES


def _parse_header_bytes(raw: bytes) -> StreamHeader:
    src = io.BytesIO(raw)
    header = read_header(src)
    if src.read(1):
        raise MalformedHeaderError("junk after header")
    return header


def read_header(src: BinaryIO) -> StreamHeader:
    """Parse (not authenticate) a header; authentication needs the data key, see ``open_stream``."""
    fixed = _read_exact(src, _FIXED.size)
    if len(fixed) < _FIXED.size:
        raise MalformedHeaderError(f"header truncated: {len(fixed)} of {_FIXED.size} fixed bytes")
    magic, version, alg, chunk_size, length, prefix, salt = _FIXED.unpack(fixed)
    if magic != MAGIC:
        raise MalformedHeaderError("bad magic: not a ccengine encrypted stream")
    if version != VERSION:
        raise MalformedHeaderError(f"unsupported format version {version}")
    if alg != ALG_AES256GCM_HKDF_SHA256:
        raise MalformedHeaderError(f"unsupported algorithm {alg}")
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise MalformedHeaderError(f"chunk size {chunk_size} out of range")
    if chunk_count(length, chunk_size) > MAX_CHUNKS:
        raise MalformedHeaderError("declared length needs too many chunks")
    fields: list[bytes] = []
    raw = [fixed]
    for name in ("key id", "context", "wrapped key"):
        size_b = _read_exact(src, 2)
        if len(size_b) < 2:
            raise MalformedHeaderError(f"header truncated before {name}")
        (size,) = _U16.unpack(size_b)
        value = _read_exact(src, size)
        if len(value) < size:
            raise MalformedHeaderError(f"header truncated inside {name}")
        fields.append(value)
        raw += [size_b, value]
    mac = _read_exact(src, MAC_BYTES)
    if len(mac) < MAC_BYTES:
        raise MalformedHeaderError("header truncated inside MAC")
    try:
        key_id = fields[0].decode()
    except UnicodeDecodeError:
        raise MalformedHeaderError("key id is not UTF-8") from None
    return StreamHeader(
        version=version,
        chunk_size=chunk_size,
        plaintext_length=length,
        nonce_prefix=prefix,
        salt=salt,
        key_id=key_id,
        context=fields[1],
        wrapped_key=fields[2],
        mac=mac,
        raw=b"".join(raw) + mac,
    )


def unwrap_data_key(header: StreamHeader, wrapper: KeyWrapper) -> bytes:
    """Unwrap the header's data key (raises ``KeyUnwrapError`` / ``DataKeyDestroyedError``)."""
    try:
        return wrapper.unwrap(header.wrapped, _WRAP_AAD + header.context)
    except KeyDestroyedError as exc:
        raise DataKeyDestroyedError(f"data key unavailable: {exc}") from exc
    except KeyRingError as exc:
        raise KeyUnwrapError(f"data key unwrap failed: {exc}") from exc


class DecryptingReader(ChunkStream):
    """Readable plaintext view of an encrypted stream; authenticates as it goes.

    The header is parsed, its key unwrapped and its MAC checked in the constructor, so a bad key or
    header fails before any plaintext is produced.
    """

    def __init__(
        self,
        src: BinaryIO,
        wrapper: KeyWrapper,
        *,
        expected_context: bytes | None = None,
        on_ciphertext: OnBytes | None = None,
    ) -> None:
        super().__init__()
        self._src = src
        self._on_ct = on_ciphertext
        self.header = read_header(src)
        if on_ciphertext:
            on_ciphertext(self.header.raw)
        dek = unwrap_data_key(self.header, wrapper)
        enc_key, mac_key = _subkeys(dek, self.header.salt)
        del dek
        body = self.header.raw[:-MAC_BYTES]
        if not hmac.compare_digest(hmac.new(mac_key, body, hashlib.sha256).digest(), self.header.mac):
            raise HeaderAuthError("header authentication failed (header edited or not from this key)")
        if expected_context is not None and self.header.context != expected_context:
            raise ContextMismatchError(
                f"stream belongs to {self.header.context.decode(errors='replace')!r}, "
                f"expected {expected_context.decode(errors='replace')!r}"
            )
        self._aead = AESGCM(enc_key)
        self._aad = hashlib.sha256(self.header.raw).digest()
        self._chunks = self._iter_chunks()

    def iter_chunks(self) -> Iterator[bytes]:
        """Plaintext chunk by chunk (faster than ``read`` when copying whole streams)."""
        if self._pos < len(self._buf):
            yield self._buf[self._pos :]
            self._buf, self._pos = b"", 0
        yield from self._chunks

    def _try(self, record: bytes, index: int) -> bytes | None:
        header = self.header
        if index < 0 or index >= header.n_chunks or len(record) - TAG_BYTES != header.chunk_plain_len(index):
            return None
        try:
            return self._aead.decrypt(
                _nonce(header.nonce_prefix, index, index == header.n_chunks - 1), record, self._aad
            )
        except InvalidTag:
            return None

    def _diagnose(self, record: bytes, position: int) -> ChunkAuthError:
        n = self.header.n_chunks
        lo, hi = max(0, position - DIAGNOSE_WINDOW), min(n, position + DIAGNOSE_WINDOW + 1)
        for index in range(lo, hi):
            if index != position and self._try(record, index) is not None:
                if index < position:
                    return ChunkDuplicatedError(
                        f"chunk {position} is a duplicate of chunk {index}", position, index
                    )
                return ChunkReorderedError(
                    f"chunk {position} holds chunk {index} (chunks reordered or removed)", position, index
                )
        if position == 0 and n > 1:
            nxt = _read_exact(self._src, self.header.chunk_plain_len(1) + TAG_BYTES)
            if self._try(nxt, 1) is None:
                return HeaderMismatchError(
                    "chunks 0 and 1 both fail authentication: header does not belong to this body "
                    "(header swapped) or the body is corrupt",
                    0,
                )
        return ChunkAuthError(f"chunk {position} authentication failed", position)

    def _iter_chunks(self) -> Iterator[bytes]:
        header = self.header
        n = header.n_chunks
        for index in range(n):
            size = header.chunk_plain_len(index) + TAG_BYTES
            record = _read_exact(self._src, size)
            if len(record) < size:
                offset = len(header.raw) + index * (header.chunk_size + TAG_BYTES) + len(record)
                raise TruncatedError(
                    f"stream truncated in chunk {index} of {n}: ends at byte {offset}, "
                    f"expected {header.ciphertext_length}"
                )
            if self._on_ct:
                self._on_ct(record)
            pt = self._try(record, index)
            if pt is None:
                raise self._diagnose(record, index)
            yield pt
        extra = self._src.read(1)
        if extra:
            rest = len(extra)
            while chunk := self._src.read(1 << 20):
                rest += len(chunk)
            raise TrailingDataError(f"{rest} trailing byte(s) after the final chunk")


def open_stream(
    src: BinaryIO, wrapper: KeyWrapper, *, expected_context: bytes | None = None
) -> DecryptingReader:
    return DecryptingReader(src, wrapper, expected_context=expected_context)


def decrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    wrapper: KeyWrapper,
    *,
    expected_context: bytes | None = None,
    on_ciphertext: OnBytes | None = None,
) -> StreamHeader:
    """Decrypt all of ``src`` into ``dst``; raises a ``StreamError`` subclass naming the failure."""
    reader = DecryptingReader(src, wrapper, expected_context=expected_context, on_ciphertext=on_ciphertext)
    for chunk in reader.iter_chunks():
        dst.write(chunk)
    return reader.header
