"""Stasis application ``inbound``: the customer journey from the carrier to an agent.

IVR tree (``ari_apps/ivr.py``: self-service, or a queue with skills, priority and
intent) → ACD (skills routing, hold music, announcements, overflow) → agent phone
rung → caller and agent bridged and recorded (MixMonitor), with card payments keyed
by the caller on the agent's request (``ari_apps/payment.py``) → hang-up → agent wrap-up.
An agent on a persistent line (``ari_apps/lines.py``) is not rung: the line already
open to their phone is moved into the caller's bridge, and back to its holding
bridge after the call.

Each call is a :class:`CallSession`: one task walks the journey; hang-ups,
DTMF and playback completions arrive from the engine's dispatcher. Whatever
happens (hang-up at any step, PBX link loss, engine restart) a call ends
exactly once, with a disposition, and its agent is released.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
import wave
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ccengine.acd.callbacks import PendingCallback
from ccengine.acd.definitions import Customer
from ccengine.acd.router import Reservation, RoutingError
from ccengine.acd.service import Acd, MessageReason
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
    CallOffered,
    CallQueued,
    CallRecordingSealed,
    CallRecordingStarted,
    CallRecordingStopped,
    CallTransferAnswered,
    CallTransferFailed,
    CallTransferred,
    CallVoicemailLeft,
    Direction,
    Event,
    Payload,
    RecordingFailed,
    RecordingResumed,
    RecordingTamperAttempt,
    TransferKind,
)
from ccengine.ivr.connectors import Directory, NoDirectory
from ccengine.ivr.interpreter import Callback, Hangup, Route, Terminal, Transfer, Voicemail, Walk, lookup
from ccengine.ivr.pci import SPOKEN_CARD_REASON, SecureWindow, mask_windows
from ccengine.ivr.prompts import PromptCache
from ccengine.ivr.registry import TreeRegistry
from ccengine.payment.connector import LabConnector, PaymentConnector
from ccengine.payment.settings import PaymentSettings
from ccengine.pbx.protocol import (
    ChannelInfo,
    OriginateRequest,
    PbxAdapter,
    PbxError,
    PbxSnapshot,
    RecordingChanged,
)
from ccengine.recording.capture import CallRecorder, DirectoryProbe, TamperAction
from ccengine.recording.pcimask import mask_wav
from ccengine.recording.retention import RetentionConfig, retain_until
from ccengine.recording.vault import ManifestFields, Vault
from ccengine.store.schema import CallRow, LegRow, RecordingRow

from .ivr import IvrDriver
from .lines import ROLE as LINE_ROLE
from .lines import AgentLines
from .payment import PaymentSession, SecurePayments

log = logging.getLogger(__name__)

StoredCall = tuple[CallRow, list[LegRow], RecordingRow | None, list[SecureWindow], Mapping[str, Any] | None]
"""An open call as the store knows it: row, legs, latest recording, its secure-input windows, and the
``call.payment_started`` data of a capture that never ended (the engine stopped during it)."""


@dataclass
class VoiceMessage:
    """A message being left: where it is recorded and since when (None: not recording yet)."""

    reason: MessageReason
    mailbox: str  # the queue's id, or the IVR ending's mailbox
    path: Path
    started_mono: float | None = None


@dataclass
class CallSession:
    id: str
    customer: str  # channel id
    caller_number: str
    state: str = "ivr"  # ivr | closed | voicemail | queued | callback | ringing | connecting | talking | ended
    queue_id: str | None = None
    agent_id: str | None = None
    agent_channel: str | None = None
    line: bool = False  # the agent channel is the agent's persistent line (not hung up at the end)
    bridge_id: str | None = None
    recording_id: str | None = None
    recorder: CallRecorder | None = None
    queued_mono: float | None = None
    message: VoiceMessage | None = None
    recording_held_since: float | None = None  # fail-closed hold: the parties are apart, on music
    recording_busy: bool = False  # a failure or a resume is being handled
    answered_at: datetime | None = None
    agent_connected_at: datetime | None = None  # the current agent's part (a transfer starts a new one)
    task: asyncio.Task[None] | None = None
    digits: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    digits_since: datetime | None = None  # when the oldest digit still in ``digits`` (or before it) arrived
    agent_answered: asyncio.Future[None] | None = None
    announcement: str | None = None  # playback id of a position announcement in progress
    callback: bool = False  # the caller hung up to be called back when an agent is free
    scheduled: str | None = None  # id of the closed-hours callback this call attempts, until its outcome
    customer_answered: asyncio.Future[ChannelInfo] | None = None
    finished: bool = False
    walk: Walk | None = None  # the IVR walk, on the tree version the caller started on
    ivr: dict[str, Any] | None = None  # what the IVR learned (never secure input)
    intent: str | None = None
    swallow: str = ""  # a terminator still to come after a full-length entry
    secure_windows: list[SecureWindow] = field(default_factory=list)  # IVR secure input, card capture: masked
    transfer_answered: asyncio.Future[None] | None = None
    # how the IVR asked to route the call, kept for a transfer to another queue or agent
    skills: Mapping[str, int] = field(default_factory=dict)
    priority: int = 0
    language: str | None = None

    payment: PaymentSession | None = None  # a card capture in progress: the caller is away from the agent


class TransferRefused(Exception):
    """A transfer cannot be done now; ``status`` is how an API answers it."""

    def __init__(self, reason: str, status: int = 409):
        super().__init__(reason)
        self.reason = reason
        self.status = status


class InboundApp:
    def __init__(self, pbx: PbxAdapter, bus: EventBus, flow: FlowSettings, acd: Acd, *, agent_dial: str,
                 customer_dial: str, prompts: dict[str, str], recordings_dir: Path, vault: Vault | None = None,
                 retention: RetentionConfig | None = None,
                 ivr: TreeRegistry | None = None, directory: Directory | None = None,
                 prompt_cache: PromptCache | None = None, voicemail_dir: Path | None = None,
                 line_hold_music: str | None = None, line_release_key: str = "#",
                 payment: PaymentSettings | None = None, payment_connector: PaymentConnector | None = None):
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
        acd.take_message = self._on_take_message
        acd.dial_callback = self._dial_scheduled_callback
        self.recordings_dir = recordings_dir
        self.vault = vault
        self.retention = retention
        self._sealing = asyncio.Lock()
        self.probe = DirectoryProbe()
        self.sessions: dict[str, CallSession] = {}
        self.by_channel: dict[str, CallSession] = {}
        self.playbacks: dict[str, asyncio.Future[None]] = {}
        self.recording: dict[str, CallSession] = {}  # recorded channel → call, until the file is closed
        self._background: set[asyncio.Task[None]] = set()
        self.voicemail_dir = voicemail_dir or recordings_dir.parent / "voicemail"
        self.lines = AgentLines(pbx, acd, self.spawn, agent_dial=agent_dial, ring_timeout=flow.ring_timeout,
                                hold_music=line_hold_music)
        self.line_release_key = line_release_key
        self.payments = SecurePayments(self, payment or PaymentSettings(), payment_connector or LabConnector())
        self.ivr = IvrDriver(self, ivr or TreeRegistry(None, flow, lambda: acd.config.queues),
                             directory or NoDirectory(), prompt_cache or PromptCache(recordings_dir.parent / "sounds",
                                                                                     {}))
        # Optional observers of the connected call (the engine's audio tap): (call, queue, agent, channels by
        # direction) once caller and agent are bridged, and the call id when it ends. Must not block.
        self.on_connected: Callable[[str, str | None, str | None, dict[Direction, str]], None] | None = None
        self.on_finished: Callable[[str], None] | None = None
        # Waits until every event published so far is stored (the engine's store writer): a caller
        # is told "we will call you back" only once an engine restart would still keep the promise.
        self.stored: Callable[[], Awaitable[None]] | None = None
        self.on_transferred: Callable[[str], None] | None = None  # the agent's leg was released; on_connected follows

    # -- events out ------------------------------------------------------------------------------
    def emit(self, payload: Payload, call: CallSession | None = None, agent_id: str | None = None) -> None:
        queue = call.queue_id if call is not None else None
        self.bus.publish(Event.of(payload, call_id=call.id if call else None,
                                  agent_id=agent_id or (call.agent_id if call else None), queue=queue))

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
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
        call.task = self.spawn(self._journey(call), f"call-{call.id}")

    def on_agent_answered(self, channel: ChannelInfo) -> None:
        call = self.by_channel.get(channel.id)
        if call is None or call.finished or call.agent_answered is None:
            self.spawn(self.pbx.hangup(channel.id), "hangup-orphan")
            return
        if not call.agent_answered.done():
            call.agent_answered.set_result(None)

    def on_callback_answered(self, channel: ChannelInfo) -> None:
        """The customer we called back picked up (their leg entered the application)."""
        call = self.by_channel.get(channel.id)
        if call is None or call.finished or call.customer_answered is None:
            self.spawn(self.pbx.hangup(channel.id), "hangup-orphan")
            return
        if not call.customer_answered.done():
            call.customer_answered.set_result(channel)

    def mask_spoken_card(self, call_id: str, started: datetime, ended: datetime) -> None:
        """The audio tap heard a card number spoken: the recording is silenced over it when it is sealed."""
        call = self.sessions.get(call_id)
        if call is not None and call.recording_id is not None:
            call.secure_windows.append(SecureWindow(SPOKEN_CARD_REASON, started, ended))

    def on_transfer_answered(self, channel: ChannelInfo) -> None:
        """The transfer target picked up."""
        call = self.by_channel.get(channel.id)
        if call is None or call.finished or call.transfer_answered is None:
            self.spawn(self.pbx.hangup(channel.id), "hangup-orphan")
            return
        if not call.transfer_answered.done():
            call.transfer_answered.set_result(None)

    def on_dtmf(self, channel_id: str, digit: str) -> None:
        call = self.by_channel.get(channel_id)
        if call is None:
            return
        if channel_id == call.agent_channel:
            if call.line and call.state == "talking" and digit == self.line_release_key:
                self.spawn(self.finish(call, "agent", "released by the agent"), f"finish-{call.id}")
            return
        if channel_id != call.customer or self.payments.on_digit(call, digit):
            return  # a card digit goes to the capture alone
        if call.state == "closed" and digit == "1" and not call.callback:
            # accepted here, not in the journey task: a hang-up right after the key must not lose it
            call.callback = True
            self.acd.schedule_callback(call.id, call.queue_id or "", call.caller_number)
        if call.state in ("ivr", "closed", "queued", "voicemail"):
            if call.digits.empty():
                call.digits_since = datetime.now(UTC)
            call.digits.put_nowait(digit)

    def on_playback_finished(self, playback_id: str) -> None:
        future = self.playbacks.pop(playback_id, None)
        if future is not None and not future.done():
            future.set_result(None)

    def on_recording(self, event: RecordingChanged) -> None:
        call = self.recording.get(event.channel_id)
        if call is not None and call.recorder is not None:
            call.recorder.on_change(event.state, event.received_at)

    def on_hangup(self, channel_id: str, cause: str) -> None:
        self.lines.lost(channel_id)  # a persistent line: its agent is not ready any more
        call = self.by_channel.pop(channel_id, None)
        if call is None or call.finished:
            return
        if channel_id == call.customer:
            if call.callback and call.state in ("callback", "ringing"):
                return  # we released the caller's line ourselves; the place in the queue is kept
            self.spawn(self.finish(call, "customer", cause), f"finish-{call.id}")
        elif channel_id == call.agent_channel:
            if call.transfer_answered is not None and not call.transfer_answered.done():
                call.transfer_answered.set_exception(PbxError(cause or "transfer target did not answer"))
            elif call.state in ("connecting", "talking"):
                self.spawn(self.finish(call, "agent", cause), f"finish-{call.id}")
            elif call.agent_answered is not None and not call.agent_answered.done():
                call.agent_answered.set_exception(PbxError(cause or "agent leg ended"))

    # -- the journey -----------------------------------------------------------------------------
    async def _journey(self, call: CallSession) -> None:
        try:
            await self.pbx.answer(call.customer)
            if self.ivr.registry.tree.record:
                await self._record(call)
            end = await self.ivr.run(call)
            await self._after_ivr(call, end)
        except PbxError as exc:
            log.info("call %s: PBX request failed in IVR (%s)", call.id, exc)
            await self.finish(call, "system", str(exc))
        except Exception as exc:  # a bug must not leave the caller in limbo
            log.error("call %s: IVR failed: %s", call.id, type(exc).__name__)
            await self.finish(call, "system", f"IVR error {type(exc).__name__}")

    async def _after_ivr(self, call: CallSession, end: Terminal) -> None:
        """Carry out the tree's last word: a queue, a callback, voicemail, a transfer or goodbye."""
        await self.ivr.play(call, await self.ivr.prompts.resolve(end.media))
        if isinstance(end, Route):
            await self._enqueue(call, end.queue, skills=end.skills, priority=end.priority, language=end.language)
        elif isinstance(end, Callback):
            await self._enqueue(call, end.queue, language=end.language)
            if call.state == "queued":
                await self._accept_callback(call, thanks=False)
        elif isinstance(end, Voicemail):  # the tree's own prompt was just played
            await self._take_message(call, "ivr", mailbox=end.mailbox, limit=end.max_seconds, prompt=None)
        elif isinstance(end, Transfer):
            await self._transfer(call, end)
        elif isinstance(end, Hangup):
            await self.finish(call, "system", end.reason or "IVR finished",
                              disposition="self_served" if end.served else "ivr_hangup")

    async def _transfer(self, call: CallSession, end: Transfer) -> None:
        """Blind transfer: ring the number, join the caller to it, and let the engine step out."""
        channel_id = str(uuid.uuid4())
        call.agent_channel = channel_id
        call.transfer_answered = asyncio.get_running_loop().create_future()
        self.by_channel[channel_id] = call
        try:
            await self.pbx.originate(OriginateRequest(
                endpoint=self.customer_dial.format(number=end.number), app_args=("transfer", call.id),
                caller_id=call.caller_number, timeout=end.timeout, channel_id=channel_id))
            await asyncio.wait_for(call.transfer_answered, end.timeout + 5)
        except (TimeoutError, PbxError) as exc:
            await self.finish(call, "system", f"transfer failed ({exc or 'no answer'})")
            return
        call.bridge_id = await self.pbx.create_bridge()
        await self.pbx.add_to_bridge(call.bridge_id, [call.customer, channel_id])
        call.state = "talking"
        call.answered_at = datetime.now(UTC)

    def moh_class(self, queue_id: str) -> str:
        queue = self.acd.config.queues.get(queue_id)
        return queue.music_on_hold if queue else "default"

    async def _enqueue(self, call: CallSession, queue_id: str, *, skills: Mapping[str, int] | None = None,
                       priority: int = 0, language: str | None = None, affinity: bool = True) -> None:
        """Hand the call to the ACD with what the IVR decided; it may reserve an agent at once.
        Without ``affinity`` (a transfer) the caller's last agent is not preferred."""
        if not self.acd.is_open(queue_id, datetime.now(UTC)):
            queue = self.acd.config.queues.get(queue_id)
            if queue is not None and queue.when_closed == "voicemail":
                call.queue_id = queue_id
                await self._take_message(call, "closed", mailbox=queue_id, limit=queue.voicemail_max)
            elif queue is not None and queue.when_closed == "callback" and call.caller_number:
                await self._offer_closed_callback(call, queue_id)  # (a withheld number gets the apology)
            else:
                await self._apologise_and_end(call, "closed", f"queue {queue_id} is closed")
            return
        call.state, call.queue_id = "queued", queue_id
        call.skills, call.priority, call.language = dict(skills or {}), priority, language
        if call.queued_mono is None:
            call.queued_mono = time.monotonic()
        await self.pbx.start_moh(call.customer, self.moh_class(queue_id))
        if call.finished:
            return
        self.acd.enqueue(call.id, queue_id, self._customer(call), caller=call.caller_number if affinity else "",
                         entered=lambda position: self.emit(CallQueued(queue=queue_id, position=position), call),
                         extra_skills=skills, priority_boost=priority)

    @staticmethod
    def _customer(call: CallSession) -> Customer:
        learned = call.ivr or {}
        return Customer(segment=_str(learned.get("segment")),
                        language=call.language or _str(learned.get("language")), risk=_str(learned.get("risk")))

    # -- blind transfer of a connected call (REST) -----------------------------------------------
    def transfer_refusal(self, call_id: str, kind: TransferKind, target: str) -> TransferRefused | None:
        """Why ``call_id`` cannot be transferred to ``target`` now (None: it can)."""
        call = self.sessions.get(call_id)
        if call is None or call.finished:
            return TransferRefused(f"no live call {call_id}", 404)
        if call.state != "talking" or call.agent_id is None or call.bridge_id is None:
            return TransferRefused(f"call {call_id} is not connected to an agent ({call.state})")
        if call.recording_held_since is not None or call.recording_busy:
            return TransferRefused(f"call {call_id} is on hold while its recording fails: it cannot move now")
        if call.payment is not None:
            return TransferRefused(f"call {call_id}: the caller is keying a card payment; transfer once it ends")
        if kind == "queue":
            if target not in self.acd.config.queues:
                return TransferRefused(f"unknown queue {target}", 422)
            if not self.acd.is_open(target, datetime.now(UTC)):
                return TransferRefused(f"queue {target} is closed")
        elif kind == "agent":
            if target not in self.acd.agents:
                return TransferRefused(f"unknown agent {target}", 422)
            if target == call.agent_id:
                return TransferRefused(f"the call is already with agent {target}")
            refusal = self.acd.direct_refusal(target, call.queue_id or self.flow.default_queue, self._customer(call),
                                              extra_skills=call.skills, priority_boost=call.priority)
            if refusal is not None:
                return TransferRefused(refusal)
        return None

    async def transfer(self, call_id: str, kind: TransferKind, target: str, *, requested_by: str,
                       approval_id: str | None = None) -> None:
        """Blind transfer: the agent's leg is released to wrap-up at once and the caller, on hold
        music and still recorded (the recording follows the caller's channel), goes to a queue
        (keeping the IVR's skills and priority), to a named agent (reserved through the ACD like
        any offer), or to an outside number (rung through the trunk, like an IVR transfer).
        Raises ``TransferRefused`` before anything changed."""
        refusal = self.transfer_refusal(call_id, kind, target)
        if refusal is not None:
            raise refusal
        call = self.sessions[call_id]
        assert call.agent_id is not None and call.agent_channel is not None and call.bridge_id is not None
        agent_id, agent_channel, bridge_id, on_line = call.agent_id, call.agent_channel, call.bridge_id, call.line
        now = datetime.now(UTC)
        since = call.agent_connected_at or call.answered_at
        self.by_channel.pop(agent_channel, None)  # its hang-up is ours, not the end of the call
        call.state, call.agent_id, call.agent_channel, call.bridge_id = "transferring", None, None, None
        call.agent_answered = call.agent_connected_at = None
        call.line = False
        call.callback = False  # a called-back caller is on the line now: the next agent is bridged to them
        self.acd.finished(agent_id, call.id, (now - since).total_seconds() if since else None)
        self.emit(CallTransferred(kind=kind, target=target, from_agent_id=agent_id, from_channel_id=agent_channel,
                                  requested_by=requested_by, approval_id=approval_id), call, agent_id=agent_id)
        if self.on_transferred is not None:
            self.on_transferred(call.id)
        with contextlib.suppress(PbxError):
            if on_line:
                await self.lines.hold(agent_channel)  # a persistent line goes back on hold, not hung up
            else:
                await self.pbx.hangup(agent_channel)
        with contextlib.suppress(PbxError):
            await self.pbx.destroy_bridge(bridge_id)
        if call.finished:
            return
        call.queued_mono = time.monotonic()
        queue_id = call.queue_id or self.flow.default_queue
        if kind == "queue":
            await self._enqueue(call, target, skills=call.skills, priority=call.priority, language=call.language,
                                affinity=False)
        elif kind == "agent":
            await self._direct(call, queue_id, target)
        else:
            await self.pbx.start_moh(call.customer, self.moh_class(queue_id))
            call.task = self.spawn(self._transfer_out(call, target, queue_id), f"transfer-{call.id}")

    async def _direct(self, call: CallSession, queue_id: str, agent_id: str) -> None:
        await self.pbx.start_moh(call.customer, self.moh_class(queue_id))
        if call.finished:
            return
        try:
            self.acd.direct(call.id, queue_id, agent_id, self._customer(call), extra_skills=call.skills,
                            priority_boost=call.priority)
        except RoutingError as exc:  # taken while the first agent's leg was being released
            await self._transfer_failed(call, "agent", agent_id, str(exc), queue_id)

    async def _transfer_out(self, call: CallSession, number: str, queue_id: str) -> None:
        channel_id = str(uuid.uuid4())
        call.agent_channel = channel_id
        call.transfer_answered = asyncio.get_running_loop().create_future()
        self.by_channel[channel_id] = call
        ring = self.flow.callback_ring_timeout
        try:
            await self.pbx.originate(OriginateRequest(
                endpoint=self.customer_dial.format(number=number), app_args=("transfer", call.id),
                caller_id=call.caller_number, timeout=ring, channel_id=channel_id))
            await asyncio.wait_for(call.transfer_answered, ring + 5)
            await self.pbx.stop_moh(call.customer)
            call.bridge_id = await self.pbx.create_bridge()
            await self.pbx.add_to_bridge(call.bridge_id, [call.customer, channel_id])
        except (TimeoutError, PbxError) as exc:
            if call.finished:
                return
            self.by_channel.pop(channel_id, None)
            with contextlib.suppress(PbxError):
                await self.pbx.hangup(channel_id)
            call.agent_channel = call.transfer_answered = None
            await self._transfer_failed(call, "number", number, str(exc) or "no answer", queue_id)
            return
        call.state = "talking"
        self.emit(CallTransferAnswered(number=number, channel_id=channel_id, bridge_id=call.bridge_id), call)
        self._connected(call)

    async def _transfer_failed(self, call: CallSession, kind: TransferKind, target: str, reason: str,
                               queue_id: str) -> None:
        """The target cannot be reached: the caller is not dropped but queued where they came from."""
        self.emit(CallTransferFailed(kind=kind, target=target, reason=reason[:200], fallback_queue=queue_id), call)
        await self._enqueue(call, queue_id, skills=call.skills, priority=call.priority, language=call.language,
                            affinity=False)

    def _on_expire(self, call_id: str) -> None:
        call = self.sessions.get(call_id)
        if call is not None and call.state == "queued":
            self.spawn(self._apologise_and_end(call, "max_wait", "maximum wait reached"), f"expire-{call_id}")

    def _on_take_message(self, call_id: str, reason: MessageReason) -> None:
        call = self.sessions.get(call_id)
        if call is not None and call.state == "queued":  # the journey task is over: this one takes its place
            queue = self.acd.config.queues.get(call.queue_id or "")
            limit = float(queue.voicemail_max) if queue is not None else 120.0
            call.task = self.spawn(self._take_message(call, reason, mailbox=call.queue_id or "general",
                                                       limit=limit), f"voicemail-{call_id}")

    async def _take_message(self, call: CallSession, reason: MessageReason, *, mailbox: str, limit: float,
                            prompt: str | None = "voicemail") -> None:
        """Voicemail, from a queue (overflow, maximum wait, closed hours) or an IVR
        ending: the caller leaves the queue, hears the prompt and a tone, and is
        recorded until they press # or hang up (or ``limit`` seconds pass)."""
        if call.state == "queued":
            self.acd.abandon(call.id)
            with contextlib.suppress(PbxError):
                await self.pbx.stop_moh(call.customer)
        call.state = "voicemail"
        day = datetime.now(UTC).strftime("%Y/%m/%d")
        call.message = VoiceMessage(reason, mailbox, self.voicemail_dir / mailbox / day / f"{call.id}.wav")
        call.message.path.parent.mkdir(parents=True, exist_ok=True)
        while not call.digits.empty():
            call.digits.get_nowait()
        try:
            media = "sound:beep" if prompt is None else f"{self.prompts[prompt]},sound:beep"
            await self._play_and_wait(call, media)
            if call.finished:
                return
            await self.pbx.start_recording(call.customer, str(call.message.path))
            call.message.started_mono = time.monotonic()
            with contextlib.suppress(asyncio.TimeoutError):
                async with asyncio.timeout(limit):
                    while await call.digits.get() != "#":
                        pass
        except (TimeoutError, PbxError) as exc:
            log.info("call %s: voicemail cut short (%s)", call.id, exc)
        if not call.finished:
            await self.finish(call, "system", f"voicemail ({reason})", disposition="voicemail")

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
        self.spawn(self._connect(call, reservation), f"connect-{call.id}")

    def _on_announce(self, call_id: str, position: int, estimated_wait: float | None) -> None:
        call = self.sessions.get(call_id)
        if call is not None and call.state == "queued" and call.announcement is None:
            self.spawn(self._announce(call, position, estimated_wait), f"announce-{call_id}")

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
                await self.pbx.start_moh(call.customer, self.moh_class(call.queue_id))
        except (TimeoutError, PbxError) as exc:
            log.debug("call %s: announcement cut short (%s)", call.id, exc)
        finally:
            self.playbacks.pop(call.announcement, None)
            call.announcement = None

    def _on_offer_callback(self, call_id: str) -> None:
        call = self.sessions.get(call_id)
        if call is not None and call.state == "queued":
            self.spawn(self._offer_callback(call), f"callback-offer-{call_id}")

    async def play_and_wait(self, call: CallSession, media: str, limit: float = 30.0) -> None:
        await self._play_and_wait(call, media, limit)

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
                await self.pbx.start_moh(call.customer, self.moh_class(call.queue_id or ""))
            return
        await self._accept_callback(call)

    async def _offer_closed_callback(self, call: CallSession, queue_id: str) -> None:
        """The queue is closed: say so and offer a callback once it opens; pressing 1 accepts
        (see ``on_dtmf``)."""
        call.state, call.queue_id = "closed", queue_id
        while not call.digits.empty():
            call.digits.get_nowait()
        with contextlib.suppress(PbxError, asyncio.TimeoutError):
            await self._play_and_wait(call, self.prompts["closed_callback_offer"])
            if not call.callback:
                await asyncio.wait_for(call.digits.get(), self.flow.menu_timeout)
        if call.finished:
            return
        if call.callback:
            await self._promise_stored(call)
            with contextlib.suppress(PbxError, asyncio.TimeoutError):
                await self._play_and_wait(call, self.prompts["closed_callback_thanks"])
        cause = f"queue {queue_id} is closed" + ("; callback scheduled" if call.callback else "")
        await self.finish(call, "system", cause, disposition="closed")

    def _dial_scheduled_callback(self, callback: PendingCallback, call_id: str) -> None:
        """An attempt at a closed-hours callback: a new call that waits in the queue like the
        in-queue callbacks (the agent first, then the customer on the planned leg)."""
        call = CallSession(id=call_id, customer=str(uuid.uuid4()), caller_number=callback.number, state="callback",
                           queue_id=callback.queue_id, queued_mono=time.monotonic(), callback=True,
                           scheduled=callback.id)
        self.sessions[call.id] = call
        self.emit(CallOffered(caller_number=callback.number, dialed=f"callback:{callback.queue_id}",
                              channel_id=call.customer), call)
        self.acd.enqueue(call.id, callback.queue_id, caller=callback.number,
                         entered=lambda position: self.emit(CallQueued(queue=callback.queue_id, position=position),
                                                            call))
        self.acd.keep_place_for_callback(call.id)

    def _callback_outcome(self, call: CallSession, connected: bool) -> None:
        if call.scheduled is not None:
            callback_id, call.scheduled = call.scheduled, None
            self.acd.callback_attempt_over(callback_id, connected)

    async def _accept_callback(self, call: CallSession, thanks: bool = True) -> None:
        call.callback, call.state = True, "callback"
        self.acd.keep_place_for_callback(call.id)
        self.emit(CallCallbackRequested(queue=call.queue_id or "", position=self.acd.position(call.id)), call)
        await self._promise_stored(call)
        if thanks:
            with contextlib.suppress(PbxError, asyncio.TimeoutError):
                await self._play_and_wait(call, self.prompts["callback_thanks"])
        else:
            with contextlib.suppress(PbxError):
                await self.pbx.stop_moh(call.customer)
        if call.state == "callback":
            with contextlib.suppress(PbxError):
                await self.pbx.hangup(call.customer)

    async def _promise_stored(self, call: CallSession) -> None:
        if self.stored is not None:
            try:
                await self.stored()
            except TimeoutError:
                log.error("call %s: callback promise not confirmed stored; the caller is told anyway", call.id)

    async def _call_back(self, call: CallSession, reservation: Reservation) -> None:
        """The agent is on the line: now call the customer and join them."""
        assert call.agent_channel is not None
        call.state = "connecting"
        self.acd.answered(reservation)
        call.bridge_id = await self.pbx.create_bridge()
        await self.pbx.add_to_bridge(call.bridge_id, [call.agent_channel])
        channel_id = call.customer if call.scheduled else str(uuid.uuid4())  # a scheduled one has its leg planned
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
        call.answered_at = call.agent_connected_at = datetime.now(UTC)
        self._callback_outcome(call, connected=True)
        assert call.queued_mono is not None
        self.emit(CallAnswered(queue=reservation.queue_id, agent_id=reservation.agent_id,
                               wait_seconds=round(time.monotonic() - call.queued_mono, 3)), call)
        self.emit(CallBridged(bridge_id=call.bridge_id, agent_channel_id=call.agent_channel), call)
        self._connected(call)
        await self._record(call)

    async def _connect(self, call: CallSession, reservation: Reservation) -> None:
        agent_id = reservation.agent_id
        line = self.lines.take(agent_id, call.id)
        if line is not None:
            await self._deliver_on_line(call, reservation, line)
            return
        channel_id = str(uuid.uuid4())
        call.agent_id, call.agent_channel = agent_id, channel_id
        call.agent_answered = asyncio.get_running_loop().create_future()
        self.by_channel[channel_id] = call
        self.emit(CallAgentOffered(queue=reservation.queue_id, agent_id=agent_id, channel_id=channel_id,
                                   intent=call.intent, ivr=call.ivr), call)
        self.acd.ringing(reservation)
        try:
            await self.pbx.originate(OriginateRequest(
                endpoint=self.agent_dial.format(agent=agent_id), app_args=("agent", call.id),
                caller_id=call.caller_number, timeout=self.flow.ring_timeout, channel_id=channel_id,
                variables=self._screen_variables(call)))
            await asyncio.wait_for(call.agent_answered, self.flow.ring_timeout + 5)
        except (TimeoutError, PbxError) as exc:
            await self._agent_missed(call, reservation, str(exc) or "no answer")
            return
        if call.finished:
            await self.pbx.hangup(channel_id)
            return
        await self._put_through(call, reservation)

    async def _deliver_on_line(self, call: CallSession, reservation: Reservation, line: str) -> None:
        """The agent's phone is already connected: no ringing, the line joins the caller's bridge."""
        call.agent_id, call.agent_channel, call.line = reservation.agent_id, line, True
        self.by_channel[line] = call
        self.emit(CallAgentOffered(queue=reservation.queue_id, agent_id=reservation.agent_id, channel_id=line,
                                   intent=call.intent, ivr=call.ivr, line=True), call)
        self.acd.ringing(reservation)
        await self._put_through(call, reservation)

    async def _put_through(self, call: CallSession, reservation: Reservation) -> None:
        """Join caller and agent (or, for a callback, call the customer); a PBX failure ends the call."""
        try:
            await (self._call_back if call.callback else self._bridge)(call, reservation)
        except PbxError as exc:
            await asyncio.sleep(0.5)  # a hang-up racing the bridge arrives as an event: let it decide
            if not call.finished:
                log.warning("call %s: putting the call through failed (%s)", call.id, exc)
                await self.finish(call, "system", str(exc))

    @staticmethod
    def _screen_variables(call: CallSession) -> dict[str, str]:
        """What the IVR learned, on the agent's leg for desktop integrations (ARI channel variables)."""
        learned = call.ivr or {}
        out = {"CCENGINE_CALL_ID": call.id}
        if call.intent:
            out["CCENGINE_INTENT"] = call.intent
        customer = lookup(learned, "customer.id")
        if customer:
            out["CCENGINE_CUSTOMER_ID"] = str(customer)
        if learned.get("authenticated"):
            out["CCENGINE_AUTHENTICATED"] = "1"
        return out

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
        call.bridge_id = str(uuid.uuid4())
        # hold music off and the bridge made at once: one wait for the PBX, not two
        moh, made = await asyncio.gather(self.pbx.stop_moh(call.customer), self.pbx.create_bridge(call.bridge_id),
                                         return_exceptions=True)
        for outcome in (made, moh):
            if isinstance(outcome, BaseException) and not (outcome is moh and isinstance(outcome, PbxError)):
                raise outcome
        await self.pbx.add_to_bridge(call.bridge_id, [call.customer, call.agent_channel])
        if call.line:
            self.lines.zip_tone(call.agent_channel)
        if call.finished:
            return
        call.state = "talking"
        call.agent_connected_at = datetime.now(UTC)
        call.answered_at = call.answered_at or call.agent_connected_at  # a transferred call was answered before
        self.emit(CallAnswered(queue=reservation.queue_id, agent_id=reservation.agent_id,
                               wait_seconds=round(time.monotonic() - call.queued_mono, 3)), call)
        self.emit(CallBridged(bridge_id=call.bridge_id, agent_channel_id=call.agent_channel), call)
        self._connected(call)
        if call.recorder is None:  # after a transfer the caller's recording is still running
            await self._record(call)

    def _connected(self, call: CallSession) -> None:
        if self.on_connected is not None and call.agent_channel:
            self.on_connected(call.id, call.queue_id, call.agent_id,
                              {"customer": call.customer, "agent": call.agent_channel})

    async def _record(self, call: CallSession) -> None:
        """Forced recording to the hang-up, from the bridge, or from answer where the IVR tree says
        ``record: true``; only the engine can stop it.

        A call recorded from answer keeps *one* recording: IVR, queue and conversation on one
        timeline, one manifest, one retention decision. That is what a compliance officer asks for
        ("the recording of call X") and it keeps positions in the audio true to the call's events;
        the IVR's secure-input windows become the manifest's mask windows (silence in the stored
        audio). Reaching the agent then changes nothing; a callback continues it on the new
        customer channel as a segment, the wait in between kept as silence.
        """
        if call.recorder is not None:
            if call.recorder.channel_id != call.customer:
                self.recording[call.customer] = call
                await call.recorder.follow(call.customer, "callback")
            return
        day = datetime.now(UTC).strftime("%Y/%m/%d")
        path = self.recordings_dir / day / f"{call.id}.wav"
        call.recording_id = str(uuid.uuid4())
        call.recorder = CallRecorder(self.pbx, call.customer, path,
                                     on_tamper=functools.partial(self._on_tamper, call))
        self.recording[call.customer] = call
        await call.recorder.start()
        self.emit(CallRecordingStarted(recording_id=call.recording_id, path=str(path)), call)

    def check_recordings(self) -> None:
        """Recording watchdog, once a second: a connected call is never left talking
        unrecorded. On failure its queue's policy ends it or holds it; a held call
        resumes when recording works again."""
        for call in list(self.sessions.values()):
            if (call.state != "talking" or call.recorder is None or call.recording_busy or call.finished
                    or call.payment is not None):  # the caller is away in a bounded card capture
                continue
            held = call.recording_held_since is not None
            # held: capture is stalled on purpose, so only the folder decides
            problem = self.probe.check(call.recorder.path.parent) if held else call.recorder.failure(self.probe)
            if not held and problem is not None:
                call.recording_busy = True
                self.spawn(self._recording_failed(call, problem), f"recording-failed-{call.id}")
            elif held and problem is None:
                call.recording_busy = True
                self.spawn(self._recording_resume(call), f"recording-resume-{call.id}")

    async def _recording_failed(self, call: CallSession, problem: str) -> None:
        queue = self.acd.config.queues.get(call.queue_id or "")
        policy = queue.recording_failure if queue is not None else "end"
        log.error("call %s: recording failed (%s); policy %s", call.id, problem, policy)
        assert call.recording_id is not None and call.bridge_id is not None and call.agent_channel is not None
        self.emit(RecordingFailed(recording_id=call.recording_id, reason=problem[:200], policy=policy), call)
        try:
            if policy == "end":
                with contextlib.suppress(PbxError):
                    await self.pbx.play(call.agent_channel, self.prompts["recording_failed"])
                with contextlib.suppress(PbxError, TimeoutError):
                    await self._play_and_wait(call, self.prompts["recording_failed"], limit=15)
                await self.finish(call, "system", f"recording failed: {problem}", disposition="failed")
                return
            await self.pbx.remove_from_bridge(call.bridge_id, [call.customer, call.agent_channel])
            for channel in (call.customer, call.agent_channel):
                await self.pbx.start_moh(channel, self.moh_class(call.queue_id or ""))
            call.recording_held_since = time.monotonic()
        except PbxError as exc:
            log.warning("call %s: recording-failure policy %s not applied (%s)", call.id, policy, exc)
        finally:
            call.recording_busy = False

    async def _recording_resume(self, call: CallSession) -> None:
        assert call.recorder is not None and call.recording_id is not None and call.bridge_id is not None
        assert call.agent_channel is not None and call.recording_held_since is not None
        try:
            segment = await call.recorder.restart("restart_after_failure")
            for channel in (call.customer, call.agent_channel):
                await self.pbx.stop_moh(channel)
            await self.pbx.add_to_bridge(call.bridge_id, [call.customer, call.agent_channel])
            held = round(time.monotonic() - call.recording_held_since, 3)
            call.recording_held_since = None
            self.emit(RecordingResumed(recording_id=call.recording_id, segment=segment, held_seconds=held), call)
        except PbxError as exc:
            log.warning("call %s: could not resume after the recording failure (%s)", call.id, exc)
        finally:
            call.recording_busy = False

    def _on_tamper(self, call: CallSession, action: TamperAction, segment: int, gap: float) -> None:
        log.warning("call %s: recording %s by someone else; restored as segment %d after %.2f s",
                    call.id, action, segment, gap)
        assert call.recording_id is not None
        self.emit(RecordingTamperAttempt(recording_id=call.recording_id, action=action,
                                         segment=segment, gap_seconds=gap), call)

    # -- the end ---------------------------------------------------------------------------------
    async def finish(self, call: CallSession, ended_by: str, cause: str, disposition: str | None = None) -> None:
        """End ``call`` once: release the other leg, the bridge and the agent; record the outcome."""
        if call.finished:
            return
        call.finished = True
        state, call.state = call.state, "ended"
        if state == "ivr":
            self.ivr.abandon(call)
        self.payments.abort(call)
        if call.task is not None and call.task is not asyncio.current_task():
            call.task.cancel()
        if call.agent_answered is not None and not call.agent_answered.done():
            call.agent_answered.cancel()
        now = datetime.now(UTC)
        talk = (now - call.answered_at).total_seconds() if call.answered_at else None
        if call.transfer_answered is not None and not call.transfer_answered.done():
            call.transfer_answered.cancel()
        if state in ("connecting", "talking") and call.agent_id:
            since = call.agent_connected_at or call.answered_at
            self.acd.finished(call.agent_id, call.id, (now - since).total_seconds() if since else talk)
        elif state != "ivr":
            self.acd.abandon(call.id)
        self._callback_outcome(call, connected=False)  # the attempt ended before the customer was reached
        message = call.message
        if message is not None and message.started_mono is not None:
            self.emit(CallVoicemailLeft(mailbox=message.mailbox, reason=message.reason,
                                        path=str(message.path),
                                        duration_seconds=round(time.monotonic() - message.started_mono, 3)),
                      call)
            disposition = "voicemail"  # hanging up is how a message usually ends
        for channel in (call.customer, call.agent_channel):
            if channel:
                self.by_channel.pop(channel, None)
                with contextlib.suppress(PbxError):
                    if call.line and channel == call.agent_channel:
                        await self.lines.hold(channel)  # back on hold for wrap-up, not hung up
                    else:
                        await self.pbx.hangup(channel)
        if call.bridge_id:
            with contextlib.suppress(PbxError):
                await self.pbx.destroy_bridge(call.bridge_id)
        if disposition is None:
            disposition = {"talking": "completed", "ivr": "ivr_hangup", "voicemail": "voicemail",
                           "closed": "closed"}.get(state, "abandoned")
            if (ended_by == "pbx" and state != "talking") or (ended_by == "agent" and state == "connecting"):
                disposition = "failed"
            if call.transfer_answered is not None and state == "talking":
                disposition = "transferred"
        self.emit(CallEnded(disposition=disposition, ended_by=ended_by, cause=cause[:120],
                            talk_seconds=round(talk, 3) if talk is not None else None), call)
        if self.on_finished is not None:
            self.on_finished(call.id)
        if call.recording_id:
            await self._close_recording(call)
        self.sessions.pop(call.id, None)

    async def _close_recording(self, call: CallSession) -> None:
        """Close the file (joining restarted segments), then seal it into the vault."""
        assert call.recording_id is not None and call.recorder is not None
        path, segments = await call.recorder.close()
        self.recording.pop(call.customer, None)
        duration, size = await asyncio.to_thread(wav_stats, path)
        self.emit(CallRecordingStopped(recording_id=call.recording_id, duration_seconds=duration,
                                       size_bytes=size), call)
        now = datetime.now(UTC)
        masks = [mask for window in call.secure_windows
                 for mask in mask_windows(segments[0].started_at, segments[-1].ended_at, [window.span(now)],
                                          window.reason)]
        if self.vault is None or self.retention is None or not size:
            if masks and size:  # not sealed: the plaintext itself must not keep what was masked
                await asyncio.to_thread(_mask_in_place, path, [m.seconds for m in masks])
            return
        fields = ManifestFields(call.recording_id, (call.id,), segments[0].started_at, segments[-1].ended_at,
                                segments, masks)
        try:
            async with self._sealing:  # one chain append at a time
                sealed = await asyncio.to_thread(self.vault.seal, path, fields)
        except Exception:
            log.exception("call %s: recording %s could not be sealed; the plaintext is kept", call.id,
                          call.recording_id)
            return
        policy = self.retention.policy_for(queue=call.queue_id)
        self.emit(CallRecordingSealed(recording_id=call.recording_id, chain_seq=sealed.chain_seq,
                                      plaintext_sha256=sealed.manifest.plaintext_sha256, segments=len(segments),
                                      retention_policy=policy,
                                      retain_until=retain_until(self.retention, policy, sealed.manifest.sealed_at)),
                  call)

    # -- reconciliation --------------------------------------------------------------------------
    async def reconcile(self, snapshot: PbxSnapshot, stored: list[StoredCall]) -> tuple[int, int]:
        """Align with the PBX after a (re)connect. Returns (calls recovered, calls closed).

        A recovered call's recording goes on where it was: capture runs on the PBX for as long as
        the customer's channel lives, whatever the call's state, and is sealed with the secure-input
        windows the store holds for the call (typed in the IVR before the restart)."""
        live = {c.id: c for c in snapshot.channels}
        bridges = {b.id: b for b in snapshot.bridges}
        closed = 0
        for call in list(self.sessions.values()):
            if call.customer not in live or (call.line and call.agent_channel not in live):
                await self.finish(call, "pbx", "channel lost while the PBX link was down")
                closed += 1
        recovered = 0
        known = {ch for call in self.sessions.values() for ch in (call.customer, call.agent_channel) if ch}
        for row, legs, recording, windows, payment in stored:
            if row.id in self.sessions:
                continue
            customer = next((leg for leg in legs if leg.role == "customer"), None)
            agent_leg = next((leg for leg in reversed(legs) if leg.role == "agent" and leg.ended_at is None), None)
            # a persistent line's leg row is "<line channel>/<call>": the channel is the part before the slash
            agent_channel = agent_leg.channel_id.split("/", 1)[0] if agent_leg is not None else None
            if row.state == "callback" and row.queue in self.acd.config.queues:
                self._recover_callback(row, recording, windows)
                recovered += 1
                continue
            if customer is None or customer.channel_id not in live:
                self._close_stored(row)
                closed += 1
                continue
            call = CallSession(id=row.id, customer=customer.channel_id, caller_number=row.caller_number,
                               queued_mono=time.monotonic())
            self.sessions[call.id] = call
            self.by_channel[call.customer] = call
            known.add(call.customer)
            if recording is not None:
                call.recording_id = recording.id
                call.recorder = CallRecorder.adopt(
                    self.pbx, call.customer, Path(recording.path), recording.started_at.replace(tzinfo=UTC),
                    on_tamper=functools.partial(self._on_tamper, call))
                call.secure_windows = list(windows)
                self.recording[call.customer] = call
            bridge = next((b for b in bridges.values() if customer.channel_id in b.channel_ids), None)
            interrupted = bridge is None and payment is not None and agent_leg is not None
            if interrupted:  # the engine stopped mid-capture: the caller is away, the agent waits in the bridge
                bridge = next((b for b in bridges.values() if agent_channel in b.channel_ids), None)
            line = next((live[ch] for ch in bridge.channel_ids if ch in live
                         and live[ch].app_args[:1] == (LINE_ROLE,)), None) if bridge is not None else None
            agent = (agent_channel, agent_leg.agent_id) if agent_leg is not None and agent_channel else None
            if line is not None and len(line.app_args) > 1:  # the agent's persistent line carries the call
                agent = (line.id, line.app_args[1])
            if (row.state == "talking" and agent is not None and agent[0] in live and bridge is not None
                    and agent[0] in bridge.channel_ids):
                call.state, (call.agent_channel, call.agent_id) = "talking", agent
                call.line = line is not None
                call.bridge_id = bridge.id
                call.answered_at = row.answered_at.replace(tzinfo=UTC) if row.answered_at else None
                self.by_channel[agent[0]] = call
                known.add(agent[0])
                call.queue_id = row.queue
                if call.agent_id:
                    self.acd.occupied(call.agent_id, call.id)
                await self.pbx.watch([call.customer, agent[0]], [bridge.id])
                if interrupted and payment is not None:
                    await self.payments.interrupted(call, payment)
            else:
                await self.pbx.watch([call.customer], [])
                call.answered_at = None
                self.spawn(self._enqueue(call, row.queue or self.flow.default_queue), f"requeue-{call.id}")
            recovered += 1
        carrying = {call.agent_channel: call.id for call in self.sessions.values() if call.line and call.agent_channel}
        known |= await self.lines.reconcile(snapshot, carrying)
        for channel_id in live:
            if channel_id not in known:
                log.info("hanging up orphan channel %s found at resync", channel_id)
                with contextlib.suppress(PbxError):
                    await self.pbx.hangup(channel_id)
        return recovered, closed

    def _recover_callback(self, row: CallRow, recording: RecordingRow | None, windows: list[SecureWindow]) -> None:
        """A caller who accepted a callback and hung up before the engine stopped: the promise is
        in the store, so the call waits in its queue again (place kept among the recovered, in
        arrival order) and the customer is dialed when an agent takes it. A recording begun in
        the IVR continues on the new leg as a segment, as without the restart."""
        call = CallSession(id=row.id, customer=str(uuid.uuid4()), caller_number=row.caller_number, state="callback",
                           queue_id=row.queue, queued_mono=time.monotonic(), callback=True)
        self.sessions[call.id] = call
        if recording is not None:
            call.recording_id = recording.id
            call.recorder = CallRecorder.adopt(
                self.pbx, "", Path(recording.path), recording.started_at.replace(tzinfo=UTC),
                on_tamper=functools.partial(self._on_tamper, call))
            call.secure_windows = list(windows)
        assert row.queue is not None
        self.acd.enqueue(call.id, row.queue, caller=row.caller_number)
        self.acd.keep_place_for_callback(call.id)

    def _close_stored(self, row: CallRow) -> None:
        """A call the store thought open but the PBX no longer has: it ended while we were away."""
        disposition = {"talking": "completed", "ivr": "ivr_hangup"}.get(row.state, "abandoned")
        self.bus.publish(Event.of(
            CallEnded(disposition=disposition, ended_by="pbx",
                      cause="ended while the engine was not connected"),
            call_id=row.id, agent_id=row.agent_id, queue=row.queue))


def _str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _mask_in_place(path: Path, windows: list[tuple[float, float]]) -> None:
    tmp = path.with_name(path.name + ".masking")
    with path.open("rb") as src, tmp.open("wb") as out:
        mask_wav(src, out, windows)
    tmp.replace(path)


def wav_stats(path: Path) -> tuple[float | None, int | None]:
    """Duration and size of a finished recording (None if it does not exist or is unreadable)."""
    try:
        size = path.stat().st_size
        with wave.open(str(path), "rb") as wav:
            return wav.getnframes() / float(wav.getframerate()), size
    except (OSError, wave.Error, EOFError):
        return None, None
