"""Receive-only WebSocket subscribers for the stream benchmarks, cheap enough not to be the bottleneck.

A general client (aiohttp's included) wakes a task and builds a message object for every
message of every connection: with 100 subscribers at 100 messages/s each that is 10,000
wake-ups a second in one Python process, and the clients rather than the server set the
latency. Here each connection is an ``asyncio.Protocol`` that parses frames in place as
bytes arrive: no task, no decoding, only the first and last ``seq`` of each message
(``{"seq":N,...`` lines, read at a fixed position) and the receive time, one
``time.monotonic_ns()`` per read from the socket. Server frames are never masked or
compressed (no extension is offered); pings are answered, a close frame ends the connection.

Run by the benchmark as a subprocess:
``python bench/ws_subscribers.py URL N EXPECTED OUT.npy HEADERS_JSON``; prints ``ready``
once all N are connected and ``cpu <seconds>`` (its own CPU time) when they are done.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

SEQ_AT = len('{"seq":')
TEXT, CLOSE, PING = 0x1, 0x8, 0x9


class Subscriber(asyncio.Protocol):
    """One connection: handshake, then frames parsed as they arrive."""

    def __init__(self, index: int, request: bytes, expected: int, records: list[tuple[int, int, int, int]],
                 connected: asyncio.Future[None], done: asyncio.Future[None]):
        self.index = index
        self.request = request
        self.expected = expected
        self.records = records
        self.connected = connected
        self.done = done
        self.buffer = bytearray()
        self.upgraded = False
        self.received = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buffer[:self.buffer.find(b"\r\n")])
            if b" 101 " not in status:
                self._finish(ConnectionError(f"subscriber {self.index}: {status.decode(errors='replace')}"))
                return
            del self.buffer[:end + 4]
            self.upgraded = True
            self.connected.set_result(None)
        self._frames(now)

    def _frames(self, now: int) -> None:
        buffer = self.buffer
        at = 0
        while len(buffer) - at >= 2:
            opcode, length = buffer[at] & 0x0F, buffer[at + 1] & 0x7F
            start = at + 2
            if length == 126:
                if len(buffer) - at < 4:
                    break
                length, start = int.from_bytes(buffer[at + 2:at + 4], "big"), at + 4
            elif length == 127:
                if len(buffer) - at < 10:
                    break
                length, start = int.from_bytes(buffer[at + 2:at + 10], "big"), at + 10
            end = start + length
            if end > len(buffer):
                break
            if opcode == TEXT:
                self._message(buffer, start, end, now)
            elif opcode == PING:
                self._send(0xA, bytes(buffer[start:end]))
            elif opcode == CLOSE:
                self._finish(ConnectionError(f"subscriber {self.index} closed by the server: "
                                             f"{bytes(buffer[start:end])!r}"))
                return
            at = end
        del buffer[:at]

    def _message(self, buffer: bytearray, start: int, end: int, now: int) -> None:
        first = int(buffer[start + SEQ_AT:buffer.index(b",", start + SEQ_AT)])
        tail = buffer.rfind(b"\n", start, end)
        if tail < 0:
            last, count = first, 1
        else:
            last = int(buffer[tail + 1 + SEQ_AT:buffer.index(b",", tail + 1 + SEQ_AT)])
            count = buffer.count(b"\n", start, end) + 1
        self.records.append((self.index, first, last, now))
        self.received += count
        if self.received >= self.expected:
            self._send(CLOSE, (1000).to_bytes(2, "big"))
            self._finish(None)

    def _send(self, opcode: int, payload: bytes) -> None:
        """A client frame must be masked: the all-zero key leaves the payload as it is."""
        assert self.transport is not None and len(payload) < 126
        self.transport.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)

    def _finish(self, error: Exception | None) -> None:
        if self.transport is not None:
            self.transport.close()
        for future in (self.connected, self.done):
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self._finish(exc or ConnectionError(f"subscriber {self.index} lost after {self.received} events"))


def handshake(url: str, headers: dict[str, str]) -> bytes:
    parts = urlsplit(url)
    lines = [f"GET {parts.path}{'?' + parts.query if parts.query else ''} HTTP/1.1", f"Host: {parts.netloc}",
             "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13",
             f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
             *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def subscribe(url: str, n: int, expected: int, out: Path, headers: dict[str, str], first_index: int = 0,
                    limit: float = 120.0) -> None:
    """n subscribers numbered from ``first_index``; saves (subscriber, first seq, last seq, receive ns) rows."""
    loop = asyncio.get_running_loop()
    parts = urlsplit(url)
    context: ssl.SSLContext | None = None
    if parts.scheme in ("https", "wss"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the lab's self-signed certificate on loopback
    port = parts.port or (443 if context else 80)
    records: list[tuple[int, int, int, int]] = []
    connected = [loop.create_future() for _ in range(n)]
    done = [loop.create_future() for _ in range(n)]
    for i in range(n):
        await loop.create_connection(
            lambda i=i: Subscriber(first_index + i, handshake(url, headers), expected, records,
                                   connected[i], done[i]),
            parts.hostname or "127.0.0.1", port, ssl=context)
    await asyncio.gather(*connected)
    print("ready", flush=True)
    finished, _pending = await asyncio.wait(done, timeout=limit)
    failed = [f.exception() for f in finished if f.exception() is not None]
    for error in failed[:3]:
        print(f"error {error}", file=sys.stderr, flush=True)
    np.save(out, np.array(records, dtype=np.int64).reshape(-1, 4))
    print(f"cpu {time.process_time():.3f}", flush=True)


def main() -> None:
    url, n, expected, out, headers, first_index = sys.argv[1:7]
    asyncio.run(subscribe(url, int(n), int(expected), Path(out), json.loads(headers), int(first_index)))


if __name__ == "__main__":
    main()
