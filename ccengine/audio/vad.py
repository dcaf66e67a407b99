"""Talk/silence/overtalk accounting per call from webrtcvad decisions per direction.

webrtcvad answers per 20 ms frame and flickers inside words; a short hangover
turns frame decisions into talk spurts so talk time matches what a listener
would call talking. Time is media time (frame index x 20 ms), not wall time,
so results do not depend on how late the analyser runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import webrtcvad

from ccengine.core.events import Payload

from .events import CallAnalyticsOvertalk, CallAnalyticsSilence, Direction

FRAME_S = 0.02
_NATIVE_LE = np.dtype("<i2")


class FrameVad:
    """webrtcvad for one stream; accepts 8 or 16 kHz int16 frames of 10/20/30 ms.

    webrtcvad keeps saying "speech" for a few frames after speech stops (its
    own hangover); frames quieter than ``floor_db`` (dBFS) are not speech
    whatever it says, which keeps talk time from growing by ~0.1 s per turn.
    """

    def __init__(self, mode: int = 2, floor_db: float = -55.0):
        self._vad = webrtcvad.Vad(mode)
        self._floor = (10 ** (floor_db / 20) * 32768) ** 2  # mean square of int16 samples at the floor

    def is_speech(self, pcm: np.ndarray, rate: int) -> bool:
        x = pcm.astype(np.float64)
        if float(np.dot(x, x)) < self._floor * len(x):
            return False
        data = pcm.tobytes() if pcm.dtype == _NATIVE_LE else pcm.astype("<i2").tobytes()
        return bool(self._vad.is_speech(data, rate))


@dataclass
class DirectionState:
    talking: bool = False
    last_voiced: float = -1e9
    spurt_start: float = 0.0
    talk_seconds: float = 0.0
    spurts: int = 0


@dataclass
class VadSettings:
    hangover_s: float = 0.4
    onset_frames: int = 2
    silence_event_s: float = 5.0
    overtalk_min_s: float = 0.5


@dataclass
class CallVad:
    """Accumulates both directions of one call; ``step`` returns events as they happen."""

    settings: VadSettings = field(default_factory=VadSettings)
    dirs: dict[str, DirectionState] = field(
        default_factory=lambda: {"agent": DirectionState(), "customer": DirectionState()})
    _onset: dict[str, int] = field(default_factory=lambda: {"agent": 0, "customer": 0})
    silence_start: float = 0.0
    silence_reported: bool = False
    longest_silence: float = 0.0
    silence_seconds: float = 0.0
    overtalk_start: float | None = None
    overtalk_by: str = ""
    overtalk_reported: bool = False
    overtalk_seconds: float = 0.0
    interruptions: dict[str, int] = field(default_factory=lambda: {"agent": 0, "customer": 0})
    now: float = 0.0
    held: bool = False
    silent: bool = True  # nobody talking since silence_start

    def hold(self, held: bool) -> None:
        """A transfer puts the caller on hold: no silence events, and the hold is no silence of its own.

        A silence already running when the hold begins still counts, up to then.
        """
        if held and not self.held and self.silent:
            self._silence_ended(self.now)
        self.held = held

    def step(self, t: float, voiced: dict[str, bool]) -> list[Payload]:
        """Advance to media time ``t`` (start of this 20 ms frame) with each direction's decision."""
        s = self.settings
        events: list[Payload] = []
        for name, v in voiced.items():
            d = self.dirs[name]
            self._onset[name] = self._onset[name] + 1 if v else 0
            if v and (d.talking or self._onset[name] >= s.onset_frames):
                if not d.talking:
                    d.talking = True
                    d.spurts += 1
                    d.spurt_start = t - FRAME_S * (self._onset[name] - 1)
                    other = self.dirs["customer" if name == "agent" else "agent"]
                    if other.talking:
                        self.interruptions[name] += 1
                        self.overtalk_by = name
                d.last_voiced = t + FRAME_S
            elif d.talking and t + FRAME_S - d.last_voiced > s.hangover_s:
                d.talking = False
                d.talk_seconds += d.last_voiced - d.spurt_start
        anyone = any(d.talking for d in self.dirs.values())
        both = all(d.talking for d in self.dirs.values())
        end = t + FRAME_S
        if anyone:
            if self.silent:
                self._silence_ended(t)
                self.silent = False
            self.silence_start = max(d.last_voiced for d in self.dirs.values())
            self.silence_reported = False
        else:
            self.silent = True
            if self.held:  # the caller waits for a transfer: that is no silence of the conversation
                self.silence_start = end
            elif not self.silence_reported and end - self.silence_start >= s.silence_event_s:
                self.silence_reported = True
                events.append(CallAnalyticsSilence(started_at=round(self.silence_start, 2),
                                                   seconds=round(end - self.silence_start, 2)))
        if both:
            if self.overtalk_start is None:
                self.overtalk_start = t
                self.overtalk_reported = False
            elif not self.overtalk_reported and end - self.overtalk_start >= s.overtalk_min_s:
                self.overtalk_reported = True
                by = self.overtalk_by if self.overtalk_by in ("agent", "customer") else "customer"
                events.append(CallAnalyticsOvertalk(started_at=round(self.overtalk_start, 2),
                                                    seconds=round(end - self.overtalk_start, 2),
                                                    by=_direction(by)))
        elif self.overtalk_start is not None:
            self.overtalk_seconds += t - self.overtalk_start
            self.overtalk_start = None
        self.now = end
        return events

    def _silence_ended(self, t: float) -> None:
        gap = max(0.0, t - self.silence_start)
        self.longest_silence = max(self.longest_silence, gap)
        self.silence_seconds += gap

    def close(self) -> None:
        """Close open spurts and the trailing silence at the end of the call."""
        for d in self.dirs.values():
            if d.talking:
                d.talking = False
                d.talk_seconds += d.last_voiced - d.spurt_start
        if self.silent and not self.held:
            self._silence_ended(self.now)

    def summary(self) -> dict[str, float | int]:
        return {
            "agent_talk_s": round(self.dirs["agent"].talk_seconds, 3),
            "customer_talk_s": round(self.dirs["customer"].talk_seconds, 3),
            "overtalk_s": round(self.overtalk_seconds, 3),
            "silence_s": round(self.silence_seconds, 3),
            "longest_silence_s": round(self.longest_silence, 3),
            "agent_interruptions": self.interruptions["agent"],
            "customer_interruptions": self.interruptions["customer"],
        }


def _direction(name: str) -> Direction:
    if name == "agent":
        return "agent"
    if name == "customer":
        return "customer"
    return "mixed"


def analyse_two_channel(agent: np.ndarray, customer: np.ndarray, rate: int,
                        settings: VadSettings | None = None, mode: int = 2) -> tuple[CallVad, list[Payload]]:
    """Offline helper: run the live logic over two whole channels (tests, post-call)."""
    n = rate * 20 // 1000
    frames = min(len(agent), len(customer)) // n
    va, vc = FrameVad(mode), FrameVad(mode)
    call = CallVad(settings or VadSettings())
    events: list[Payload] = []
    for i in range(frames):
        sl = slice(i * n, (i + 1) * n)
        events += call.step(i * FRAME_S, {"agent": va.is_speech(agent[sl], rate),
                                          "customer": vc.is_speech(customer[sl], rate)})
    call.close()
    return call, events
