"""RTP receiver: parsing, reordering, loss concealment, demultiplexing, overload."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import pytest

from ccengine.audio.rtp import (
    ULAW,
    JitterBuffer,
    build_rtp,
    decode,
    open_receiver,
    parse_rtp,
    receiver_port,
)


def test_parse_roundtrip_and_malformed() -> None:
    pkt = parse_rtp(build_rtp(65535, 123, 0xDEADBEEF, b"\x01\x02"))
    assert pkt is not None and (pkt.seq, pkt.timestamp, pkt.ssrc, pkt.payload) == (65535, 123, 0xDEADBEEF, b"\x01\x02")
    assert parse_rtp(b"\x00" * 12) is None  # version 0
    assert parse_rtp(b"\x80") is None


def test_decode_slin_is_big_endian_and_ulaw_table() -> None:
    assert decode("slin16", b"\x01\x00\xff\xfe").tolist() == [256, -2]
    assert ULAW[0xFF] == 0 and ULAW[0x7F] == 0
    assert ULAW[0x00] == -32124 and ULAW[0x80] == 32124


def _payload(i: int) -> bytes:
    return bytes([i % 256]) * 320


def test_reorder_within_window() -> None:
    jb = JitterBuffer(window=3)
    out = []
    for seq in [10, 12, 11, 13, 14]:
        out += jb.push(seq, _payload(seq))
    assert [p[0] for p, _ in out] == [10, 11, 12, 13, 14]
    assert not any(c for _, c in out)
    assert jb.stats.reordered == 1


def test_loss_concealed_with_silence_of_right_length() -> None:
    jb = JitterBuffer(window=3)
    out = []
    for seq in [1, 2, 4, 5, 6, 7]:
        out += jb.push(seq, _payload(seq))
    assert [c for _, c in out] == [False, False, True, False, False, False, False]
    assert out[2][0] == bytes(320)
    assert jb.stats.concealed_packets == 1


def test_sequence_wraparound_and_late_duplicates() -> None:
    jb = JitterBuffer(window=2)
    out = []
    for seq in [65534, 65535, 0, 1, 0, 65535]:
        out += jb.push(seq, _payload(seq))
    assert len(out) == 4 and jb.stats.late_or_duplicate == 2


async def test_demux_by_ssrc_and_address_over_udp() -> None:
    rx = await open_receiver()
    port = receiver_port(rx)
    rx.register("a", "slin16", ssrc=1)
    rx.register("b", "ulaw", ssrc=2)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", 0))
        rx.register("c", "slin", addr=sock.getsockname())
        tone = (np.sin(np.arange(320) / 5) * 1000).astype(">i2").tobytes()
        for i in range(5):
            sock.sendto(build_rtp(i, i * 320, 1, tone), ("127.0.0.1", port))
            sock.sendto(build_rtp(i, i * 160, 2, b"\xff" * 160), ("127.0.0.1", port))
            sock.sendto(build_rtp(i, i * 160, 99, tone[:320]), ("127.0.0.1", port))
        await asyncio.sleep(0.1)
        frames = rx.drain()
    finally:
        sock.close()
        rx.close()
    by = {k: [f for f in frames if f.stream == k] for k in "abc"}
    assert len(by["a"]) == 5 and by["a"][0].rate == 16000 and len(by["a"][0].pcm) == 320
    assert len(by["b"]) == 5 and not by["b"][0].pcm.any()
    assert len(by["c"]) == 5 and by["c"][0].rate == 8000


async def test_overload_drops_and_counts_without_blocking_receiver() -> None:
    rx = await open_receiver(queue_size=5)
    port = receiver_port(rx)
    rx.register("s", "slin", ssrc=7)
    processed = 0

    async def slow(frames: list[object]) -> None:
        nonlocal processed
        processed += len(frames)
        await asyncio.sleep(0.2)  # an analyser ten times slower than real time

    consumer = asyncio.create_task(rx.consume(slow))  # type: ignore[arg-type]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for i in range(100):
            sock.sendto(build_rtp(i, i * 160, 7, b"\x00\x01" * 160), ("127.0.0.1", port))
            if i % 10 == 0:
                await asyncio.sleep(0.001)
        await asyncio.sleep(0.3)
    finally:
        sock.close()
        consumer.cancel()
        rx.close()
    st = rx.streams["s"].stats
    assert st.packets == 100 and st.frames == 100  # the receiver saw every packet
    assert st.dropped_frames > 0 and rx.dropped() == st.dropped_frames
    assert processed + st.dropped_frames + len(rx.streams["s"].queue) == 100


@pytest.mark.parametrize("codec,size", [("slin16", 640), ("slin", 320), ("ulaw", 160)])
async def test_frames_are_20ms_whatever_the_packetisation(codec: str, size: int) -> None:
    rx = await open_receiver()
    stream = rx.register("x", codec, ssrc=5)  # type: ignore[arg-type]
    for i in range(3):  # 30 ms packets
        rx.datagram_received(build_rtp(i, 0, 5, b"\x00" * (size * 3 // 2)), ("127.0.0.1", 1))
    assert len(stream.queue) == 4 and all(len(f.pcm) == stream.rate // 50 for f in stream.queue)
    rx.close()


def test_sender_pause_becomes_silence_by_timestamp() -> None:
    """A sender that stops (no packets) while its clock runs on: the pause is filled, time stays true."""
    jb = JitterBuffer(window=3, bytes_per_sample=2)
    out = []
    for seq in range(5):
        out += jb.push(seq, _payload(seq), timestamp=seq * 160)
    for seq in range(5, 8):  # resumes 1 s later with the next sequence numbers
        out += jb.push(seq, _payload(seq), timestamp=8000 + seq * 160)
    samples = [len(p) // 2 for p, _ in out]
    assert sum(samples) == 8 * 160 + 8000 and jb.stats.timestamp_gaps == 1
    assert [c for _, c in out] == [False] * 5 + [True] + [False] * 3
    assert jb.stats.concealed_packets == 0


def test_lost_packet_and_pause_are_not_counted_twice() -> None:
    jb = JitterBuffer(window=2, bytes_per_sample=2)
    out = []
    for seq in [0, 1, 3, 4, 5]:  # 2 lost: concealed by sequence, the clock agrees, no extra silence
        out += jb.push(seq, _payload(seq), timestamp=seq * 160)
    assert sum(len(p) // 2 for p, _ in out) == 6 * 160
    assert jb.stats.concealed_packets == 1 and jb.stats.timestamp_gaps == 0
