"""Stasis application ``<app>-dialer``: runs one outbound campaign on the PBX.

It has its own ARI application name so it never sees (nor steals) the
inbound engine's channels, and its own adapter built from a copy of the PBX
settings. Every second, or as soon as something changes, it builds a
:class:`PacingSnapshot`, asks the campaign's strategy how many calls to
launch and dials that many *eligible* contacts (DNC, calling window, retry
rules are asked of :func:`ccengine.dialer.campaign.eligible` right before
each dial). A live answer is bridged to a free agent within the grace;
otherwise it hears the information message and is released (abandoned).
Every attempt ends exactly once with an outcome written to the store, and
every answer is stored raw so any regulator's rate can be recomputed.

The campaign row's ``state`` is the control channel: ``paused`` stops new
dials, ``stopped`` also ends the run once calls in flight are over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from ari_apps.seats import FixedSeats, NoLine, Seats
from ccengine.config import Settings
from ccengine.dialer.abandonment import AmdVerdict, LiveAnswer, abandonment_rate
from ccengine.dialer.campaign import (
    ABANDON_REDIAL_GAP,
    FINAL_REASONS,
    Attempt,
    Campaign,
    Contact,
    Mode,
    Outcome,
    dnc_key,
    eligible,
    next_attempt_at,
)
from ccengine.dialer.estimators import Estimates
from ccengine.dialer.pacing import PacingSnapshot
from ccengine.dialer.schema import AttemptRow, CampaignRow, ContactRow, DncRow, LiveAnswerRow
from ccengine.pbx.asterisk.adapter import AsteriskAdapter
from ccengine.pbx.protocol import (
    ChannelEntered,
    ChannelGone,
    ChannelHungUp,
    ChannelLeft,
    OriginateRequest,
    PbxError,
    PbxEvent,
    PbxReconnected,
    PlaybackFinished,
)
from ccengine.speech import synthesize

log = logging.getLogger(__name__)

AMD_CONTEXT = "dialer-amd"
AMD_WATCHDOG_S = 10.0  # AMD decides within 5 s (amd.conf total_analysis_time)
AGENT_RING_S = 10
AGENT_PAUSE_S = 10.0  # an agent whose phone failed sits out this long
_BUSY_CAUSES = {17}
_FAILED_CAUSES = {1, 3, 22, 27, 28, 34, 38, 41, 42, 44}


def dialer_app(settings: Settings) -> str:
    """The dialer's own ARI application name (pbx.conf's dialer-amd context uses the same)."""
    return f"{settings.pbx.ari.app}-dialer"


def dialer_adapter(settings: Settings) -> AsteriskAdapter:
    ari = settings.pbx.ari.model_copy(update={"app": dialer_app(settings)})
    return AsteriskAdapter(settings.pbx.model_copy(update={"ari": ari}))


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Dial:
    """One attempt in flight; its id is the customer channel id."""

    id: str
    contact: Contact
    contact_row: int
    number: int
    dialed_mono: float
    dialed_at: datetime
    state: str = "ringing"  # ringing | amd | waiting | connecting | talking | message | ended
    answered_at: datetime | None = None
    greeting_end_at: datetime | None = None
    connected_at: datetime | None = None
    verdict: AmdVerdict | None = None
    amd_cause: str = ""
    agent: str | None = None
    agent_channel: str | None = None
    line: bool = False  # the agent channel is the agent's persistent line: put back on hold, never hung up
    agent_answered: asyncio.Future[None] | None = None
    bridge: str | None = None
    recording: str | None = None
    message_played: bool = False
    message_done: asyncio.Future[None] | None = None
    talk_mono: float | None = None
    deadline: asyncio.TimerHandle | None = None
    finished: bool = False


@dataclass
class Progress:
    """Counters for the live display; the store holds the authoritative records."""

    started: float = field(default_factory=time.monotonic)
    dialed: int = 0
    answered: int = 0
    machine: int = 0
    connected: int = 0
    abandoned: int = 0
    in_flight: int = 0
    pending: int = 0
    occupancy: float = 0.0
    calls_per_agent_hour: float = 0.0
    abandon_rate: float = 0.0  # in the regulator window now, every run of the campaign counted
    state: str = "running"

    def line(self, definition: str) -> str:
        elapsed = time.monotonic() - self.started
        return (f"{elapsed:6.1f}s {self.state:9} dialed {self.dialed:4}  in flight {self.in_flight:3}  "
                f"answered {self.answered:4}  machine {self.machine:3}  connected {self.connected:4}  "
                f"abandoned {self.abandoned:3} ({definition} window {self.abandon_rate:.1%})  "
                f"occupancy {self.occupancy:.0%}  calls/agent-h {self.calls_per_agent_hour:.0f}  "
                f"pending {self.pending}")


class OutboundRunner:
    def __init__(self, settings: Settings, campaign: Campaign, campaign_id: str, db: Engine, *,
                 dnc_files: set[str] | None = None, until_idle: bool = False, idle_horizon_s: float = 60.0,
                 adapter: AsteriskAdapter | None = None, seats: Seats | None = None):
        self.settings = settings
        self.campaign = campaign
        self.campaign_id = campaign_id
        self.db = db
        self.until_idle = until_idle
        self.idle_horizon_s = idle_horizon_s
        self.pbx = adapter or dialer_adapter(settings)
        self.strategy = campaign.strategy()
        self.estimates = Estimates()
        self.definition = campaign.abandonment.regulator()
        self.seats: Seats = seats or FixedSeats(list(campaign.agents or ()), campaign.wrapup_seconds, AGENT_PAUSE_S)
        self.seats.on_offer = self._on_offer
        self._holding = False  # pacing progressively on shared agents: hold one per call (see _pace)
        self.contacts: dict[int, Contact] = {}
        self.history: dict[int, list[Attempt]] = {}
        self.closed: set[int] = set()
        self.dnc: set[str] = set()
        self.file_dnc: set[str] = set(dnc_files or ())
        self.calls: dict[str, Dial] = {}
        self.by_channel: dict[str, Dial] = {}
        self.playbacks: dict[str, asyncio.Future[None]] = {}
        self.answers: list[LiveAnswer] = []
        self.progress = Progress(pending=0)
        self.state = "running"
        self.message_media = ""
        self._kick = asyncio.Event()
        self._ari_up = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()

    # -- set-up ----------------------------------------------------------------------------------
    async def run(self, on_progress: Callable[[Progress], None] | None = None) -> str:
        """Dial until the campaign is completed or stopped; returns the final state."""
        await asyncio.to_thread(self._load)
        self.message_media = await asyncio.to_thread(self._message_media)
        await self.pbx.start()
        events = asyncio.create_task(self._events(), name="dialer-events")
        try:
            await asyncio.wait_for(self._ari_up.wait(), 30)
            final = await self._loop(on_progress)
        finally:
            events.cancel()
            await asyncio.gather(events, return_exceptions=True)
            await self.pbx.close()
        return final

    def _message_media(self) -> str:
        sounds = self.settings.paths.sounds_dir / "dialer"
        wav = synthesize(self.campaign.message, sounds / f"{self.campaign.name}-message.wav", speed=170)
        return f"sound:{wav.with_suffix('')}"

    def _load(self) -> None:
        with Session(self.db) as session:
            rows = session.scalars(select(ContactRow).where(ContactRow.campaign_id == self.campaign_id)).all()
            for row in rows:
                self.contacts[row.id] = Contact(row.contact_key, row.phone, row.timezone, row.name,
                                                dict(row.attributes))
                if row.status == "closed":
                    self.closed.add(row.id)
            prior = load_history(session, self.campaign.name, {c.phone for c in self.contacts.values()})
            earlier = load_answers(session, self.campaign.name, self._window_start())
        self._seed_answers(earlier)
        for row_id, contact in self.contacts.items():
            if contact.phone in prior:
                self.history[row_id] = list(prior[contact.phone])
        self._refresh_control()

    def _window_start(self) -> float:
        """Start (epoch seconds) of the regulator window the campaign is in now."""
        return self.definition.window_start(time.time())

    def _seed_answers(self, earlier: list[LiveAnswer]) -> None:
        """Earlier runs' answers in this window count here too, for the display and the controller:
        a campaign stopped and started again the same day is still one campaign to the regulator."""
        self.answers = earlier + self.answers
        offset = time.monotonic() - time.time()
        for answer in earlier:
            if self.definition.counts_as_live(answer):
                self.strategy.on_live_answer(answer.answer_ts + offset, self.definition.is_abandoned(answer))

    def _refresh_control(self) -> None:
        """Poll the campaign row (pause/resume/stop) and the internal DNC table."""
        with Session(self.db) as session:
            state = session.scalar(select(CampaignRow.state).where(CampaignRow.id == self.campaign_id))
            table = set(session.scalars(select(DncRow.phone))) if self.campaign.dnc.use_table else set()
        if state is not None:
            self.state = state
        self.dnc = self.file_dnc | {dnc_key(p) for p in table}

    # -- the pacing loop -------------------------------------------------------------------------
    async def _loop(self, on_progress: Callable[[Progress], None] | None) -> str:
        last_poll = 0.0
        while True:
            mono = time.monotonic()
            if mono - last_poll >= 1.0:
                last_poll = mono
                await asyncio.to_thread(self._refresh_control)
                self._update_progress()
                if on_progress is not None:
                    on_progress(self.progress)
            if self.state == "running" and self._ari_up.is_set():
                await self._pace()
            if not self.calls:
                if self.state == "stopped":
                    await asyncio.to_thread(self._finish_campaign, "stopped")
                    return "stopped"
                if self.state == "running" and self._done():
                    await asyncio.to_thread(self._finish_campaign, "completed")
                    self._update_progress()
                    self.progress.state = "completed"
                    if on_progress is not None:
                        on_progress(self.progress)
                    return "completed"
            self._kick.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), 1.0)

    def _done(self) -> bool:
        """Nothing more to dial: every contact closed (or, ``until_idle``, none due soon)."""
        now = _now()
        for row_id, contact in self.contacts.items():
            if row_id in self.closed:
                continue
            verdict = eligible(self.campaign, contact, now, self.history.get(row_id, []), self.dnc)
            if verdict.ok:
                return False
            if verdict.reason in FINAL_REASONS:
                continue
            if not self.until_idle:
                return False
            if verdict.not_before is not None and (verdict.not_before - now).total_seconds() < self.idle_horizon_s:
                return False
        return True

    def snapshot(self) -> PacingSnapshot:
        mono = time.monotonic()
        agents = self.seats.counts(self._guaranteed())
        ring = [mono - c.dialed_mono for c in self.calls.values() if c.state in ("ringing", "amd")]
        waiting = sum(1 for c in self.calls.values() if c.state == "waiting")
        lines = len(self.calls)
        return PacingSnapshot(mono, agents.idle, agents.talk_ages, agents.wrap_ages, ring, waiting, lines,
                              self.campaign.max_lines)

    async def _pace(self) -> None:
        wanted = self.strategy.decide(self.snapshot(), self.estimates)
        # predictive falling back to progressive counted on free agents that inbound calls may take
        # first: with shared agents each such call holds its agent, as progressive mode does
        self._holding = self.seats.shared and self.strategy.paces_progressively
        if self._guaranteed():
            wanted = min(wanted, self.seats.counts(True).free_now)
        if wanted <= 0:
            return
        now = _now()
        busy = {c.contact_row for c in self.calls.values()}
        picked: list[int] = []
        for row_id, contact in self.contacts.items():
            if len(picked) >= wanted:
                break
            if row_id in self.closed or row_id in busy:
                continue
            if eligible(self.campaign, contact, now, self.history.get(row_id, []), self.dnc):
                picked.append(row_id)
        for row_id in picked:
            await self._dial(row_id)

    async def _dial(self, row_id: int) -> None:
        contact = self.contacts[row_id]
        # last look right before the switch is asked: the rules, never a cached answer
        if not eligible(self.campaign, contact, _now(), self.history.get(row_id, []), self.dnc):
            return
        call_id = str(uuid.uuid4())
        agent = None
        if self._guaranteed():
            agent = self.seats.take(call_id, wait=False)
            if agent is None:
                return
        number = len(self.history.get(row_id, [])) + 1
        call = Dial(call_id, contact, row_id, number, time.monotonic(), _now(), agent=agent)
        self.calls[call.id] = call
        if self.campaign.mode is Mode.PREVIEW and agent is not None:
            call.state = "preview"
            self._spawn(self._preview(call, agent), f"preview-{call.id}")
            return
        await self._dial_customer(call)

    async def _preview(self, call: Dial, agent: str) -> None:
        """Preview: the agent is on the line (and sees the contact) before the customer is dialed."""
        if not await self._ring_agent(call, agent):
            # nobody dialed: no attempt is recorded, the contact stays as it was
            await self._release_agent_leg(call, back_to_ready=True)
            self.calls.pop(call.id, None)
            self._kick.set()
            return
        call.state = "ringing"
        call.dialed_mono, call.dialed_at = time.monotonic(), _now()
        await self._dial_customer(call)

    async def _dial_customer(self, call: Dial) -> None:
        contact = call.contact
        self.by_channel[call.id] = call
        self.progress.dialed += 1
        await asyncio.to_thread(self._store_dial, call)
        try:
            await self.pbx.originate(OriginateRequest(
                endpoint=self.campaign.dial_string(contact.phone), app_args=("customer",),
                caller_id=self.campaign.caller_id, timeout=self.campaign.ring_timeout, channel_id=call.id))
        except PbxError as exc:
            await self._finish(call, Outcome.FAILED, f"originate: {exc}")

    def _guaranteed(self) -> bool:
        return self.campaign.mode.agent_guaranteed or self._holding

    def _on_offer(self, call_id: str, agent: str) -> None:
        """An agent became free for a call that asked for one (oldest first)."""
        call = self.calls.get(call_id)
        if call is None or call.finished or call.state != "waiting" or call.agent is not None:
            self.seats.release(agent, call_id)
        else:
            self._assign(call, agent)
        self._kick.set()

    # -- events ----------------------------------------------------------------------------------
    async def _events(self) -> None:
        async for event in self.pbx.events():
            try:
                self._handle(event)
            except Exception:
                log.exception("event %r could not be handled", event)

    def _handle(self, event: PbxEvent) -> None:
        if isinstance(event, PbxReconnected):
            if event.link == "ari":
                self._spawn(self._resync(first=not self._ari_up.is_set()), "dialer-resync")
        elif isinstance(event, ChannelEntered):
            args = event.channel.app_args
            role = args[0] if args else ""
            if role == "customer":
                self._on_answer(event.channel.id)
            elif role == "amd":
                self._on_verdict(event.channel.id, args[1] if len(args) > 1 else "",
                                 args[2] if len(args) > 2 else "")
            elif role == "agent":
                self._on_agent_answer(event.channel.id)
        elif isinstance(event, ChannelHungUp):
            self._on_hangup(event.channel_id, event.cause, event.cause_text)
        elif isinstance(event, ChannelLeft):
            call = self.by_channel.get(event.channel_id)
            if call is not None and call.state != "amd":
                self._on_hangup(event.channel_id, 16, "left the application")
        elif isinstance(event, PlaybackFinished):
            done = self.playbacks.pop(event.playback_id, None)
            if done is not None and not done.done():
                done.set_result(None)

    async def _resync(self, *, first: bool) -> None:
        """After every ARI (re)connect: the PBX does not replay what happened while we were away.

        At start, channels left in this application by an earlier runner are
        hung up. Later, every call whose channels vanished (a PBX restart) is
        ended with an outcome, so the campaign can still complete.
        """
        try:
            if first:
                for channel in (await self.pbx.snapshot()).channels:
                    with contextlib.suppress(PbxError):
                        await self.pbx.hangup(channel.id)
                return
            for call in list(self.calls.values()):
                if call.finished:
                    continue
                try:
                    await self.pbx.ari.request("GET", f"/channels/{call.id}")
                except ChannelGone:
                    outcome = {"ringing": Outcome.FAILED, "talking": Outcome.CONNECTED}.get(call.state,
                                                                                           Outcome.HANGUP)
                    await self._finish(call, outcome, "channel lost while the PBX link was down")
                    continue
                if call.agent_channel and call.state in ("connecting", "talking"):
                    try:
                        await self.pbx.ari.request("GET", f"/channels/{call.agent_channel}")
                    except ChannelGone:
                        if call.state == "talking":
                            await self._finish(call, Outcome.CONNECTED, "agent leg lost while the PBX link was down")
                        else:
                            await self._abandon(call)
        except PbxError as exc:
            log.error("dialer resync failed: %s", exc)
        finally:
            self._ari_up.set()
            self._kick.set()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _on_answer(self, channel_id: str) -> None:
        call = self.calls.get(channel_id)
        if call is None or call.finished:
            self._spawn(self.pbx.hangup(channel_id), "hangup-stranger")
            return
        call.answered_at = _now()
        self.progress.answered += 1
        if self.campaign.amd:
            call.state = "amd"
            self._spawn(self._run_amd(call), f"amd-{call.id}")
        else:
            call.greeting_end_at = call.answered_at
            self._route(call)

    async def _run_amd(self, call: Dial) -> None:
        try:
            await self.pbx.ari.request("POST", f"/channels/{call.id}/continue",
                                       params={"context": AMD_CONTEXT, "extension": "s", "priority": 1})
        except PbxError as exc:
            await self._finish(call, Outcome.HANGUP, f"AMD: {exc}")
            return
        await asyncio.sleep(AMD_WATCHDOG_S)
        if call.state == "amd" and not call.finished:
            # it hung up in the dialplan, where the application gets no events
            await self._finish(call, Outcome.HANGUP, "no AMD verdict (hung up during greeting)")

    def _on_verdict(self, channel_id: str, status: str, cause: str) -> None:
        call = self.calls.get(channel_id)
        if call is None or call.finished:
            self._spawn(self.pbx.hangup(channel_id), "hangup-stranger")
            return
        call.greeting_end_at = _now()
        call.amd_cause = cause[:64]
        status = status.upper()
        if status == "MACHINE":
            call.verdict = AmdVerdict.MACHINE
            self.progress.machine += 1
            self.estimates.ring.observe(False, time.monotonic() - call.dialed_mono)
            self._spawn(self._finish(call, Outcome.MACHINE, f"AMD {cause}"), f"finish-{call.id}")
        elif status == "HANGUP":
            self._spawn(self._finish(call, Outcome.HANGUP, "hung up during AMD"), f"finish-{call.id}")
        else:
            call.verdict = AmdVerdict.HUMAN if status == "HUMAN" else AmdVerdict.NOTSURE
            self._route(call)

    def _route(self, call: Dial) -> None:
        """A person is (believed to be) on the line: give it an agent or start the grace clock."""
        self.estimates.ring.observe(True, time.monotonic() - call.dialed_mono)
        agent = call.agent or self.seats.take(call.id, wait=True)
        if agent is not None:
            self._assign(call, agent)
            return
        call.state = "waiting"
        assert call.greeting_end_at is not None
        remaining = self.campaign.abandonment.grace_seconds - (_now() - call.greeting_end_at).total_seconds()
        loop = asyncio.get_running_loop()
        call.deadline = loop.call_later(max(remaining, 0.0), self._on_deadline, call)
        self._kick.set()

    def _assign(self, call: Dial, agent: str) -> None:
        call.agent = agent
        self.seats.ringing(agent, call.id)
        if call.state != "waiting":
            assert call.greeting_end_at is not None
            remaining = self.campaign.abandonment.grace_seconds - (_now() - call.greeting_end_at).total_seconds()
            call.deadline = asyncio.get_running_loop().call_later(max(remaining, 0.0), self._on_deadline, call)
        call.state = "connecting"
        self._spawn(self._connect(call, agent), f"connect-{call.id}")

    def _on_deadline(self, call: Dial) -> None:
        if call.finished or call.state not in ("waiting", "connecting"):
            return
        # decided now, not when the task runs: a bridge completing meanwhile must not count as a connect
        call.state = "message"
        self._spawn(self._abandon(call, decided=True), f"abandon-{call.id}")

    async def _ring_agent(self, call: Dial, agent: str) -> bool:
        """Ring the agent's phone into the application (or take their persistent line); True once
        the agent is on the line."""
        try:
            line = self.seats.line(agent, call.id)
        except NoLine as exc:
            log.warning("attempt %s: %s; agent skipped", call.id, exc)
            if call.agent == agent:
                call.agent = None
                self.seats.release(agent, call.id)
            return False
        if line is not None:
            return await self._take_line(call, agent, line)
        channel_id = str(uuid.uuid4())
        call.agent_channel = channel_id
        call.agent_answered = asyncio.get_running_loop().create_future()
        self.by_channel[channel_id] = call
        try:
            await self.pbx.originate(OriginateRequest(
                endpoint=self.settings.pbx.agent_dial.format(agent=agent), app_args=("agent", call.id),
                caller_id=call.contact.phone, timeout=AGENT_RING_S, channel_id=channel_id))
            await asyncio.wait_for(asyncio.shield(call.agent_answered), AGENT_RING_S + 2)
        except (TimeoutError, PbxError) as exc:
            log.warning("attempt %s: agent %s not reached (%s); pausing the agent %.0f s",
                        call.id, agent, exc, AGENT_PAUSE_S)
            if call.agent == agent:
                call.agent = None
                self.seats.unreachable(agent, call.id)  # like ring-no-answer: paused, not retried hot
            return False
        except asyncio.CancelledError:  # the call ended (or was abandoned) meanwhile
            return False
        if call.agent == agent:
            self.seats.answered(agent, call.id)
        return True

    async def _take_line(self, call: Dial, agent: str, line: str) -> bool:
        """The agent's phone is already connected: no INVITE, the line joins the customer's bridge."""
        call.agent_channel, call.line = line, True
        call.agent_answered = asyncio.get_running_loop().create_future()
        call.agent_answered.set_result(None)
        self.by_channel[line] = call
        try:
            await self.pbx.watch([line], [])  # the line belongs to the engine's app: see it hang up
        except PbxError as exc:
            log.warning("attempt %s: line of agent %s not usable (%s)", call.id, agent, exc)
            self.by_channel.pop(line, None)
            call.agent_channel, call.line = None, False
            with contextlib.suppress(PbxError):
                await self.seats.hold_line(line)
            if call.agent == agent:
                call.agent = None
                self.seats.release(agent, call.id)
            return False
        if call.agent == agent:
            self.seats.answered(agent, call.id)
        return True

    async def _connect(self, call: Dial, agent: str) -> None:
        answered = call.agent_answered is not None and call.agent_answered.done() \
            and not call.agent_answered.cancelled() and call.agent_answered.exception() is None
        if not answered and not await self._ring_agent(call, agent):
            if call.state == "connecting" and not call.finished:
                await self._abandon(call)
            return
        if call.finished or call.state != "connecting":
            return
        channel_id = call.agent_channel
        assert channel_id is not None
        try:
            call.bridge = await self.pbx.create_bridge()
            await self.pbx.add_to_bridge(call.bridge, [call.id, channel_id])
        except PbxError as exc:
            await self._finish(call, Outcome.FAILED, f"bridge: {exc}")
            return
        if call.line:
            self.seats.zip_tone(channel_id)
        if call.finished or call.state != "connecting":
            return
        connected_at = _now()
        if call.greeting_end_at is not None and (connected_at - call.greeting_end_at).total_seconds() \
                > self.campaign.abandonment.grace_seconds:
            self._on_deadline(call)  # its timer is due but has not run yet: too late all the same
            return
        if call.deadline is not None:
            call.deadline.cancel()
        call.state = "talking"
        call.connected_at = connected_at
        call.talk_mono = time.monotonic()
        self.progress.connected += 1
        self.strategy.on_live_answer(time.monotonic(), False)
        day = call.connected_at.strftime("%Y/%m/%d")
        path = self.settings.paths.recordings_dir / "dialer" / day / f"{call.id}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            await self.pbx.start_recording(call.id, str(path))
            call.recording = str(path)
        except PbxError as exc:
            log.warning("attempt %s: recording failed (%s); ending the call", call.id, exc)
            await self._finish(call, Outcome.FAILED, "recording failed")

    def _on_agent_answer(self, channel_id: str) -> None:
        call = self.by_channel.get(channel_id)
        if call is None or call.finished or call.agent_answered is None or channel_id != call.agent_channel:
            self._spawn(self.pbx.hangup(channel_id), "hangup-orphan")
            return
        if not call.agent_answered.done():
            call.agent_answered.set_result(None)

    async def _abandon(self, call: Dial, *, decided: bool = False) -> None:
        """No agent within the grace: play the information message, then release (abandoned)."""
        if call.finished or call.state == "talking" or (call.state == "message" and not decided):
            return
        call.state = "message"
        self.strategy.on_live_answer(time.monotonic(), True)
        await self._release_agent_leg(call, back_to_ready=True)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        call.message_done = done
        playback = str(uuid.uuid4())
        self.playbacks[playback] = done
        try:
            await self.pbx.play(call.id, self.message_media, playback)
            await asyncio.wait_for(done, 30)
            call.message_played = True
        except (PbxError, TimeoutError) as exc:
            log.info("attempt %s: information message interrupted (%s)", call.id, exc)
        finally:
            self.playbacks.pop(playback, None)
        await self._finish(call, Outcome.ABANDONED, "no agent within the grace")

    async def _release_agent_leg(self, call: Dial, *, back_to_ready: bool) -> None:
        if call.agent_channel:
            self.by_channel.pop(call.agent_channel, None)
            with contextlib.suppress(PbxError):
                if call.line:
                    await self.seats.hold_line(call.agent_channel)
                else:
                    await self.pbx.hangup(call.agent_channel)
            call.agent_channel, call.line = None, False
        if call.agent_answered is not None and not call.agent_answered.done():
            call.agent_answered.cancel()
        agent, call.agent = call.agent, None
        if agent is None:
            self.seats.cancel(call.id)  # a request still waiting for an agent is withdrawn
        elif back_to_ready:
            self.seats.release(agent, call.id)

    def _on_hangup(self, channel_id: str, cause: int, cause_text: str) -> None:
        call = self.by_channel.get(channel_id)
        if call is None or call.finished:
            return
        if channel_id == call.agent_channel:
            if call.state == "talking":
                self._spawn(self._finish(call, Outcome.CONNECTED, "agent hung up"), f"finish-{call.id}")
            elif call.state in ("ringing", "amd") and call.agent_answered is not None and call.agent_answered.done():
                # preview: the agent left before the customer answered
                self._spawn(self._finish(call, Outcome.NO_ANSWER, "agent left before the answer"),
                            f"finish-{call.id}")
            elif call.agent_answered is not None and not call.agent_answered.done():
                call.agent_answered.set_exception(PbxError(cause_text or "agent leg ended"))
            return
        if call.state == "ringing":
            ring = time.monotonic() - call.dialed_mono
            self.estimates.ring.observe(False, ring)
            outcome = (Outcome.BUSY if cause in _BUSY_CAUSES else
                       Outcome.FAILED if cause in _FAILED_CAUSES else Outcome.NO_ANSWER)
            self._spawn(self._finish(call, outcome, f"{cause} {cause_text}"), f"finish-{call.id}")
        elif call.state == "talking":
            self._spawn(self._finish(call, Outcome.CONNECTED, "customer hung up"), f"finish-{call.id}")
        elif call.state == "message":
            # the abandon task ends the call; the message was cut short
            if call.message_done is not None and not call.message_done.done():
                call.message_done.set_exception(PbxError(f"hung up during the message: {cause_text}"))
        else:
            self._spawn(self._finish(call, Outcome.HANGUP, f"customer hung up while {call.state}"),
                        f"finish-{call.id}")

    # -- the end ---------------------------------------------------------------------------------
    async def _finish(self, call: Dial, outcome: Outcome, cause: str) -> None:
        """End ``call`` once: release legs and agent, store the attempt, the answer, the contact."""
        if call.finished:
            return
        call.finished = True
        state, call.state = call.state, "ended"
        if call.deadline is not None:
            call.deadline.cancel()
        agent = call.agent
        talked = state == "talking" and agent is not None
        await self._release_agent_leg(call, back_to_ready=not talked)
        self.by_channel.pop(call.id, None)
        with contextlib.suppress(PbxError):
            await self.pbx.hangup(call.id)
        if call.bridge:
            with contextlib.suppress(PbxError):
                await self.pbx.destroy_bridge(call.bridge)
        if talked and agent is not None:
            if call.talk_mono is not None:
                self.estimates.service.observe_talk(time.monotonic() - call.talk_mono)
            self.estimates.service.observe_wrap(self.seats.ended(agent, call.id))
        if outcome is Outcome.ABANDONED:
            self.progress.abandoned += 1
        answer = self._live_answer(call)
        if answer is not None:
            self.answers.append(answer)
        attempt = Attempt(call.dialed_at, outcome)
        self.history.setdefault(call.contact_row, []).append(attempt)
        verdict = eligible(self.campaign, call.contact, _now(), self.history[call.contact_row], self.dnc)
        closed = not verdict.ok and verdict.reason in FINAL_REASONS
        if closed:
            self.closed.add(call.contact_row)
        await asyncio.to_thread(self._store_end, call, outcome, cause, agent,
                                closed, verdict.reason if closed else None, next_attempt_at(self.campaign, attempt))
        self.calls.pop(call.id, None)
        self._kick.set()

    def _live_answer(self, call: Dial) -> LiveAnswer | None:
        if call.answered_at is None:
            return None
        def ts(value: datetime | None) -> float | None:
            return value.timestamp() if value is not None else None

        return LiveAnswer(call.answered_at.timestamp(), ts(call.greeting_end_at), ts(call.connected_at),
                          call.message_played, call.verdict, call.id, self.campaign.name)

    # -- the store -------------------------------------------------------------------------------
    def _store_dial(self, call: Dial) -> None:
        with Session(self.db) as session, session.begin():
            session.add(AttemptRow(id=call.id, campaign_id=self.campaign_id, contact_id=call.contact_row,
                                   phone=call.contact.phone, number=call.number, dialed_at=call.dialed_at))
            session.execute(update(ContactRow).where(ContactRow.id == call.contact_row)
                            .values(status="dialing", attempts=call.number, updated_at=_now()))

    def _store_end(self, call: Dial, outcome: Outcome, cause: str, agent_id: str | None, closed: bool,
                   reason: str | None, next_at: datetime | None) -> None:
        now = _now()
        with Session(self.db) as session, session.begin():
            session.execute(update(AttemptRow).where(AttemptRow.id == call.id).values(
                answered_at=call.answered_at, ended_at=now, outcome=outcome.value, cause=cause[:128],
                agent_id=agent_id if call.connected_at else None,
                amd_verdict=call.verdict.value if call.verdict else None, amd_cause=call.amd_cause or None,
                recording_path=call.recording))
            if call.answered_at is not None:
                session.add(LiveAnswerRow(
                    attempt_id=call.id, campaign_id=self.campaign_id, answer_ts=call.answered_at,
                    greeting_end_ts=call.greeting_end_at, agent_connect_ts=call.connected_at,
                    message_played=call.message_played, amd_verdict=call.verdict.value if call.verdict else None,
                    agent_id=agent_id if call.connected_at else None))
            session.execute(update(ContactRow).where(ContactRow.id == call.contact_row).values(
                status="closed" if closed else "pending", final_reason=reason, last_outcome=outcome.value,
                next_attempt_at=None if closed else next_at, updated_at=now))

    def _finish_campaign(self, state: str) -> None:
        """Close the run; contacts never (re)dialed get the reason as their recorded outcome."""
        now = _now()
        with Session(self.db) as session, session.begin():
            for row_id, contact in self.contacts.items():
                if row_id in self.closed:
                    continue
                verdict = eligible(self.campaign, contact, now, self.history.get(row_id, []), self.dnc)
                reason = verdict.reason or "not_dialed"
                session.execute(update(ContactRow).where(ContactRow.id == row_id).values(
                    status="closed", final_reason=reason if state == "completed" else f"{state}:{reason}",
                    updated_at=now))
            session.execute(update(CampaignRow).where(CampaignRow.id == self.campaign_id).values(
                state=state, ended_at=now, runner_pid=None))
        self.state = state

    # -- progress --------------------------------------------------------------------------------
    def _update_progress(self) -> None:
        p = self.progress
        p.state = self.state
        p.in_flight = len(self.calls)
        p.pending = sum(1 for r in self.contacts if r not in self.closed)
        elapsed = max(time.monotonic() - p.started, 1e-6)
        p.occupancy = self.seats.occupancy(elapsed)
        p.calls_per_agent_hour = p.dialed / (elapsed / 3600.0) / self.seats.size()
        window_start = self._window_start()
        p.abandon_rate = abandonment_rate([a for a in self.answers if a.answer_ts >= window_start],
                                          self.definition).rate


def load_history(session: Session, name: str, phones: set[str]) -> dict[str, list[Attempt]]:
    """Past attempts the rules must see, by phone.

    Every earlier run of the same campaign counts (a restart resumes, it does
    not start the retry rules afresh), and so does an abandoned call from
    *any* campaign in the last 72 h: the no-redial rule protects the person,
    not the campaign.
    """
    since = _now() - ABANDON_REDIAL_GAP
    query = (select(AttemptRow.phone, AttemptRow.dialed_at, AttemptRow.outcome, CampaignRow.name)
             .join(CampaignRow, CampaignRow.id == AttemptRow.campaign_id)
             .where(AttemptRow.phone.in_(phones))
             .where((CampaignRow.name == name)
                    | ((AttemptRow.outcome == Outcome.ABANDONED.value) & (AttemptRow.dialed_at >= since))))
    history: dict[str, list[Attempt]] = {}
    for phone, dialed_at, outcome, _ in session.execute(query):
        at = dialed_at if dialed_at.tzinfo else dialed_at.replace(tzinfo=UTC)
        history.setdefault(phone, []).append(Attempt(at, Outcome(outcome) if outcome else Outcome.FAILED))
    return history


def load_answers(session: Session, name: str, since_ts: float) -> list[LiveAnswer]:
    """Stored live answers of every run of campaign ``name`` since ``since_ts``, oldest first."""
    def ts(value: datetime | None) -> float | None:
        if value is None:
            return None
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()  # SQLite gives naive UTC

    since = datetime.fromtimestamp(since_ts, UTC)
    query = (select(LiveAnswerRow, CampaignRow.name).join(CampaignRow, CampaignRow.id == LiveAnswerRow.campaign_id)
             .where(CampaignRow.name == name, LiveAnswerRow.answer_ts >= since)
             .order_by(LiveAnswerRow.answer_ts))
    return [LiveAnswer(ts(row.answer_ts) or 0.0, ts(row.greeting_end_ts), ts(row.agent_connect_ts),
                       row.message_played, AmdVerdict(row.amd_verdict) if row.amd_verdict else None,
                       row.attempt_id, campaign)
            for row, campaign in session.execute(query)]


def open_campaign(db: Engine, campaign: Campaign, source: Path, contacts: list[Contact]) -> str:
    """Create the campaign row and its contacts (state running); returns the campaign id."""
    campaign_id = str(uuid.uuid4())
    now = _now()
    with Session(db) as session, session.begin():
        session.add(CampaignRow(id=campaign_id, name=campaign.name, mode=campaign.mode.value, state="running",
                                definition=campaign.model_dump(mode="json"), source=str(source),
                                created_at=now, started_at=now, runner_pid=os.getpid()))
        session.flush()
        for contact in contacts:
            session.add(ContactRow(campaign_id=campaign_id, contact_key=contact.id, phone=contact.phone,
                                   timezone=contact.timezone, name=contact.name, attributes=contact.attributes,
                                   status="pending", attempts=0, updated_at=now))
    return campaign_id

