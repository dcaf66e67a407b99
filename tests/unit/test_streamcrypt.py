"""Streaming AES-256-GCM format: exact round trips and named detection of each kind of tampering."""

from __future__ import annotations

import io
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccengine.recording import streamcrypt as sc
from ccengine.recording.keyring import StaticKeyWrapper

CHUNK = 64
REC = CHUNK + sc.TAG_BYTES


@pytest.fixture(scope="module")
def wrapper() -> StaticKeyWrapper:
    return StaticKeyWrapper("test-key", os.urandom(32))


def encrypt(
    data: bytes, wrapper: StaticKeyWrapper, context: bytes = b"rec-1"
) -> tuple[bytes, sc.StreamHeader]:
    out = io.BytesIO()
    header = sc.encrypt_stream(io.BytesIO(data), out, wrapper, context=context, chunk_size=CHUNK)
    return out.getvalue(), header


def decrypt(blob: bytes, wrapper: StaticKeyWrapper, **kw: bytes) -> bytes:
    out = io.BytesIO()
    sc.decrypt_stream(io.BytesIO(blob), out, wrapper, **kw)
    return out.getvalue()


def split(blob: bytes, header: sc.StreamHeader) -> tuple[bytes, list[bytes]]:
    head, body = blob[: len(header.raw)], blob[len(header.raw) :]
    return head, [body[i : i + REC] for i in range(0, len(body), REC)]


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 5])
def test_round_trip_edge_sizes(size: int, wrapper: StaticKeyWrapper) -> None:
    data = os.urandom(size)
    blob, header = encrypt(data, wrapper)
    assert decrypt(blob, wrapper) == data
    assert len(blob) == header.ciphertext_length
    assert header.n_chunks == max(1, -(-size // CHUNK))


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=20 * CHUNK), read_size=st.integers(1, 3 * CHUNK))
def test_round_trip_random(data: bytes, read_size: int, wrapper: StaticKeyWrapper) -> None:
    blob, _ = encrypt(data, wrapper)
    reader = sc.open_stream(io.BytesIO(blob), wrapper)
    parts = []
    while piece := reader.read(read_size):
        parts.append(piece)
    assert b"".join(parts) == data


def test_nonces_unique_and_fresh_key_per_stream(wrapper: StaticKeyWrapper) -> None:
    data = os.urandom(5 * CHUNK)
    a, ha = encrypt(data, wrapper)
    b, hb = encrypt(data, wrapper)
    assert a[len(ha.raw) :] != b[len(hb.raw) :]
    assert ha.wrapped_key != hb.wrapped_key and ha.nonce_prefix != hb.nonce_prefix
    nonces = {sc._nonce(ha.nonce_prefix, i, i == ha.n_chunks - 1) for i in range(ha.n_chunks)}
    assert len(nonces) == ha.n_chunks


def test_plaintext_not_in_ciphertext(wrapper: StaticKeyWrapper) -> None:
    data = b"4111111111111111 spoken card number " * 20
    blob, _ = encrypt(data, wrapper)
    assert b"4111111111111111" not in blob


def test_flip_one_byte_names_the_chunk(wrapper: StaticKeyWrapper) -> None:
    blob, header = encrypt(os.urandom(5 * CHUNK), wrapper)
    bad = bytearray(blob)
    bad[len(header.raw) + 3 * REC + 10] ^= 0x01
    with pytest.raises(sc.ChunkAuthError) as exc:
        decrypt(bytes(bad), wrapper)
    assert type(exc.value) is sc.ChunkAuthError
    assert exc.value.position == 3 and "chunk 3 authentication failed" in str(exc.value)


def test_flip_header_byte_is_header_auth(wrapper: StaticKeyWrapper) -> None:
    blob, _ = encrypt(os.urandom(2 * CHUNK), wrapper)
    bad = bytearray(blob)
    bad[20] ^= 0x80  # inside the nonce prefix / salt region of the fixed header
    with pytest.raises(sc.HeaderAuthError):
        decrypt(bytes(bad), wrapper)


def test_edit_declared_length_is_header_auth(wrapper: StaticKeyWrapper) -> None:
    blob, _ = encrypt(os.urandom(2 * CHUNK), wrapper)
    bad = bytearray(blob)
    bad[19] ^= 0x01  # low byte of plaintext_length
    with pytest.raises(sc.HeaderAuthError):
        decrypt(bytes(bad), wrapper)


@pytest.mark.parametrize("cut", [1, sc.TAG_BYTES, REC, REC + 7, 2 * REC])
def test_truncation_detected(cut: int, wrapper: StaticKeyWrapper) -> None:
    blob, _ = encrypt(os.urandom(4 * CHUNK + 9), wrapper)
    with pytest.raises(sc.TruncatedError, match="truncated"):
        decrypt(blob[:-cut], wrapper)


def test_truncated_to_header_only(wrapper: StaticKeyWrapper) -> None:
    blob, header = encrypt(os.urandom(CHUNK), wrapper)
    with pytest.raises(sc.TruncatedError):
        decrypt(blob[: len(header.raw)], wrapper)
    with pytest.raises(sc.MalformedHeaderError):
        decrypt(blob[: len(header.raw) - 5], wrapper)


def test_reordered_chunks_named(wrapper: StaticKeyWrapper) -> None:
    blob, header = encrypt(os.urandom(5 * CHUNK), wrapper)
    head, chunks = split(blob, header)
    chunks[1], chunks[2] = chunks[2], chunks[1]
    with pytest.raises(sc.ChunkReorderedError) as exc:
        decrypt(head + b"".join(chunks), wrapper)
    assert (exc.value.position, exc.value.found_index) == (1, 2)


