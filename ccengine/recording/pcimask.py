"""PCI masking of WAV audio and a card-number (PAN) scanner.

Masking replaces samples inside each window with digital silence of the same length, so the file
keeps its size and every later timestamp stays true (a regulator comparing the recording with the
call's event log must see events where they happened). It is streaming and copies every non-audio
byte verbatim; only PCM 16-bit (plain or WAVE_FORMAT_EXTENSIBLE) is accepted, because silence is only
"all-zero bytes" for signed PCM.

Window edges are rounded outwards to whole frames: masking a little more is safe, less is not.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from .fileio import ChunkStream

_PCM_GUID_TAIL = bytes.fromhex("000000001000800000aa00389b71")
_BLOCK = 1 << 18


class WavFormatError(ValueError):
    """Input is not a WAV this masker can handle safely."""


@dataclass(frozen=True)
class WavFormat:
    channels: int
    sample_rate: int
    bits_per_sample: int
    block_align: int


def _merge(windows: Iterable[tuple[float, float]], rate: int, total_frames: int) -> list[tuple[int, int]]:
    frames: list[tuple[int, int]] = []
    for start, end in windows:
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end < start:
            raise ValueError(f"bad mask window ({start}, {end})")
        a = min(total_frames, math.floor(start * rate))
        b = min(total_frames, math.ceil(end * rate))
        if b > a:
            frames.append((a, b))
    frames.sort()
    merged: list[tuple[int, int]] = []
    for a, b in frames:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _read_exact(src: BinaryIO, size: int) -> bytes:
    data = src.read(size)
    while len(data) < size:
        more = src.read(size - len(data))
        if not more:
            break
        data += more
    return data


def _parse_fmt(body: bytes) -> WavFormat:
    if len(body) < 16:
        raise WavFormatError("fmt chunk too short")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == 0xFFFE:
        if len(body) < 40 or body[24:26] != b"\x01\x00" or body[26:40] != _PCM_GUID_TAIL:
            raise WavFormatError("WAVE_FORMAT_EXTENSIBLE with a non-PCM subformat")
    elif tag != 1:
        raise WavFormatError(f"format tag {tag:#x} is not PCM")
    if bits != 16:
        raise WavFormatError(f"{bits}-bit samples; only 16-bit PCM is supported")
    if channels < 1 or rate < 1 or block_align != 2 * channels:
        raise WavFormatError("inconsistent fmt chunk (channels / rate / block align)")
    return WavFormat(channels, rate, bits, block_align)


def iter_masked_wav(src: BinaryIO, windows: Sequence[tuple[float, float]]) -> Iterator[bytes]:
    """Yield the bytes of ``src`` with samples inside ``windows`` (seconds) set to silence."""
    riff = _read_exact(src, 12)
    if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
        raise WavFormatError("not a RIFF/WAVE file")
    yield riff
    fmt: WavFormat | None = None
    while True:
        head = _read_exact(src, 8)
        if not head:
            return
        if len(head) < 8:
            raise WavFormatError("truncated chunk header")
        cid, size = head[:4], struct.unpack("<I", head[4:])[0]
        padded = size + (size & 1)
        yield head
        if cid == b"data":
            if fmt is None:
                raise WavFormatError("data chunk before fmt chunk")
            yield from _mask_data(src, size, fmt, windows)
            if padded > size:
                yield _read_exact(src, 1)
            continue
        body = _read_exact(src, padded)
        if len(body) < size:
            raise WavFormatError(f"truncated {cid!r} chunk")
        if cid == b"fmt ":
            fmt = _parse_fmt(body)
        yield body


def _mask_data(
    src: BinaryIO, size: int, fmt: WavFormat, windows: Sequence[tuple[float, float]]
) -> Iterator[bytes]:
    align = fmt.block_align
    spans = [(a * align, b * align) for a, b in _merge(windows, fmt.sample_rate, size // align)]
    pos = 0
    block = _BLOCK - _BLOCK % align
    while pos < size:
        data = _read_exact(src, min(block, size - pos))
        if not data:
            raise WavFormatError(f"data chunk truncated at byte {pos} of {size}")
        end = pos + len(data)
        if spans and spans[0][0] < end:
            buf = bytearray(data)
            for a, b in spans:
                if a >= end:
                    break
                lo, hi = max(a, pos), min(b, end)
                if hi > lo:
                    buf[lo - pos : hi - pos] = bytes(hi - lo)
            while spans and spans[0][1] <= end:
                spans.pop(0)
            data = bytes(buf)
        yield data
        pos = end


def mask_wav(src: BinaryIO, dst: BinaryIO, windows: Sequence[tuple[float, float]]) -> int:
    """Stream a masked copy of ``src`` into ``dst``; returns the number of bytes written."""
    written = 0
    for piece in iter_masked_wav(src, windows):
        dst.write(piece)
        written += len(piece)
    return written


class MaskedReader(ChunkStream):
    """File-like masked view of a WAV (lets the vault mask while it encrypts, in one pass)."""

    def __init__(self, src: BinaryIO, windows: Sequence[tuple[float, float]]) -> None:
        super().__init__(iter_masked_wav(src, windows))

_RUN = re.compile(r"\d(?:[ \-]?\d)*")
_SEP = re.compile(r"[ \-]")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _plausible(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn_valid(digits)


def find_card_numbers(text: str) -> list[str]:
    """Luhn-valid 13-19 digit card numbers in ``text``, normalised to digits, in order of appearance.

    Each maximal digit run is tried whole; if it is not a PAN, contiguous separator-delimited groups
    inside it are tried (so "ref 12 4111 1111 1111 1111" still finds the card). Unseparated runs
    longer than 19 digits are not searched inside, to keep long numeric ids from flooding results.
    Single-digit repeats (e.g. all zeros) are ignored as filler. Callers must not log the result
    unmasked; use ``mask_pan``.
    """
    found: list[str] = []
    for match in _RUN.finditer(text):
        run = match.group()
        whole = _SEP.sub("", run)
        if _plausible(whole):
            found.append(whole)
            continue
        groups = _SEP.split(run)
        if len(groups) == 1:
            continue
        i = 0
        while i < len(groups):
            best = 0
            acc = ""
            for j in range(i, len(groups)):
                acc += groups[j]
                if len(acc) > 19:
                    break
                if _plausible(acc):
                    best = j + 1
            if best:
                found.append("".join(groups[i:best]))
                i = best
            else:
                i += 1
    return found


def mask_pan(pan: str) -> str:
    """Display form allowed by PCI DSS 3.4.1: at most BIN (first 6) and last 4."""
    digits = re.sub(r"\D", "", pan)
    if len(digits) < 13:
        return "*" * len(digits)
    return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]
