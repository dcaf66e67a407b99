"""Stasis application ``inbound``: the customer journey from the carrier to an agent.

prompt → DTMF menu choosing a queue → ACD (skills routing, hold music,
announcements, overflow) → agent phone rung → caller and agent bridged and
recorded (MixMonitor) → hang-up → agent wrap-up.

Each call is a :class:`CallSession`: one task walks the journey; hang-ups,
DTMF and playback completions arrive from the engine's dispatcher. Whatever
happens (hang-up at any step, PBX link loss, engine restart) a call ends
exactly once, with a disposition, and its agent is released.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
import wave
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ccengine.acd.router import Reservation
from ccengine.acd.service import Acd
from ccengine.config import FlowSettings
from ccengine.core.bus import EventBus
from ccengine.core.events import (
    CallAgentNoAnswer,
    CallAgentOffered,
    CallAnnounced,
    CallAnswered,
    CallBridged,
    CallCallbackDialed,
    CallCallbackRequested,
    CallEnded,
    CallMenuSelected,
    CallOffered,
    CallQueued,
    CallRecordingStarted,
    CallRecordingStopped,
    Direction,
    Event,
    Payload,
)
from ccengine.pbx.protocol import (
    ChannelInfo,
    OriginateRequest,
    PbxAdapter,
    PbxError,
    PbxSnapshot,
    RecordingChanged,
)
from ccengine.store.schema import CallRow, LegRow, RecordingRow

log = logging.getLogger(__name__)

@dataclass
class CallSession:
    id: str
    customer: str  # channel id
    caller_number: str
    state: str = "ivr"  # ivr | queued | callback | ringing | connecting | talking | ended
    queue_id: str | None = None
    agent_id: str | None = None
    agent_channel: str | None = None
    bridge_id: str | None = None
    recording_id: str | None = None
    recording_path: str | None = None
    queued_mono: float | None = None
    answered_at: datetime | None = None
    task: asyncio.Task[None] | None = None
    digits: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    agent_answered: asyncio.Future[None] | None = None
    announcement: str | None = None  # playback id of a position announcement in progress
    callback: bool = False  # the caller hung up to be called back when an agent is free
    customer_answered: asyncio.Future[ChannelInfo] | None = None
    recording_stopped: asyncio.Event = field(default_factory=asyncio.Event)
    finished: bool = False


class InboundApp:
    def __init__(self, pbx: PbxAdapter, bus: EventBus, flow: FlowSettings, acd: Acd, *, agent_dial: str,
                 customer_dial: str, prompts: dict[str, str], recordings_dir: Path):
        self.pbx = pbx
        self.bus = bus
        self.flow = flow
        self.acd = acd
        acd.offer = self._on_offer
        acd.announce = self._on_announce
        self.agent_dial = agent_dial
        self.customer_dial = customer_dial
        self.prompts = prompts  # name → media URI: welcome, callback_offer, callback_thanks
        acd.offer_callback = self._on_offer_callback
        acd.expire = self._on_expire
        self.recordings_dir = recordings_dir
        self.sessions: dict[str, CallSession] = {}
        self.by_channel: dict[str, CallSession] = {}
        self.playbacks: dict[str, asyncio.Future[None]] = {}
        self.recording: dict[str, CallSession] = {}  # recorded channel → call, until the file is closed
        self._background: set[asyncio.Task[None]] = set()
        # Optional observers of the connected call (the engine's audio tap): (call, queue, agent, channels by
        # direction) once caller and agent are bridged, and the call id when it ends. Must not block.
        self.on_connected: Callable[[str, str | None, str | None, dict[Direction, str]], None] | None = None
        self.on_finished: Callable[[str], None] | None = None

    # -- events out ------------------------------------------------------------------------------
    def emit(self, payload: Payload, call: CallSession | None = None, agent_id: str | None = None) -> None:
        queue = call.queue_id if call is not None else None
        self.bus.publish(Event.of(payload, call_id=call.id if call else None,
                                  agent_id=agent_id or (call.agent_id if call else None), queue=queue))

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # -- events in -------------------------------------------------------------------------------
    def on_customer(self, channel: ChannelInfo) -> None:
        call = CallSession(id=str(uuid.uuid4()), customer=channel.id, caller_number=channel.caller_number)
        self.sessions[call.id] = call
        self.by_channel[channel.id] = call
        dialed = channel.app_args[1] if len(channel.app_args) > 1 else channel.dialed
        self.emit(CallOffered(caller_number=channel.caller_number, caller_name=channel.caller_name,
                              dialed=dialed, channel_id=channel.id), call)
        call.task = self._spawn(self._journey(call), f"call-{call.id}")

    def on_agent_answered(self, channel: ChannelInfo) -> None:
        call = self.by_channel.get(channel.id)
        if call is None or call.finished or call.agent_answered is None:
            self._spawn(self.pbx.hangup(channel.id), "hangup-orphan")
            return
        if not call.agent_answered.done():
            call.agent_answered.set_result(None)

    def on_callback_answered(self, channel: ChannelInfo) -> None:
        """The customer we called back picked up (their leg entered the application)."""
        call = self.by_channel.get(channel.id)
        if call is None or call.finished or call.customer_answered is None:
            self._spawn(self.pbx.hangup(channel.id), "hangup-orphan")
            return
        if not call.customer_answered.done():
            call.customer_answered.set_result(channel)

    def on_dtmf(self, channel_id: str, digit: str) -> None:
        call = self.by_channel.get(channel_id)
        if call is not None and channel_id == call.customer and call.state in ("ivr", "queued"):
            call.digits.put_nowait(digit)

    def on_playback_finished(self, playback_id: str) -> None:
        future = self.playbacks.pop(playback_id, None)
        if future is not None and not future.done():
            future.set_result(None)

    def on_recording(self, event: RecordingChanged) -> None:
        call = self.recording.get(event.channel_id)
        if call is not None and event.state == "stopped":
            call.recording_stopped.set()

    def on_hangup(self, channel_id: str, cause: str) -> None:
        call = self.by_channel.pop(channel_id, None)
        if call is None or call.finished:
            return
        if channel_id == call.customer:
            if call.callback and call.state in ("callback", "ringing"):
                return  # we released the caller's line ourselves; the place in the queue is kept
            self._spawn(self.finish(call, "customer", cause), f"finish-{call.id}")
        elif channel_id == call.agent_channel:
            if call.state in ("connecting", "talking"):
                self._spawn(self.finish(call, "agent", cause), f"finish-{call.id}")
            elif call.agent_answered is not None and not call.agent_answered.done():
                call.agent_answered.set_exception(PbxError(cause or "agent leg ended"))

    # -- the journey -----------------------------------------------------------------------------
    async def _journey(self, call: CallSession) -> None:
        try:
            await self.pbx.answer(call.customer)
            digit, attempts = await self._menu(call)
            self.emit(CallMenuSelected(digit=digit, attempts=attempts, fallback=digit == ""), call)
            await self._enqueue(call, self.flow.menu.get(digit, self.flow.default_queue))
        except PbxError as exc:
            log.info("call %s: PBX request failed in IVR (%s)", call.id, exc)
            await self.finish(call, "system", str(exc))

    async def _menu(self, call: CallSession) -> tuple[str, int]:
        """Play the prompt (barge-in allowed) and wait for a valid digit; fall back after the retries."""
        for attempt in range(1, self.flow.menu_attempts + 1):
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            playback_id = str(uuid.uuid4())
            self.playbacks[playback_id] = done
            await self.pbx.play(call.customer, self.prompts["welcome"], playback_id)
            digit_task: asyncio.Future[str] = asyncio.ensure_future(call.digits.get())
            waiters: list[asyncio.Future[object]] = [digit_task, done]  # type: ignore[list-item]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if not digit_task.done():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(digit_task), self.flow.menu_timeout)
            self.playbacks.pop(playback_id, None)
            if digit_task.done():
                digit = digit_task.result()
                if not done.done():
                    await self.pbx.stop_playback(playback_id)
                if digit in self.flow.menu:
                    return digit, attempt
            else:
                digit_task.cancel()
        return "", self.flow.menu_attempts

    def _moh_class(self, queue_id: str) -> str:
        queue = self.acd.config.queues.get(queue_id)
        return queue.music_on_hold if queue else "default"

    async def _enqueue(self, call: CallSession, queue_id: str) -> None:
        """Hand the call to the ACD; it may reserve an agent at once (``_on_offer``)."""
        if not self.acd.is_open(queue_id, datetime.now(UTC)):
            await self._apologise_and_end(call, "closed", f"queue {queue_id} is closed")
            return
        call.state, call.queue_id = "queued", queue_id
        if call.queued_mono is None:
            call.queued_mono = time.monotonic()
        await self.pbx.start_moh(call.customer, self._moh_class(queue_id))
        if call.finished:
            return
        self.acd.enqueue(call.id, queue_id, caller=call.caller_number,
                         entered=lambda position: self.emit(CallQueued(queue=queue_id, position=position), call))

    def _on_expire(self, call_id: str) -> None:
        call = self.sessions.get(call_id)
        if call is not None and call.state == "queued":
            self._spawn(self._apologise_and_end(call, "max_wait", "maximum wait reached"), f"expire-{call_id}")

    async def _apologise_and_end(self, call: CallSession, prompt: str, cause: str) -> None:
        """Closed queue or wait too long: tell the caller, then end the call from our side."""
        with contextlib.suppress(PbxError, asyncio.TimeoutError):
            if call.state == "queued":
                await self.pbx.stop_moh(call.customer)
            await self._play_and_wait(call, self.prompts[prompt])
        await self.finish(call, "system", cause, disposition="closed" if prompt == "closed" else "timed_out")

    def _on_offer(self, reservation: Reservation) -> None:
        call = self.sessions.get(reservation.contact_id)
        if call is None or call.finished:
            self.acd.abandon(reservation.contact_id)
            return
        call.state, call.queue_id = "ringing", reservation.queue_id
        self._spawn(self._connect(call, reservation), f"connect-{call.id}")

    def _on_announce(self, call_id: str, position: int, estimated_wait: float | None) -> None:
        call = self.sessions.get(call_id)
        if call is not None and call.state == "queued" and call.announcement is None:
            self._spawn(self._announce(call, position, estimated_wait), f"announce-{call_id}")

    async def _announce(self, call: CallSession, position: int, estimated_wait: float | None) -> None:
        """Tell a waiting caller their position (and wait), then resume the queue's hold music."""
        queue = self.acd.config.queues.get(call.queue_id or "")
        media = []
        if queue is None or queue.announcements.position:
            media += ["sound:queue-thereare", f"number:{position}", "sound:queue-callswaiting"]
        if estimated_wait is not None and queue is not None and queue.announcements.estimated_wait:
            minutes = max(1, round(estimated_wait / 60))
            media += ["sound:queue-holdtime", f"number:{minutes}", "sound:queue-minutes"]
        if not media:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        call.announcement = str(uuid.uuid4())
        self.playbacks[call.announcement] = done
        try:
            await self.pbx.stop_moh(call.customer)
            await self.pbx.play(call.customer, ",".join(media), call.announcement)
            self.emit(CallAnnounced(position=position, estimated_wait_seconds=estimated_wait), call)
            await asyncio.wait_for(done, 30)
            if call.state == "queued" and call.queue_id:
                await self.pbx.start_moh(call.customer, self._moh_class(call.queue_id))
        except (TimeoutError, PbxError) as exc:
            log.debug("call %s: announcement cut short (%s)", call.id, exc)
        finally:
            self.playbacks.pop(call.announcement, None)
            call.announcement = None

    def _on_offer_callback(self, call_id: str) -> None:
        call = self.sessions.get(call_id)
        if call is not None and call.state == "queued":
            self._spawn(self._offer_callback(call), f"callback-offer-{call_id}")

    async def _play_and_wait(self, call: CallSession, media: str, limit: float = 30.0) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        playback_id = str(uuid.uuid4())
        self.playbacks[playback_id] = done
        try:
            await self.pbx.play(call.customer, media, playback_id)
            await asyncio.wait_for(done, limit)
        finally:
            self.playbacks.pop(playback_id, None)

    async def _offer_callback(self, call: CallSession) -> None:
        """Offer to keep the caller's place and call back; pressing 1 accepts."""
        while not call.digits.empty():
            call.digits.get_nowait()
        try:
            await self.pbx.stop_moh(call.customer)
            await self._play_and_wait(call, self.prompts["callback_offer"])
            digit = await asyncio.wait_for(call.digits.get(), self.flow.menu_timeout)
        except TimeoutError:
            digit = ""
        except PbxError:
            return
        if call.state != "queued":
            return  # an agent became free meanwhile
        if digit != "1":
            with contextlib.suppress(PbxError):
                await self.pbx.start_moh(call.customer, self._moh_class(call.queue_id or ""))
            return
        call.callback, call.state = True, "callback"
        self.acd.keep_place_for_callback(call.id)
        self.emit(CallCallbackRequested(queue=call.queue_id or "", position=self.acd.position(call.id)), call)
        with contextlib.suppress(PbxError, asyncio.TimeoutError):
            await self._play_and_wait(call, self.prompts["callback_thanks"])
        if call.state == "callback":
            with contextlib.suppress(PbxError):
                await self.pbx.hangup(call.customer)

    async def _call_back(self, call: CallSession, reservation: Reservation) -> None:
        """The agent is on the line: now call the customer and join them."""
        assert call.agent_channel is not None
        call.state = "connecting"
        self.acd.answered(reservation)
        call.bridge_id = await self.pbx.create_bridge()
        await self.pbx.add_to_bridge(call.bridge_id, [call.agent_channel])
        channel_id = str(uuid.uuid4())
        call.customer_answered = asyncio.get_running_loop().create_future()
        self.by_channel.pop(call.customer, None)
        call.customer = channel_id
        self.by_channel[channel_id] = call
        self.emit(CallCallbackDialed(channel_id=channel_id), call)
        try:
            await self.pbx.originate(OriginateRequest(
                endpoint=self.customer_dial.format(number=call.caller_number), app_args=("callback", call.id),
                timeout=self.flow.callback_ring_timeout, channel_id=channel_id))
            await asyncio.wait_for(call.customer_answered, self.flow.callback_ring_timeout + 5)
        except (TimeoutError, PbxError) as exc:
            await self.finish(call, "system", f"callback not answered ({exc or 'timeout'})")
            return
        await self.pbx.add_to_bridge(call.bridge_id, [channel_id])
        call.state = "talking"
        call.answered_at = datetime.now(UTC)
        assert call.queued_mono is not None
        self.emit(CallAnswered(queue=reservation.queue_id, agent_id=reservation.agent_id,
                               wait_seconds=round(time.monotonic() - call.queued_mono, 3)), call)
        self.emit(CallBridged(bridge_id=call.bridge_id, agent_channel_id=call.agent_channel), call)
        self._connected(call)
        await self._record(call)

    async def _connect(self, call: CallSession, reservation: Reservation) -> None:
        agent_id = reservation.agent_id
        channel_id = str(uuid.uuid4())
        call.agent_id, call.agent_channel = agent_id, channel_id
        call.agent_answered = asyncio.get_running_loop().create_future()
        self.by_channel[channel_id] = call
        self.emit(CallAgentOffered(queue=reservation.queue_id, agent_id=agent_id, channel_id=channel_id), call)
        self.acd.ringing(reservation)
        try:
            await self.pbx.originate(OriginateRequest(
                endpoint=self.agent_dial.format(agent=agent_id), app_args=("agent", call.id),
                caller_id=call.caller_number, timeout=self.flow.ring_timeout, channel_id=channel_id))
            await asyncio.wait_for(call.agent_answered, self.flow.ring_timeout + 5)
        except (TimeoutError, PbxError) as exc:
            await self._agent_missed(call, reservation, str(exc) or "no answer")
            return
        if call.finished:
            await self.pbx.hangup(channel_id)
            return
        try:
            await (self._call_back if call.callback else self._bridge)(call, reservation)
        except PbxError as exc:
            await asyncio.sleep(0.5)  # a hang-up racing the bridge arrives as an event: let it decide
            if not call.finished:
                log.warning("call %s: bridging failed (%s)", call.id, exc)
                await self.finish(call, "system", str(exc))

    async def _agent_missed(self, call: CallSession, reservation: Reservation, cause: str) -> None:
        """Ring-no-answer: the ACD pauses the agent and puts the call back at its original place."""
        self.by_channel.pop(call.agent_channel or "", None)
        if call.agent_channel:
            await self.pbx.hangup(call.agent_channel)
        self.emit(CallAgentNoAnswer(agent_id=reservation.agent_id, cause=cause[:120]), call)
        call.agent_id = call.agent_channel = None
        call.agent_answered = None
        if call.finished:
            return
        call.state = "callback" if call.callback else "queued"
        self.acd.missed(reservation)
        if call.state in ("queued", "callback"):
            self.emit(CallQueued(queue=call.queue_id or reservation.queue_id,
                                 position=self.acd.position(call.id)), call)

    async def _bridge(self, call: CallSession, reservation: Reservation) -> None:
        """Connect caller and agent; the call counts as answered once they can hear each other."""
        assert call.agent_channel is not None and call.queued_mono is not None
        call.state = "connecting"
        self.acd.answered(reservation)
        if call.announcement:
            await self.pbx.stop_playback(call.announcement)
        with contextlib.suppress(PbxError):
            await self.pbx.stop_moh(call.customer)
        call.bridge_id = await self.pbx.create_bridge()
        await self.pbx.add_to_bridge(call.bridge_id, [call.customer, call.agent_channel])
        if call.finished:
            return
        call.state = "talking"
        call.answered_at = datetime.now(UTC)
        self.emit(CallAnswered(queue=reservation.queue_id, agent_id=reservation.agent_id,
                               wait_seconds=round(time.monotonic() - call.queued_mono, 3)), call)
        self.emit(CallBridged(bridge_id=call.bridge_id, agent_channel_id=call.agent_channel), call)
        self._connected(call)
        await self._record(call)

    def _connected(self, call: CallSession) -> None:
        if self.on_connected is not None and call.agent_channel:
            self.on_connected(call.id, call.queue_id, call.agent_id,
                              {"customer": call.customer, "agent": call.agent_channel})

    async def _record(self, call: CallSession) -> None:
        day = datetime.now(UTC).strftime("%Y/%m/%d")
        path = self.recordings_dir / day / f"{call.id}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        call.recording_id, call.recording_path = str(uuid.uuid4()), str(path)
        self.recording[call.customer] = call
        await self.pbx.start_recording(call.customer, str(path))
        self.emit(CallRecordingStarted(recording_id=call.recording_id, path=str(path)), call)

    # -- the end ---------------------------------------------------------------------------------
    async def finish(self, call: CallSession, ended_by: str, cause: str, disposition: str | None = None) -> None:
        """End ``call`` once: release the other leg, the bridge and the agent; record the outcome."""
        if call.finished:
            return
        call.finished = True
        state, call.state = call.state, "ended"
        if call.task is not None and call.task is not asyncio.current_task():
            call.task.cancel()
        if call.agent_answered is not None and not call.agent_answered.done():
            call.agent_answered.cancel()
        talk = (datetime.now(UTC) - call.answered_at).total_seconds() if call.answered_at else None
        if state in ("connecting", "talking") and call.agent_id:
            self.acd.finished(call.agent_id, call.id, talk)
        elif state != "ivr":
            self.acd.abandon(call.id)
        for channel in (call.customer, call.agent_channel):
            if channel:
                self.by_channel.pop(channel, None)
                with contextlib.suppress(PbxError):
                    await self.pbx.hangup(channel)
        if call.bridge_id:
            with contextlib.suppress(PbxError):
                await self.pbx.destroy_bridge(call.bridge_id)
        if disposition is None:
            disposition = {"talking": "completed", "ivr": "ivr_hangup"}.get(state, "abandoned")
            if (ended_by == "pbx" and state != "talking") or (ended_by == "agent" and state == "connecting"):
                disposition = "failed"
        self.emit(CallEnded(disposition=disposition, ended_by=ended_by, cause=cause[:120],
                            talk_seconds=round(talk, 3) if talk is not None else None), call)
        if self.on_finished is not None:
            self.on_finished(call.id)
        if call.recording_id:
            await self._close_recording(call)
        self.sessions.pop(call.id, None)

    async def _close_recording(self, call: CallSession) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(call.recording_stopped.wait(), 3.0)
        self.recording.pop(call.customer, None)
        duration, size = await asyncio.to_thread(wav_stats, Path(call.recording_path or ""))
        assert call.recording_id is not None
        self.emit(CallRecordingStopped(recording_id=call.recording_id, duration_seconds=duration,
                                       size_bytes=size), call)

    # -- reconciliation --------------------------------------------------------------------------
    async def reconcile(self, snapshot: PbxSnapshot,
                        stored: list[tuple[CallRow, list[LegRow], RecordingRow | None]]) -> tuple[int, int]:
        """Align with the PBX after a (re)connect. Returns (calls recovered, calls closed)."""
        live = {c.id: c for c in snapshot.channels}
        bridges = {b.id: b for b in snapshot.bridges}
        closed = 0
        for call in list(self.sessions.values()):
            if call.customer not in live:
                await self.finish(call, "pbx", "channel lost while the PBX link was down")
                closed += 1
        recovered = 0
        known = {ch for call in self.sessions.values() for ch in (call.customer, call.agent_channel) if ch}
        for row, legs, recording in stored:
            if row.id in self.sessions:
                continue
            customer = next((leg for leg in legs if leg.role == "customer"), None)
            agent_leg = next((leg for leg in reversed(legs) if leg.role == "agent" and leg.ended_at is None), None)
            if customer is None or customer.channel_id not in live:
                self._close_stored(row)
                closed += 1
                continue
            call = CallSession(id=row.id, customer=customer.channel_id, caller_number=row.caller_number,
                               queued_mono=time.monotonic())
            self.sessions[call.id] = call
            self.by_channel[call.customer] = call
            known.add(call.customer)
            bridge = next((b for b in bridges.values() if customer.channel_id in b.channel_ids), None)
            if (row.state == "talking" and agent_leg is not None and agent_leg.channel_id in live
                    and bridge is not None and agent_leg.channel_id in bridge.channel_ids):
                call.state, call.agent_id, call.agent_channel = "talking", agent_leg.agent_id, agent_leg.channel_id
                call.bridge_id = bridge.id
                call.answered_at = row.answered_at.replace(tzinfo=UTC) if row.answered_at else None
                if recording is not None:
                    call.recording_id, call.recording_path = recording.id, recording.path
                    self.recording[call.customer] = call
                self.by_channel[agent_leg.channel_id] = call
                known.add(agent_leg.channel_id)
                call.queue_id = row.queue
                if agent_leg.agent_id:
                    self.acd.occupied(agent_leg.agent_id, call.id)
                await self.pbx.watch([call.customer, agent_leg.channel_id], [bridge.id])
            else:
                await self.pbx.watch([call.customer], [])
                call.answered_at = None
                self._spawn(self._enqueue(call, row.queue or self.flow.default_queue), f"requeue-{call.id}")
            recovered += 1
        for channel_id in live:
            if channel_id not in known:
                log.info("hanging up orphan channel %s found at resync", channel_id)
                with contextlib.suppress(PbxError):
                    await self.pbx.hangup(channel_id)
        return recovered, closed

    def _close_stored(self, row: CallRow) -> None:
        """A call the store thought open but the PBX no longer has: it ended while we were away."""
        disposition = {"talking": "completed", "ivr": "ivr_hangup"}.get(row.state, "abandoned")
        self.bus.publish(Event.of(
            CallEnded(disposition=disposition, ended_by="pbx",
                      cause="ended while the engine was not connected"),
            call_id=row.id, agent_id=row.agent_id, queue=row.queue))


def wav_stats(path: Path) -> tuple[float | None, int | None]:
    """Duration and size of a finished recording (None if it does not exist or is unreadable)."""
    try:
        size = path.stat().st_size
        with wave.open(str(path), "rb") as wav:
            return wav.getnframes() / float(wav.getframerate()), size
    except (OSError, wave.Error, EOFError):
        return None, None
