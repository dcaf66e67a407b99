"""PCI masking keeps length and timing, silences exactly the windows; PAN scanner finds card numbers."""

from __future__ import annotations

import io
import struct
import wave

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccengine.recording.pcimask import (
    MaskedReader,
    WavFormatError,
    find_card_numbers,
    luhn_valid,
    mask_pan,
    mask_wav,
)


def wav_bytes(frames: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(frames.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames.astype("<i2").tobytes())
    return buf.getvalue()


def read_frames(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data)) as w:
        ch, rate = w.getnchannels(), w.getframerate()
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, ch), rate


def noise(n: int, channels: int, seed: int = 0) -> np.ndarray:
    # Never zero, so any zero in the output was put there by the masker.
    rng = np.random.default_rng(seed)
    return rng.integers(1, 30000, size=(n, channels), dtype=np.int16) * rng.choice(
        [-1, 1], size=(n, channels)
    )


class Trickle(io.RawIOBase):
    """Non-seekable source returning short reads, like a pipe."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        n = min(len(b), 777, len(self._data) - self._pos)
        b[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


@settings(max_examples=40, deadline=None)
@given(
    channels=st.integers(1, 3),
    rate=st.sampled_from([8000, 16000, 44100]),
    seconds=st.floats(0.05, 1.5),
    windows=st.lists(st.tuples(st.floats(0, 2), st.floats(0, 0.5)), max_size=4),
)
def test_windows_silenced_exactly_and_timing_kept(
    channels: int, rate: int, seconds: float, windows: list[tuple[float, float]]
) -> None:
    frames = noise(int(seconds * rate), channels)
    src = wav_bytes(frames, rate)
    wins = [(a, a + d) for a, d in windows]
    out = io.BytesIO()
    mask_wav(Trickle(src), out, wins)  # type: ignore[arg-type]
    got, got_rate = read_frames(out.getvalue())
    assert len(out.getvalue()) == len(src) and got_rate == rate and got.shape == frames.shape
    expected = frames.copy()
    for a, b in wins:
        expected[int(np.floor(a * rate)) : int(np.ceil(b * rate))] = 0
    assert np.array_equal(got, expected)


def test_masked_reader_equals_mask_wav() -> None:
    src = wav_bytes(noise(8000, 2), 8000)
    out = io.BytesIO()
    mask_wav(io.BytesIO(src), out, [(0.25, 0.5)])
    assert MaskedReader(io.BytesIO(src), [(0.25, 0.5)]).read() == out.getvalue()


def test_extra_chunks_copied_verbatim_and_extensible_accepted() -> None:
    frames = noise(1600, 2)
    pcm = frames.astype("<i2").tobytes()
    guid = bytes.fromhex("0100000000001000800000aa00389b71")
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 2, 8000, 32000, 4, 16, 22, 16, 3) + guid
    lst = b"INFOISFT" + struct.pack("<I", 5) + b"test\0\0"
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"LIST" + struct.pack("<I", len(lst)) + lst + b"data" + struct.pack("<I", len(pcm)) + pcm
    src = b"RIFF" + struct.pack("<I", len(body)) + body
    out = io.BytesIO()
    mask_wav(io.BytesIO(src), out, [(0.0, 0.1)])
    res = out.getvalue()
    assert len(res) == len(src) and res[: -len(pcm)] == src[: -len(pcm)]
    got = np.frombuffer(res[-len(pcm) :], dtype="<i2").reshape(-1, 2)
    assert not got[:800].any() and np.array_equal(got[800:], frames[800:])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b"RIFX" + b[4:], "RIFF"),
        (lambda b: b[:34] + struct.pack("<H", 8) + b[36:], "16-bit"),
        (lambda b: b[:20] + struct.pack("<H", 3) + b[22:], "not PCM"),
        (lambda b: b[:-10], "truncated"),
    ],
)
def test_unsupported_or_broken_input_rejected(mutate: object, message: str) -> None:
    src = wav_bytes(noise(100, 1), 8000)
    bad = mutate(src)  # type: ignore[operator]
    with pytest.raises(WavFormatError, match=message):
        mask_wav(io.BytesIO(bad), io.BytesIO(), [(0, 1)])


def test_bad_window_rejected() -> None:
    src = wav_bytes(noise(100, 1), 8000)
    with pytest.raises(ValueError, match="bad mask window"):
        mask_wav(io.BytesIO(src), io.BytesIO(), [(1.0, 0.5)])


# ----------------------------------------------------------------------------- PAN scanner


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("card 4111111111111111 exp", ["4111111111111111"]),
        ("4111 1111 1111 1111", ["4111111111111111"]),
        ("pan=5500-0000-0000-0004;", ["5500000000000004"]),
        ("amex 3782 822463 10005 and visa 4012888888881881", ["378282246310005", "4012888888881881"]),
        ("ref 12 4111 1111 1111 1111 ok", ["4111111111111111"]),
        ("4111111111111112", []),  # Luhn fails
        ("call from +1 555-123-4567 at 2024-01-15", []),
        ("id 41111111111111110000000", []),  # too long, unseparated
        ("000000000000000000", []),  # filler
        ("", []),
    ],
)
def test_find_card_numbers(text: str, expected: list[str]) -> None:
    assert find_card_numbers(text) == expected


@settings(max_examples=100)
@given(st.lists(st.integers(0, 9), min_size=12, max_size=18), st.sampled_from(["", " ", "-"]))
def test_every_luhn_valid_pan_found(body: list[int], sep: str) -> None:
    digits = "".join(map(str, body))
    check = next(str(c) for c in range(10) if luhn_valid(digits + str(c)))
    pan = digits + check
    if len(set(pan)) == 1:
        return
    spaced = sep.join(pan[i : i + 4] for i in range(0, len(pan), 4))
    assert find_card_numbers(f"x {spaced} y") == [pan]


def test_mask_pan() -> None:
    assert mask_pan("4111 1111 1111 1111") == "411111******1111"
    assert mask_pan("123") == "***"
