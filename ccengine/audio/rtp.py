"""One UDP receiver per process for every tapped call direction.

Asterisk's externalMedia sends plain RTP (no RTCP, no SRTP) from one port per
channel. Demultiplexing many streams on one socket keeps the process to a
single file descriptor and one event-loop callback per packet. The receiver
never waits on analysers: each stream has a bounded queue and a frame that
does not fit is dropped and counted, so a slow analyser cannot back-pressure
the socket (and certainly not the call or its recording).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, cast

import numpy as np
import numpy.typing as npt

Codec = Literal["slin16", "slin", "ulaw"]
Pcm = npt.NDArray[np.int16]
StreamKey = str

FRAME_MS = 20
_RTP_HEADER = struct.Struct("!BBHII")


def _ulaw_table() -> npt.NDArray[np.int16]:
    """G.711 mu-law expansion table (ITU-T G.711)."""
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


ULAW = _ulaw_table()


def codec_rate(codec: Codec) -> int:
    return 16000 if codec == "slin16" else 8000


def decode(codec: Codec, payload: bytes) -> Pcm:
    """Decode an RTP payload; Asterisk's slin payloads are big-endian (network order)."""
    if codec == "ulaw":
        return ULAW[np.frombuffer(payload, dtype=np.uint8)]
    return np.frombuffer(payload[: len(payload) // 2 * 2], dtype=">i2").astype(np.int16)


@dataclass(frozen=True)
class RtpPacket:
    seq: int
    timestamp: int
    ssrc: int
    payload_type: int
    payload: bytes


def parse_rtp(data: bytes) -> RtpPacket | None:
    """Parse an RTP packet (RFC 3550), skipping CSRCs, extension and padding."""
    if len(data) < 12:
        return None
    b0, b1, seq, ts, ssrc = _RTP_HEADER.unpack_from(data)
    if b0 >> 6 != 2:
        return None
    offset = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if len(data) < offset + 4:
            return None
        offset += 4 + 4 * struct.unpack_from("!H", data, offset + 2)[0]
    end = len(data)
    if b0 & 0x20 and end > offset:
        end -= data[-1]
    if offset > end:
        return None
    return RtpPacket(seq, ts, ssrc, b1 & 0x7F, data[offset:end])


def build_rtp(seq: int, timestamp: int, ssrc: int, payload: bytes, payload_type: int = 118) -> bytes:
    """Build a minimal RTP packet (used by tests, the benchmark and the lab)."""
    return _RTP_HEADER.pack(0x80, payload_type & 0x7F, seq & 0xFFFF, timestamp & 0xFFFFFFFF,
                            ssrc & 0xFFFFFFFF) + payload


@dataclass(frozen=True, slots=True)
class Frame:
    """20 ms of audio of one stream; ``index`` counts frames since the stream began."""

    stream: StreamKey
    index: int
    rate: int
    pcm: Pcm
    arrived: float
    concealed: bool = False


@dataclass
class StreamStats:
    packets: int = 0
    frames: int = 0
    concealed_packets: int = 0
    late_or_duplicate: int = 0
    reordered: int = 0
    dropped_frames: int = 0
    resyncs: int = 0
    timestamp_gaps: int = 0  # pauses in the sender's audio (no packets, clock ran on) filled with silence


class JitterBuffer:
    """Reorders packets within ``window`` packets and conceals the rest as silence.

    Waiting for a missing packet costs latency; ``window`` bounds it (3 x 20 ms
    by default). A gap still open when the window is full is declared lost
    and filled with zeros of the last packet's length, so time keeps its
    meaning for every analyser downstream (talk time, silence, offsets).
    A sender that simply stops sending (Asterisk's snoop has no frame while
    its party sends no audio, phones with silence suppression) keeps its
    sequence numbers contiguous but moves the RTP timestamp on: that pause
    becomes silence too, so both directions of a call stay on one clock.
    """

    def __init__(self, window: int = 3, resync_gap: int = 500, bytes_per_sample: int = 2,
                 max_pause_samples: int = 16000 * 60):
        self.window = window
        self.resync_gap = resync_gap
        self.bytes_per_sample = bytes_per_sample
        self.max_pause_samples = max_pause_samples
        self.next_seq: int | None = None
        self.next_ts: int | None = None
        self.pending: dict[int, bytes] = {}
        self.stamps: dict[int, int] = {}
        self.last_len = 0
        self.highest: int | None = None
        self.stats = StreamStats()

    def _extend(self, seq: int) -> int:
        """Map a 16-bit sequence number to the extended counter nearest ``next_seq``."""
        assert self.next_seq is not None
        base = self.next_seq
        cand = (base & ~0xFFFF) | seq
        if cand - base > 0x8000:
            cand -= 0x10000
        elif base - cand > 0x8000:
            cand += 0x10000
        return cand

    def push(self, seq: int, payload: bytes, timestamp: int | None = None) -> list[tuple[bytes, bool]]:
        """Add a packet; return payloads now in order, each flagged if concealed."""
        self.stats.packets += 1
        if self.next_seq is None:
            self.next_seq = seq
        ext = self._extend(seq)
        if ext < self.next_seq or ext in self.pending:
            self.stats.late_or_duplicate += 1
            return []
        if ext - self.next_seq > self.resync_gap:
            self.stats.resyncs += 1
            out = self.flush()
            self.next_seq = ext
            self.next_ts = None
            self.pending[ext] = payload
            if timestamp is not None:
                self.stamps[ext] = timestamp
            return out + self._release()
        if self.highest is not None and ext < self.highest:
            self.stats.reordered += 1
        self.highest = ext if self.highest is None else max(self.highest, ext)
        self.pending[ext] = payload
        if timestamp is not None:
            self.stamps[ext] = timestamp
        return self._release()

    def _take(self, seq: int, got: bytes, out: list[tuple[bytes, bool]]) -> None:
        """Emit a received packet, preceded by silence for any pause its timestamp reveals."""
        ts = self.stamps.pop(seq, None)
        if ts is not None and self.next_ts is not None:
            pause = (ts - self.next_ts) & 0xFFFFFFFF
            if 0 < pause <= self.max_pause_samples:
                self.stats.timestamp_gaps += 1
                out.append((bytes(pause * self.bytes_per_sample), True))
        self.last_len = len(got)
        out.append((got, False))
        self.next_ts = None if ts is None else (ts + len(got) // self.bytes_per_sample) & 0xFFFFFFFF

    def _conceal(self, length: int, out: list[tuple[bytes, bool]]) -> None:
        self.stats.concealed_packets += 1
        out.append((bytes(length), True))
        if self.next_ts is not None:
            self.next_ts = (self.next_ts + length // self.bytes_per_sample) & 0xFFFFFFFF

    def _release(self) -> list[tuple[bytes, bool]]:
        out: list[tuple[bytes, bool]] = []
        assert self.next_seq is not None
        while self.pending:
            got = self.pending.pop(self.next_seq, None)
            if got is not None:
                self._take(self.next_seq, got, out)
            elif max(self.pending) - self.next_seq >= self.window:
                self._conceal(self.last_len or len(next(iter(self.pending.values()))), out)
            else:
                break
            self.next_seq += 1
        return out

    def flush(self) -> list[tuple[bytes, bool]]:
        """Release everything held, concealing gaps (stream end or resync)."""
        out: list[tuple[bytes, bool]] = []
        while self.pending and self.next_seq is not None:
            got = self.pending.pop(self.next_seq, None)
            if got is None:
                self._conceal(self.last_len, out)
            else:
                self._take(self.next_seq, got, out)
            self.next_seq += 1
        return out


@dataclass
class Stream:
    key: StreamKey
    codec: Codec
    queue_size: int
    jitter: JitterBuffer = field(default_factory=JitterBuffer)
    queue: deque[Frame] = field(default_factory=deque)
    residual: Pcm = field(default_factory=lambda: np.zeros(0, dtype=np.int16))
    residual_concealed: bool = False
    frame_index: int = 0

    @property
    def rate(self) -> int:
        return codec_rate(self.codec)

    @property
    def stats(self) -> StreamStats:
        return self.jitter.stats

    def accept(self, payloads: list[tuple[bytes, bool]], now: float) -> int:
        """Cut decoded audio into 20 ms frames and enqueue them; return frames enqueued."""
        n = self.rate * FRAME_MS // 1000
        enqueued = 0
        for payload, concealed in payloads:
            pcm = decode(self.codec, payload) if not concealed else np.zeros(
                len(payload) if self.codec == "ulaw" else len(payload) // 2, dtype=np.int16)
            if not self.residual.size and pcm.size == n:  # the usual case: one packet, one frame
                self.frame_index += 1
                self.stats.frames += 1
                if len(self.queue) >= self.queue_size:
                    self.stats.dropped_frames += 1
                else:
                    self.queue.append(Frame(self.key, self.frame_index - 1, self.rate, pcm, now, concealed))
                    enqueued += 1
                continue
            buf = np.concatenate([self.residual, pcm]) if self.residual.size else pcm
            self.residual_concealed = self.residual_concealed or concealed
            start = 0
            while buf.size - start >= n:
                frame = Frame(self.key, self.frame_index, self.rate, buf[start:start + n], now,
                              self.residual_concealed)
                self.frame_index += 1
                self.stats.frames += 1
                start += n
                self.residual_concealed = concealed
                if len(self.queue) >= self.queue_size:
                    self.stats.dropped_frames += 1
                else:
                    self.queue.append(frame)
                    enqueued += 1
            self.residual = buf[start:]
        return enqueued


class RtpReceiver(asyncio.DatagramProtocol):
    """Demultiplexes RTP by source address (externalMedia) or SSRC into per-stream queues.

    Register a stream before its audio arrives; packets from unknown sources are
    counted and ignored (a tap we did not ask for is noise or an attack).
    """

    def __init__(self, queue_size: int = 50, jitter_window: int = 3):
        self.queue_size = queue_size
        self.jitter_window = jitter_window
        self.streams: dict[StreamKey, Stream] = {}
        self._by_addr: dict[tuple[str, int], StreamKey] = {}
        self._by_ssrc: dict[int, StreamKey] = {}
        self.unknown_packets = 0
        self.malformed_packets = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.sock: socket.socket | None = None
        self.on_close: Callable[[], None] | None = None
        self._ready = asyncio.Event()
        self._dirty: set[StreamKey] = set()

    # -- registration ---------------------------------------------------------
    def register(self, key: StreamKey, codec: Codec, *, addr: tuple[str, int] | None = None,
                 ssrc: int | None = None, queue_size: int | None = None) -> Stream:
        stream = Stream(key, codec, queue_size or self.queue_size,
                        JitterBuffer(self.jitter_window, bytes_per_sample=1 if codec == "ulaw" else 2))
        self.streams[key] = stream
        if addr is not None:
            self._by_addr[addr] = key
        if ssrc is not None:
            self._by_ssrc[ssrc] = key
        return stream

    def unregister(self, key: StreamKey) -> StreamStats | None:
        stream = self.streams.pop(key, None)
        self._by_addr = {a: k for a, k in self._by_addr.items() if k != key}
        self._by_ssrc = {s: k for s, k in self._by_ssrc.items() if k != key}
        return stream.stats if stream else None

    # -- asyncio protocol -----------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.sock = transport.get_extra_info("socket")

    def port(self) -> int:
        assert self.sock is not None
        return int(self.sock.getsockname()[1])

    def close(self) -> None:
        """Stop receiving (either reader flavour) and release the socket."""
        if self.on_close is not None:
            self.on_close()
            self.on_close = None
        if self.transport is not None:
            self.transport.close()
        elif self.sock is not None:
            self.sock.close()

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        packet = parse_rtp(data)
        if packet is None:
            self.malformed_packets += 1
            return
        key = self._by_ssrc.get(packet.ssrc)
        if key is None:
            key = self._by_addr.get((str(addr[0]), int(addr[1])))
        stream = self.streams.get(key) if key is not None else None
        if stream is None:
            self.unknown_packets += 1
            return
        if stream.accept(stream.jitter.push(packet.seq, packet.payload, packet.timestamp), time.monotonic()):
            self._dirty.add(stream.key)
            self._ready.set()

    # -- consumption ----------------------------------------------------------
    def drain(self, max_per_stream: int = 1_000_000) -> list[Frame]:
        """Take queued frames of every stream that has some (oldest first per stream)."""
        out: list[Frame] = []
        dirty, self._dirty = self._dirty, set()
        for key in dirty:
            stream = self.streams.get(key)
            if stream is None:
                continue
            q = stream.queue
            take = min(len(q), max_per_stream)
            out.extend(q.popleft() for _ in range(take))
            if q:
                self._dirty.add(key)
        if not self._dirty:
            self._ready.clear()
        return out

    async def wait_frames(self) -> None:
        await self._ready.wait()

    async def consume(self, handler: Callable[[list[Frame]], Awaitable[None]], *,
                      tick: float = 0.02, max_per_stream: int = 1_000_000) -> None:
        """Forever: hand every stream's pending frames to ``handler`` as one batch, at most once per ``tick``.

        Waking per packet would give batches of one frame and lose the numpy
        batching; one tick (a frame's duration) adds at most 20 ms of latency.
        """
        loop = asyncio.get_running_loop()
        while True:
            await self.wait_frames()
            started = loop.time()
            frames = self.drain(max_per_stream)
            if frames:
                await handler(frames)
            await asyncio.sleep(max(0.0, started + tick - loop.time()))

    def dropped(self) -> int:
        return sum(s.stats.dropped_frames for s in self.streams.values())


async def open_receiver(host: str = "127.0.0.1", port: int = 0, rcvbuf: int = 8 << 20, *,
                        batched: bool = True, **kwargs: int) -> RtpReceiver:
    """Bind the process-wide receiver; ``port=0`` picks a free port (see :func:`receiver_port`).

    ``batched`` reads every queued datagram per socket wake-up: asyncio's own
    datagram transport does one epoll round-trip per packet, which measured as
    the ceiling (~40 % of the per-packet cost) at a few hundred streams.
    The protocol object is the same either way. A large kernel buffer absorbs
    event-loop stalls instead of losing packets (capped by net.core.rmem_max).
    """
    loop = asyncio.get_running_loop()
    protocol = RtpReceiver(**kwargs)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((host, port))
    sock.setblocking(False)
    if not batched:
        await loop.create_datagram_endpoint(lambda: protocol, sock=sock)
        return protocol
    protocol.sock = sock

    def readable() -> None:
        for _ in range(4096):
            try:
                data, addr = sock.recvfrom(4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. ICMP errors surfaced on the socket: keep reading
                continue
            protocol.datagram_received(data, addr)

    loop.add_reader(sock.fileno(), readable)

    def stop() -> None:
        loop.remove_reader(sock.fileno())

    protocol.on_close = stop
    return protocol


def receiver_port(receiver: RtpReceiver) -> int:
    return receiver.port()
