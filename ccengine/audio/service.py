"""Live call audio analytics: taps each bridged call, analyses it off the event loop, publishes events.

One receiver socket serves every tap of the process. Analysis runs on one
worker thread and speech recognition on another, so neither can delay call
control on the event loop; while they are busy the receiver keeps reading and
a stream whose backlog is full drops frames and counts them. The call, its
bridge and its recording are never touched: a tap only adds its own snoop
and externalMedia channels, and a tap that fails to start is logged, not fatal.
Per-call results are stored as a ``call.analytics.summary`` event when the
tap stops (the events log is the store of record).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ccengine.core.events import CallAnalyticsCardNumberSpoken, CallAnalyticsSummary, Event, Payload
from ccengine.pbx.protocol import PbxAdapter

from .config import AnalyticsConfig, QueueAnalytics
from .events import Direction
from .keywords import AsrBackend, DisclosureTracker, KeywordSpotter, Pcm, ProcessBackend
from .pipeline import Pipeline
from .rtp import Frame, RtpReceiver, codec_rate, open_receiver
from .tap import CallTap

log = logging.getLogger(__name__)

MAX_ASR_BACKLOG = 64  # utterances; beyond this they are skipped and counted, not queued without bound
_DEADLINE_GRACE_S = 1.0  # lets an utterance spoken just before a disclosure deadline close and be decoded


@dataclass
class _Call:
    call_id: str
    queue: str | None
    agent_id: str | None
    plan: QueueAnalytics
    tap: CallTap
    spotters: list[KeywordSpotter] = field(default_factory=list)
    tracker: DisclosureTracker | None = None
    directions: list[Direction] = field(default_factory=list)
    deadline_checked: float = 0.0
    started: asyncio.Task[None] | None = None
    clock_zero: datetime | None = None  # wall time of media time 0 (the taps' first audio)
    stopping: bool = False
    utterances_skipped: int = 0  # not recognised because the recogniser was too far behind


class AudioAnalytics:
    """The engine's audio tap: ``call_connected`` / ``call_ended`` are its only inputs from the call flow."""

    def __init__(self, config: AnalyticsConfig, pbx: PbxAdapter, publish: Callable[[Event], None], *,
                 capacity: int = 1024, backend: AsrBackend | None = None):
        self.config = config
        self.pbx = pbx
        self.publish = publish
        self.pipeline = Pipeline(self._emit_from_analysis, capacity=capacity, vad_mode=config.vad.mode,
                                 vad_settings=config.vad.settings(), agitation=config.agitation.settings(),
                                 on_utterance=self._utterance)
        self.receiver: RtpReceiver | None = None
        self.backend = backend
        self._own_backend: ProcessBackend | None = None
        self.calls: dict[str, _Call] = {}
        self._channels: dict[str, str] = {}  # tap channel id -> call id
        self._analysis = ThreadPoolExecutor(1, thread_name_prefix="audio-analysis")
        self._asr = ThreadPoolExecutor(1, thread_name_prefix="audio-asr")
        self._asr_lock = threading.Lock()
        self._asr_backlog = 0  # utterances queued for recognition, all calls together
        self._loop: asyncio.AbstractEventLoop | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.on_card_spoken: Callable[[str, datetime, datetime], None] | None = None  # (call, window start, end)

    def _needs_asr(self) -> bool:
        plans = [self.config.default, *self.config.queues.values()]
        return any({"keywords", "cards"} & set(p.analysers) for p in plans)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.backend is None and self._needs_asr():
            asr = self.config.asr
            backend = self._own_backend = ProcessBackend(asr.backend, str(asr.model_dir) if asr.model_dir else None)
            # loads the model in the child and learns every phrase's pronunciation before the first call
            for phrase in self.config.phrases.values():
                await self._loop.run_in_executor(self._asr, backend.pronounce, phrase.text)
            self.backend = backend
        self.receiver = await open_receiver(self.config.receiver_host, self.config.receiver_port,
                                            queue_size=self.config.queue_frames,
                                            jitter_window=self.config.jitter_packets)
        self._consumer = asyncio.create_task(
            self.receiver.consume(self._round, max_per_stream=self.config.queue_frames), name="audio-consumer")
        log.info("audio analytics receiving on %s:%d", self.config.receiver_host, self.receiver.port())

    async def stop(self) -> None:
        for call_id in list(self.calls):
            await self._stop(call_id)
        if self._consumer is not None:
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)
        if self.receiver is not None:
            self.receiver.close()
        self._analysis.shutdown(wait=True)
        self._asr.shutdown(wait=True)
        if self._own_backend is not None:
            self._own_backend.close()

    # -- the call flow's hooks ------------------------------------------------------------------
    def owns(self, channel_id: str) -> bool:
        """True for the tap's own snoop/externalMedia channels (the call flow must ignore them)."""
        return channel_id in self._channels

    def call_connected(self, call_id: str, queue: str | None, agent_id: str | None,
                       channels: dict[Direction, str]) -> None:
        """Caller and agent are bridged: tap each direction (in the background; the call goes on).

        A call tapped already was transferred: the tap follows it to the new
        party's leg, on the same timeline and with the analysers its first
        queue chose.
        """
        if self.receiver is None:
            return
        if call_id in self.calls:
            call = self.calls[call_id]
            if not call.stopping:
                call.queue, call.agent_id = queue, agent_id
                call.started = self._spawn(self._follow(call, call.started, channels), f"retap-{call_id}")
            return
        plan = self.config.for_queue(queue)
        if not plan.analysers:
            return
        host = f"{self.config.advertised_host or self.config.receiver_host}:{self.receiver.port()}"
        tap = CallTap(self.pbx, self.receiver, host, call_id, codec=self.config.codec,
                      claim=lambda channel_id: self._channels.__setitem__(channel_id, call_id))
        call = _Call(call_id, queue, agent_id, plan, tap)
        self.calls[call_id] = call
        call.started = self._spawn(self._start(call, channels), f"tap-{call_id}")

    def call_transferred(self, call_id: str) -> None:
        """A blind transfer released the agent's leg: untap it; the caller waits, which is no silence."""
        call = self.calls.get(call_id)
        if call is not None and not call.stopping:
            call.agent_id = None
            call.started = self._spawn(self._release(call, call.started), f"untap-agent-{call_id}")

    def call_ended(self, call_id: str) -> None:
        if call_id in self.calls:
            self._spawn(self._stop(call_id), f"untap-{call_id}")

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- tap lifecycle --------------------------------------------------------------------------
    def _spotter(self, call: _Call, direction: Direction) -> KeywordSpotter | None:
        plan, config = call.plan, self.config
        phrases = [config.phrases[name].phrase() for name in plan.phrases
                   if "keywords" in plan.analysers and config.phrases[name].speaker in (direction, "any")]
        cards = "cards" in plan.analysers and direction == "customer"
        if self.backend is None or not (phrases or cards):
            return None
        return KeywordSpotter(self.backend, phrases, direction, rate=codec_rate(config.codec),
                              detect_cards=cards, card_last4=config.asr.card_last4)

    async def _start(self, call: _Call, channels: dict[Direction, str]) -> None:
        assert self._loop is not None
        plan = call.plan
        if "keywords" in plan.analysers:
            required = {self.config.phrases[n].text: self.config.phrases[n].deadline_s
                        for n in plan.phrases if self.config.phrases[n].kind == "disclosure"}
            call.tracker = DisclosureTracker(required) if required else None
        try:
            for direction in channels:
                spotter = self._spotter(call, direction)
                if spotter is not None:
                    call.spotters.append(spotter)
                add = functools.partial(self.pipeline.add, f"{call.call_id}:{direction}", call.call_id, direction,
                                        agitation="agitation" in plan.analysers, spotter=spotter)
                await self._loop.run_in_executor(self._analysis, add)
        except IndexError:
            log.warning("tap %s: analyser capacity reached, call not analysed", call.call_id)
            return
        legs = await call.tap.start(channels)
        call.clock_zero = datetime.now(UTC)  # the PBX sends a tap's first audio as soon as it is bridged
        call.directions = [leg.direction for leg in legs]
        log.info("call %s tapped: %s", call.call_id, ", ".join(call.directions) or "no leg")

    @staticmethod
    async def _after(previous: asyncio.Task[None] | None) -> None:
        """Changes to one call's tap happen in the order the call flow asked for them."""
        if previous is not None:
            await asyncio.gather(asyncio.shield(previous), return_exceptions=True)

    async def _release(self, call: _Call, previous: asyncio.Task[None] | None) -> None:
        assert self._loop is not None
        await self._after(previous)
        await call.tap.stop_direction("agent")
        await self._loop.run_in_executor(self._analysis, self.pipeline.hold, call.call_id, True)

    async def _follow(self, call: _Call, previous: asyncio.Task[None] | None,
                      channels: dict[Direction, str]) -> None:
        """Tap each direction whose party changed, as the same stream continuing on the call's clock."""
        assert self._loop is not None
        await self._after(previous)
        tapped = {leg.direction: leg.channel_id for leg in call.tap.legs}
        for direction, channel_id in channels.items():
            if tapped.get(direction) == channel_id:
                continue
            await call.tap.stop_direction(direction)
            restart = functools.partial(self.pipeline.restart, f"{call.call_id}:{direction}")
            if await self._loop.run_in_executor(self._analysis, restart):
                await call.tap.start({direction: channel_id})
        await self._loop.run_in_executor(self._analysis, self.pipeline.hold, call.call_id, False)
        call.directions = sorted({*call.directions, *(leg.direction for leg in call.tap.legs)})
        log.info("call %s tapped again after a transfer: %s", call.call_id,
                 ", ".join(leg.direction for leg in call.tap.legs) or "no leg")

    async def _stop(self, call_id: str) -> None:
        call = self.calls.get(call_id)
        if call is None or call.stopping:
            return
        call.stopping = True
        assert self._loop is not None
        if call.started is not None:
            try:
                await asyncio.wait_for(asyncio.shield(call.started), 10)
            except Exception as exc:  # a tap that never started still gets its summary
                log.warning("tap %s: start did not complete: %s", call_id, exc)
        stats = await call.tap.stop()
        seconds, summary = await self._loop.run_in_executor(self._analysis, self._remove, call_id)
        missing: list[str] = []
        if call.tracker is not None:
            tracker = call.tracker
            # after every utterance of the call has been decoded (the ASR worker runs jobs in order)
            events = await self._loop.run_in_executor(self._asr, self._final_check, call, tracker, seconds)
            for ev in events:
                self._publish(call, ev)
            missing = sorted(tracker.flagged)
        if summary is not None:
            self._publish(call, CallAnalyticsSummary(
                analysers=list(call.plan.analysers), directions=call.directions,
                seconds=round(seconds, 2), agent_talk_s=float(summary["agent_talk_s"]),
                customer_talk_s=float(summary["customer_talk_s"]), overtalk_s=float(summary["overtalk_s"]),
                longest_silence_s=float(summary["longest_silence_s"]),
                agent_interruptions=int(summary["agent_interruptions"]),
                customer_interruptions=int(summary["customer_interruptions"]),
                frames=sum(s.frames for s in stats), dropped_frames=sum(s.dropped_frames for s in stats),
                concealed_packets=sum(s.concealed_packets for s in stats), disclosures_missing=missing,
                utterances_skipped=call.utterances_skipped, silence_s=float(summary["silence_s"])))
        for channel_id in [c for c, owner in self._channels.items() if owner == call_id]:
            del self._channels[channel_id]
        self.calls.pop(call_id, None)

    def _remove(self, call_id: str) -> tuple[float, dict[str, float | int] | None]:
        seconds = self.pipeline.media_time(call_id)
        return seconds, self.pipeline.remove_call(call_id)

    def _final_check(self, call: _Call, tracker: DisclosureTracker, seconds: float) -> list[Payload]:
        return tracker.check(seconds, self._spotted(call), ended=True)

    @staticmethod
    def _spotted(call: _Call) -> set[str]:
        return set().union(*(s.spotted for s in call.spotters)) if call.spotters else set()

    # -- analysis (worker threads) --------------------------------------------------------------
    async def _round(self, frames: list[Frame]) -> None:
        assert self._loop is not None
        await self._loop.run_in_executor(self._analysis, self._process, frames)

    def _process(self, frames: list[Frame]) -> None:
        self.pipeline.process(frames)
        for call in list(self.calls.values()):
            if call.tracker is None or call.stopping:
                continue
            now = self.pipeline.media_time(call.call_id) - _DEADLINE_GRACE_S
            if now - call.deadline_checked >= 1.0:
                call.deadline_checked = now
                self._asr.submit(self._check_deadlines, call, now)
        drill = self.config.overload_drill_s
        if drill:
            per_stream: dict[str, int] = {}
            for f in frames:
                per_stream[f.stream] = per_stream.get(f.stream, 0) + 1
            time.sleep(drill * max(per_stream.values(), default=0))

    def _check_deadlines(self, call: _Call, now: float) -> None:
        assert call.tracker is not None
        for ev in call.tracker.check(now, self._spotted(call)):
            self._from_thread(call.call_id, ev)

    def _utterance(self, call_id: str, spotter: KeywordSpotter, pcm16k: Pcm, start: float) -> None:
        """Queue an utterance for recognition, unless the recogniser is too far behind (then count it)."""
        call = self.calls.get(call_id)
        with self._asr_lock:
            if self._asr_backlog >= MAX_ASR_BACKLOG:
                if call is not None:
                    call.utterances_skipped += 1
                return
            self._asr_backlog += 1
        self._asr.submit(self._decode, call_id, spotter, pcm16k, start)

    def _decode(self, call_id: str, spotter: KeywordSpotter, pcm16k: Pcm, start: float) -> None:
        try:
            events = spotter.analyse(pcm16k, start)
        except Exception:
            log.exception("call %s: speech recognition failed", call_id)
            return
        finally:
            with self._asr_lock:
                self._asr_backlog -= 1
        for ev in events:
            self._from_thread(call_id, ev)

    def _emit_from_analysis(self, call_id: str, payload: Payload, _frame: Frame) -> None:
        self._from_thread(call_id, payload)

    def _from_thread(self, call_id: str, payload: Payload) -> None:
        assert self._loop is not None
        call = self.calls.get(call_id)
        if call is not None:
            self._loop.call_soon_threadsafe(self._publish, call, payload)

    def _publish(self, call: _Call, payload: Payload) -> None:
        if isinstance(payload, CallAnalyticsCardNumberSpoken) and call.clock_zero is not None:
            started = call.clock_zero + timedelta(seconds=payload.at)
            ended = call.clock_zero + timedelta(seconds=payload.ends_at)
            payload = payload.model_copy(update={"window_started_at": started, "window_ended_at": ended})
            if self.on_card_spoken is not None:  # the recording's PCI mask silences it
                self.on_card_spoken(call.call_id, started, ended)
        self.publish(Event.of(payload, call_id=call.call_id, agent_id=call.agent_id, queue=call.queue))
