"""Joining restarted recording segments keeps one true timeline."""

from __future__ import annotations

import asyncio
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

from ccengine.pbx.protocol import PbxAdapter
from ccengine.recording.capture import CallRecorder, CapturedSegment, join_segments

RATE = 8000


def _wav(path: Path, seconds: float, level: int) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(level.to_bytes(2, "little", signed=True) * int(seconds * RATE))


def test_segments_are_joined_with_silence_for_the_gap(tmp_path: Path) -> None:
    t0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    first, second = tmp_path / "call.wav", tmp_path / "call.1.wav"
    _wav(first, 2.0, 1000)
    _wav(second, 1.5, 2000)
    segments = [CapturedSegment(0, first, t0, "start", t0 + timedelta(seconds=2)),
                CapturedSegment(1, second, t0 + timedelta(seconds=2.25), "restart_after_stop",
                                t0 + timedelta(seconds=3.75))]
    join_segments(first, segments)
    with wave.open(str(first)) as joined:
        samples = joined.readframes(joined.getnframes())
    levels = [int.from_bytes(samples[i:i + 2], "little", signed=True) for i in range(0, len(samples), 2)]
    assert len(levels) == int(3.75 * RATE)
    assert set(levels[:2 * RATE]) == {1000}
    assert set(levels[2 * RATE:int(2.25 * RATE)]) == {0}, "the 0.25 s gap is silence"
    assert set(levels[int(2.25 * RATE):]) == {2000}
    assert not second.exists()


def test_a_segment_without_audio_is_skipped(tmp_path: Path) -> None:
    t0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    first = tmp_path / "call.wav"
    _wav(first, 1.0, 500)
    segments = [CapturedSegment(0, first, t0, "start", t0 + timedelta(seconds=1)),
                CapturedSegment(1, tmp_path / "call.1.wav", t0 + timedelta(seconds=1.1), "restart_after_stop")]
    join_segments(first, segments)
    with wave.open(str(first)) as joined:
        assert joined.getnframes() == RATE


class _Pbx:
    """Just enough PBX for a recorder: remembers which channel each capture started on."""

    def __init__(self) -> None:
        self.started: list[tuple[str, str]] = []

    async def start_recording(self, channel_id: str, path: str, options: str = "") -> None:
        self.started.append((channel_id, path))


def test_a_callback_continues_the_recording_on_the_new_channel(tmp_path: Path) -> None:
    async def scenario() -> CallRecorder:
        recorder = CallRecorder(cast(PbxAdapter, pbx), "caller-leg", tmp_path / "call.wav",
                                on_tamper=lambda *attempt: tampered.append(attempt))
        await recorder.start()
        recorder.on_change("stopped", datetime.now(UTC))  # the caller hung up to be called back
        await recorder.follow("callback-leg", "callback")
        await asyncio.sleep(recorder.grace * 2)  # the stop of the old leg must not be "restored"
        return recorder

    pbx, tampered = _Pbx(), list[tuple[object, ...]]()
    recorder = asyncio.run(scenario())
    assert pbx.started == [("caller-leg", str(tmp_path / "call.wav")), ("callback-leg", str(tmp_path / "call.1.wav"))]
    assert [(s.index, s.reason) for s in recorder.segments] == [(0, "start"), (1, "callback")]
    assert recorder.segments[0].ended_at is not None and recorder.segments[1].ended_at is None
    assert recorder.channel_id == "callback-leg" and tampered == [] and recorder.attempts == 0