def test_removed_chunk_named_as_reorder_or_truncation(wrapper: StaticKeyWrapper) -> None:
    blob, header = encrypt(os.urandom(5 * CHUNK), wrapper)
    head, chunks = split(blob, header)
    del chunks[2]
    with pytest.raises(sc.ChunkReorderedError) as exc:
        decrypt(head + b"".join(chunks), wrapper)
    assert (exc.value.position, exc.value.found_index) == (2, 3)


def test_duplicated_chunk_named(wrapper: StaticKeyWrapper) -> None:
    blob, header = encrypt(os.urandom(5 * CHUNK), wrapper)
    head, chunks = split(blob, header)
    chunks.insert(3, chunks[2])
    with pytest.raises(sc.ChunkDuplicatedError) as exc:
        decrypt(head + b"".join(chunks), wrapper)
    assert (exc.value.position, exc.value.found_index) == (3, 2)


@pytest.mark.parametrize("extra", [b"\0", os.urandom(CHUNK + 100)])
def test_trailing_bytes_rejected(extra: bytes, wrapper: StaticKeyWrapper) -> None:
    blob, _ = encrypt(os.urandom(2 * CHUNK + 3), wrapper)
    with pytest.raises(sc.TrailingDataError, match=f"{len(extra)} trailing byte"):
        decrypt(blob + extra, wrapper)


def test_trailing_copy_of_final_chunk_rejected(wrapper: StaticKeyWrapper) -> None:
    blob, header = encrypt(os.urandom(2 * CHUNK), wrapper)
    _, chunks = split(blob, header)
    with pytest.raises(sc.TrailingDataError):
        decrypt(blob + chunks[-1], wrapper)


def test_swapped_header_detected(wrapper: StaticKeyWrapper) -> None:
    data = os.urandom(4 * CHUNK)
    a, ha = encrypt(data, wrapper)
    _, hb = encrypt(data, wrapper)
    swapped = hb.raw + a[len(ha.raw) :]
    with pytest.raises(sc.HeaderMismatchError, match="header"):
        decrypt(swapped, wrapper)


def test_header_from_other_context_rejected(wrapper: StaticKeyWrapper) -> None:
    blob, _ = encrypt(os.urandom(CHUNK), wrapper, context=b"rec-2")
    with pytest.raises(sc.ContextMismatchError, match="rec-2"):
        decrypt(blob, wrapper, expected_context=b"rec-1")


def test_wrong_key_fails_unwrap(wrapper: StaticKeyWrapper) -> None:
    blob, _ = encrypt(os.urandom(CHUNK), wrapper)
    with pytest.raises(sc.KeyUnwrapError):
        decrypt(blob, StaticKeyWrapper("test-key", os.urandom(32)))
    with pytest.raises(sc.KeyUnwrapError, match="other-key"):
        decrypt(blob, StaticKeyWrapper("other-key", os.urandom(32)))


def test_not_a_stream() -> None:
    with pytest.raises(sc.MalformedHeaderError, match="magic"):
        sc.read_header(io.BytesIO(b"RIFF" + bytes(100)))


def test_encrypt_requires_exact_length(wrapper: StaticKeyWrapper) -> None:
    with pytest.raises(ValueError, match="ended early"):
        sc.encrypt_stream(io.BytesIO(b"abc"), io.BytesIO(), wrapper, length=10, chunk_size=CHUNK)
    with pytest.raises(ValueError, match="longer"):
        sc.encrypt_stream(io.BytesIO(b"abcdef"), io.BytesIO(), wrapper, length=3, chunk_size=CHUNK)


class _Trickle(io.RawIOBase):
    """A source that returns short reads, as pipes and masked readers do."""

    def __init__(self, data: bytes) -> None:
        self._src = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        return self._src.readinto(buffer[:40_000])


def test_pipelined_callbacks_see_every_byte_once_in_order(wrapper: StaticKeyWrapper) -> None:
    """Several I/O blocks with reused buffers: a slow callback must still see its own block intact."""
    data = os.urandom(3 * sc.IO_BLOCK + 12_345)
    seen_pt, seen_ct = bytearray(), bytearray()

    def slow_ciphertext(piece: bytes | memoryview) -> None:
        time.sleep(0.03)  # reading and encrypting run ahead meanwhile; no buffer in use may be refilled
        seen_ct.extend(piece)

    out = io.BytesIO()
    header = sc.encrypt_stream(_Trickle(data), out, wrapper, length=len(data), chunk_size=4096,  # type: ignore[arg-type]
                               on_plaintext=seen_pt.extend, on_ciphertext=slow_ciphertext)
    assert bytes(seen_pt) == data
    assert bytes(seen_ct) == out.getvalue() and len(seen_ct) == header.ciphertext_length
    assert decrypt(out.getvalue(), wrapper) == data


def test_a_failing_callback_fails_the_stream(wrapper: StaticKeyWrapper) -> None:
    def broken(piece: bytes | memoryview) -> None:
        if len(piece) > 1000:  # the header passes; the first block (on the ciphertext lane) fails
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        sc.encrypt_stream(io.BytesIO(bytes(2 * sc.IO_BLOCK)), io.BytesIO(), wrapper, on_ciphertext=broken)


def test_streams_encrypted_at_the_same_time_share_the_lanes_safely(wrapper: StaticKeyWrapper) -> None:
    sources = [os.urandom(2 * sc.IO_BLOCK + 1000 * i) for i in range(4)]

    def roundtrip(data: bytes) -> bool:
        out = io.BytesIO()
        sc.encrypt_stream(io.BytesIO(data), out, wrapper, chunk_size=8192)
        return decrypt(out.getvalue(), wrapper) == data

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(roundtrip, sources)) == [True] * 4
