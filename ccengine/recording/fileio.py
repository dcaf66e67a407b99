"""Small file helpers shared by the vault's modules."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path


class ChunkStream(io.RawIOBase):
    """A readable file over an iterator of byte chunks, so streaming stages compose like files."""

    def __init__(self, chunks: Iterator[bytes] | None = None) -> None:
        super().__init__()
        self._chunks: Iterator[bytes] = chunks if chunks is not None else iter(())
        self._buf = b""
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while self._pos >= len(self._buf):
            nxt = next(self._chunks, None)
            if nxt is None:
                return 0
            self._buf, self._pos = nxt, 0
        n = min(len(buffer), len(self._buf) - self._pos)
        buffer[:n] = self._buf[self._pos : self._pos + n]
        self._pos += n
        return n


def fsync_dir(path: Path) -> None:
    """Make a rename or new file in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
