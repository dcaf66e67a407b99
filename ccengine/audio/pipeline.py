"""Receiver frames → VAD per stream → call-level talk/silence/overtalk + batched agitation.

One instance serves every tapped call of the process. Frames arrive in
batches (whatever each stream queued since the last tick); agitation runs
once per round over all streams at the same rate, which is what lets one core
carry hundreds of streams.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ccengine.core.events import Payload

from .agitation import AgitationBank, AgitationSettings
from .events import Direction
from .keywords import KeywordSpotter, Pcm
from .rtp import Frame
from .vad import FRAME_S, CallVad, FrameVad, VadSettings

Emit = Callable[[str, Payload, Frame], None]
LAG_FRAMES = 25  # 0.5 s: how long one direction may wait for the other's decision on a frame
# (call id, spotter, 16 kHz utterance, its start offset): decode it off the frame path
Utterance = Callable[[str, KeywordSpotter, Pcm, float], None]


@dataclass
class _Tap:
    call_id: str
    direction: Direction
    slot: int
    vad: FrameVad
    agitation: bool = True
    spotter: KeywordSpotter | None = None
    offset: int | None = 0  # added to the stream's frame index to get the call's; None: set at the next frame


@dataclass
class _Call:
    vad: CallVad
    directions: set[str]
    pending: dict[int, dict[str, bool]] = field(default_factory=dict)
    next_index: int = 0  # the next frame the call-level VAD steps
    newest: int = -1
    last: Frame | None = None
    holds: list[tuple[int, bool]] = field(default_factory=list)  # (frame index, held) not yet reached


class Pipeline:
    """Routes frames of registered streams to the per-call analysers; ``emit`` gets each event."""

    def __init__(self, emit: Emit, *, capacity: int = 1024, vad_mode: int = 2,
                 vad_settings: VadSettings | None = None, agitation: AgitationSettings | None = None,
                 agitation_directions: tuple[str, ...] = ("customer",), on_utterance: Utterance | None = None):
        self.emit = emit
        self.on_utterance = on_utterance
        self.vad_mode = vad_mode
        self.vad_settings = vad_settings or VadSettings()
        self.banks = {8000: AgitationBank(capacity, agitation), 16000: AgitationBank(capacity, agitation)}
        self.agitation_directions = agitation_directions
        self.taps: dict[str, _Tap] = {}
        self.calls: dict[str, _Call] = {}
        self._free = list(range(capacity - 1, -1, -1))
        self.frames = 0

    def add(self, stream: str, call_id: str, direction: Direction, *, agitation: bool = True,
            spotter: KeywordSpotter | None = None) -> None:
        """Register a stream; ``agitation`` scores it (if its direction is scored), ``spotter`` hears it."""
        slot = self._free.pop()
        for bank in self.banks.values():
            bank.reset(np.array([slot], dtype=np.intp))
        self.taps[stream] = _Tap(call_id, direction, slot, FrameVad(self.vad_mode), agitation, spotter)
        call = self.calls.setdefault(call_id, _Call(CallVad(self.vad_settings), set()))
        call.directions.add(direction)

    def restart(self, stream: str) -> bool:
        """The stream now carries another party (a transfer's new agent) and counts frames from 0 again.

        Its first frame is placed at the call's current time, so both
        directions stay on one clock; the voice detector and the agitation
        baseline start afresh for the new voice; an utterance in progress is
        handed over, and phrases already spotted still count for the call.
        False if the stream is not analysed (nothing to restart).
        """
        tap = self.taps.get(stream)
        if tap is None:
            return False
        tap.offset = None
        tap.vad = FrameVad(self.vad_mode)
        for bank in self.banks.values():
            bank.reset(np.array([tap.slot], dtype=np.intp))
        if tap.spotter is not None and self.on_utterance is not None:
            utterance = tap.spotter.close()
            if utterance is not None:
                self.on_utterance(tap.call_id, tap.spotter, *utterance)
        return True

    def hold(self, call_id: str, held: bool) -> None:
        """While a transfer has the caller waiting, a silence is not the conversation's (see CallVad).

        Takes effect from the newest frame received, which the call's VAD
        (waiting for every direction's decision) may reach only later.
        """
        call = self.calls.get(call_id)
        if call is not None:
            call.holds.append((max(call.newest + 1, call.next_index), held))

    def media_time(self, call_id: str) -> float:
        """Seconds of the call's audio analysed so far."""
        call = self.calls.get(call_id)
        return call.vad.now if call is not None else 0.0

    def remove_call(self, call_id: str) -> dict[str, float | int] | None:
        """Forget a call's streams (handing any open utterance over); returns its VAD summary."""
        for key in [k for k, t in self.taps.items() if t.call_id == call_id]:
            tap = self.taps.pop(key)
            self._free.append(tap.slot)
            if tap.spotter is not None and self.on_utterance is not None:
                utterance = tap.spotter.close()
                if utterance is not None:
                    self.on_utterance(call_id, tap.spotter, *utterance)
        call = self.calls.pop(call_id, None)
        if call is None:
            return None
        if call.last is not None:  # the frames still waiting for a silent direction's decision
            call.newest += LAG_FRAMES + 1
            self._advance(call_id, call, call.last)
        for _, held in call.holds:
            call.vad.hold(held)
        call.vad.close()
        return call.vad.summary()

    def process(self, frames: list[Frame]) -> None:
        rounds: dict[str, list[Frame]] = {}
        for f in frames:
            if f.stream in self.taps:
                rounds.setdefault(f.stream, []).append(f)
        depth = max((len(v) for v in rounds.values()), default=0)
        for r in range(depth):
            batch = [fs[r] for fs in rounds.values() if len(fs) > r]
            self._vad(batch)
            self._agitation(batch)
        self.frames += sum(len(v) for v in rounds.values())

    def _vad(self, batch: list[Frame]) -> None:
        for f in batch:
            tap = self.taps[f.stream]
            call = self.calls[tap.call_id]
            if tap.offset is None:
                tap.offset = max(call.newest + 1, call.next_index) - f.index
            index = f.index + tap.offset
            voiced = tap.vad.is_speech(f.pcm, f.rate)
            if tap.spotter is not None and self.on_utterance is not None:
                utterance = tap.spotter.push(index * FRAME_S, f.pcm, voiced)
                if utterance is not None:
                    self.on_utterance(tap.call_id, tap.spotter, *utterance)
            if index < call.next_index:
                continue  # this direction's frame came after the call's clock moved on without it
            call.pending.setdefault(index, {})[tap.direction] = voiced
            call.newest, call.last = max(call.newest, index), f
            self._advance(tap.call_id, call, f)

    def _advance(self, call_id: str, call: _Call, f: Frame) -> None:
        """Step the call's VAD in frame order, once every direction has decided that frame.

        A direction that sends nothing (a party on mute whose phone stops
        sending, frames dropped under overload) must not stall the other:
        a frame still undecided when the call is ``LAG_FRAMES`` ahead counts
        as silence for the directions that are missing.
        """
        while call.pending:
            i = call.next_index
            slot = call.pending.get(i)
            lagging = call.newest - i > LAG_FRAMES
            if slot is not None and (len(slot) == len(call.directions) or lagging):
                del call.pending[i]
                while call.holds and call.holds[0][0] <= i:
                    call.vad.hold(call.holds.pop(0)[1])
                decisions = {d: slot.get(d, False) for d in call.directions}
                for ev in call.vad.step(i * FRAME_S, decisions):
                    self.emit(call_id, ev, f)
            elif not lagging:
                break
            call.next_index += 1

    def _agitation(self, batch: list[Frame]) -> None:
        for rate, bank in self.banks.items():
            sel = [f for f in batch if f.rate == rate and self.taps[f.stream].agitation
                   and self.taps[f.stream].direction in self.agitation_directions]
            if not sel:
                continue
            slots = np.array([self.taps[f.stream].slot for f in sel], dtype=np.intp)
            bank.step(slots, np.stack([f.pcm for f in sel]), rate)
            for i in bank.above(slots):
                f = sel[i]
                tap = self.taps[f.stream]
                ev = bank.check(tap.slot, tap.direction)
                if ev is not None:
                    self.emit(tap.call_id, ev, f)
