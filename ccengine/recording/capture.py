"""Forced recording of one connected call: start, keep alive, close, seal.

Only the engine may stop a compliance recording. Asterisk reports every
MixMonitor stop or mute (AMI); one that arrives while the call is still
connected and the engine did not ask for it is a tamper attempt (a privileged
``StopMixMonitor``, a keypad feature code on a misconfigured PBX, an operator
at the console). The recorder then restarts capture as a new *segment* within
a fraction of a second (or unmutes), reports the attempt, and at the end joins
the segments into one file - the gap filled with silence so the timeline stays
true - whose manifest lists every segment with the reason it began.

A stop that races the caller's hang-up (AMI and ARI are separate links, so the
MixMonitor stop may be seen first) is told apart by waiting ``grace`` seconds
for the hang-up before restarting; a restart on a channel that is gone fails
and is not reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np

from ..pbx.protocol import PbxAdapter, PbxError
from .manifest import Segment

log = logging.getLogger(__name__)

TamperAction = Literal["stopped", "muted"]
TamperCallback = Callable[[TamperAction, int, float], None]  # action, segment index, gap seconds


@dataclass
class CapturedSegment:
    index: int
    path: Path  # MixMonitor's mixed file; replaced by the two-channel file when the call ends
    started_at: datetime
    reason: str = "start"  # start | restart_after_stop | restart_after_failure | callback
    ended_at: datetime | None = None

    @property
    def caller_path(self) -> Path:
        """What the customer said (audio read from the customer channel)."""
        return self.path.with_name(f"{self.path.stem}.caller{self.path.suffix}")

    @property
    def agent_path(self) -> Path:
        """What the customer heard: the agent (audio written to the customer channel)."""
        return self.path.with_name(f"{self.path.stem}.agent{self.path.suffix}")


class CallRecorder:
    """One call's recording on one PBX channel (MixMonitor: both directions)."""

    def __init__(self, pbx: PbxAdapter, channel_id: str, path: Path, *, on_tamper: TamperCallback,
                 grace: float = 0.2):
        self.pbx = pbx
        self.channel_id = channel_id
        self.path = path
        self.on_tamper = on_tamper
        self.grace = grace
        self.segments: list[CapturedSegment] = []
        self.closing = False
        self.attempts = 0
        self._stopped = asyncio.Event()
        self._restoring: asyncio.Task[None] | None = None
        self._expect_stop = False
        self._last_size = -1
        self._last_growth = time.monotonic()

    @classmethod
    def adopt(cls, pbx: PbxAdapter, channel_id: str, path: Path, started_at: datetime, *,
              on_tamper: TamperCallback) -> CallRecorder:
        """Take over a recording already running on the PBX (engine restarted mid-call)."""
        recorder = cls(pbx, channel_id, path, on_tamper=on_tamper)
        recorder.segments.append(CapturedSegment(0, path, started_at))
        return recorder

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await self._start_segment(self.path, "start")

    async def _start_segment(self, path: Path, reason: str) -> None:
        self._stopped.clear()
        segment = CapturedSegment(len(self.segments), path, datetime.now(UTC), reason)
        # each direction to its own file as well, so the sealed recording keeps caller and agent apart
        await self.pbx.start_recording(self.channel_id, str(path),
                                       f"r({segment.caller_path})t({segment.agent_path})")
        self.segments.append(segment)
        self._last_size, self._last_growth = -1, time.monotonic()

    async def follow(self, channel_id: str, reason: str) -> int:
        """Continue on another channel of the same call (the customer was called back) as a new
        segment; the old channel is gone, so its stop is not a tamper attempt to undo."""
        if self._restoring is not None:
            self._restoring.cancel()
        if self.segments and self.segments[-1].ended_at is None:
            self.segments[-1].ended_at = datetime.now(UTC)
        self.channel_id = channel_id
        await self._start_segment(self._next_path(), reason)
        return len(self.segments) - 1

    def _next_path(self) -> Path:
        return self.path.with_name(f"{self.path.stem}.{len(self.segments)}{self.path.suffix}")

    async def restart(self, reason: str) -> int:
        """Engine-initiated: close the current segment and start a new one (after a
        failure was cleared). Returns the new segment's index."""
        self._expect_stop = True
        with contextlib.suppress(PbxError):
            await self.pbx.stop_recording(self.channel_id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), 1.0)
        self._expect_stop = False
        await self._start_segment(self._next_path(), reason)
        return len(self.segments) - 1

    def failure(self, probe: DirectoryProbe, stall: float = 3.0) -> str | None:
        """Why the recording cannot be trusted right now, or None: its folder
        refuses writes (read-only, full), or its file stopped growing."""
        segment = self.segments[-1] if self.segments else None
        if segment is None:
            return None
        problem = probe.check(segment.path.parent)
        if problem is not None:
            return problem
        try:
            size = segment.path.stat().st_size
        except FileNotFoundError:
            size = 0
        now = time.monotonic()
        if size > self._last_size:
            self._last_size, self._last_growth = size, now
            return None
        if now - self._last_growth > stall:
            return f"{segment.path.name} has not grown for {now - self._last_growth:.1f} s"
        return None

    def on_change(self, state: str, at: datetime) -> None:
        """Feed the PBX's recording events for this channel."""
        if state == "stopped":
            if self.segments and self.segments[-1].ended_at is None:
                self.segments[-1].ended_at = at
            self._stopped.set()
            if not self.closing and not self._expect_stop:
                self._restore_soon("stopped", at)
        elif state == "muted" and not self.closing:
            self._restore_soon("muted", at)

    def _restore_soon(self, action: TamperAction, at: datetime) -> None:
        if self._restoring is None or self._restoring.done():
            self._restoring = asyncio.create_task(self._restore(action, at), name=f"restore-rec-{self.channel_id}")

    async def _restore(self, action: TamperAction, at: datetime) -> None:
        await asyncio.sleep(self.grace)  # a hang-up seen late on the other link ends the call instead
        if self.closing:
            return
        try:
            if action == "muted":
                await self.pbx.unmute_recording(self.channel_id)
                index = len(self.segments) - 1
            else:
                index = len(self.segments)
                await self._start_segment(self._next_path(), "restart_after_stop")
        except PbxError as exc:
            log.info("recording on %s not restored (%s): the channel is gone", self.channel_id, exc)
            return
        self.attempts += 1
        self.on_tamper(action, index, round((datetime.now(UTC) - at).total_seconds(), 3))

    async def close(self, wait: float = 3.0) -> tuple[Path, list[Segment]]:
        """The call ended (the PBX stops MixMonitor at hang-up): wait for the last
        file to be closed, join the segments, return the file and its segments."""
        self.closing = True
        if self._restoring is not None:
            self._restoring.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._restoring
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), wait)
        now = datetime.now(UTC)
        for segment in self.segments:
            segment.ended_at = segment.ended_at or now
        await asyncio.to_thread(_split_channels, self.segments)
        if len(self.segments) > 1:
            await asyncio.to_thread(join_segments, self.path, self.segments)
        return self.path, [Segment(s.index, s.started_at, s.ended_at or now, s.reason) for s in self.segments]


class DirectoryProbe:
    """Whether recording folders accept writes, probed at most once per
    ``interval`` per folder (one probe serves every call recorded there)."""

    def __init__(self, interval: float = 1.0):
        self.interval = interval
        self._seen: dict[Path, tuple[float, str | None]] = {}

    def check(self, directory: Path) -> str | None:
        now = time.monotonic()
        seen = self._seen.get(directory)
        if seen is not None and now - seen[0] < self.interval:
            return seen[1]
        probe = directory / f".probe-{os.getpid()}"
        try:
            fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
            try:
                os.write(fd, b"\0" * 512)
            finally:
                os.close(fd)
            probe.unlink()
            problem = None
        except OSError as exc:
            problem = f"{directory}: {exc.strerror or exc}"
        self._seen[directory] = (now, problem)
        return problem


def _split_channels(segments: list[CapturedSegment]) -> None:
    """Replace each segment's mixed file by a two-channel one: left the caller,
    right the agent (both directions were captured apart, so this is exact)."""
    for segment in segments:
        caller, agent = _read_wav(segment.caller_path), _read_wav(segment.agent_path)
        if caller is None or agent is None:
            continue  # not captured apart (e.g. adopted after an engine restart): keep the mix
        if caller[0].sampwidth != 2 or agent[0].framerate != caller[0].framerate:
            continue
        left = np.frombuffer(caller[1], dtype="<i2")
        right = np.frombuffer(agent[1], dtype="<i2")
        frames = max(len(left), len(right))
        stereo = np.zeros((frames, 2), dtype="<i2")
        stereo[:len(left), 0] = left
        stereo[:len(right), 1] = right
        tmp = segment.path.with_name(segment.path.name + ".stereo")
        with wave.open(str(tmp), "wb") as out:
            out.setnchannels(2)
            out.setsampwidth(2)
            out.setframerate(caller[0].framerate)
            out.writeframes(stereo.tobytes())
        os.replace(tmp, segment.path)
        segment.caller_path.unlink()
        segment.agent_path.unlink()


def _read_wav(path: Path) -> tuple[wave._wave_params, bytes] | None:
    try:
        with wave.open(str(path), "rb") as source:
            return source.getparams(), source.readframes(source.getnframes())
    except (OSError, wave.Error, EOFError):
        return None  # a segment that never got a byte (the channel died at once)


def join_segments(out: Path, segments: list[CapturedSegment]) -> None:
    """Concatenate segment WAVs into ``out`` with silence for each gap, so
    positions in the file stay true to wall-clock time; replaces atomically."""
    tmp = out.with_name(out.name + ".joining")
    params = None
    with wave.open(str(tmp), "wb") as sink:
        previous_end: datetime | None = None
        for segment in segments:
            read = _read_wav(segment.path)
            if read is None:
                continue
            if params is None:
                params = read[0]
                sink.setnchannels(params.nchannels)
                sink.setsampwidth(params.sampwidth)
                sink.setframerate(params.framerate)
            if previous_end is not None:
                gap = max(0.0, (segment.started_at - previous_end).total_seconds())
                sink.writeframes(bytes(int(gap * params.framerate) * params.sampwidth * params.nchannels))
            sink.writeframes(read[1])
            previous_end = segment.ended_at or segment.started_at
    os.replace(tmp, out)
    for segment in segments[1:]:
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()
