"""The engine: wires the PBX adapter, the event bus, the store and the Stasis apps.

One dispatcher task consumes the adapter's event stream in order and routes
each event to the application that owns the channel. On every (re)connect of
the ARI link it reconciles with the PBX: calls whose channels vanished are
closed, calls the store knows but memory does not (engine restart) are
adopted, and strangers are hung up.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import signal
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from ari_apps.inbound import CallSession, InboundApp, StoredCall
from ari_apps.lines import ROLE as LINE_ROLE
from ari_apps.payment import PROMPTS as PAYMENT_PROMPTS
from ari_apps.supervision import Supervision

from .acd import ROUTER as ACD_ROUTER
from .acd.definitions import load_queue_config
from .acd.service import Acd
from .audio.config import load_analytics
from .audio.service import AudioAnalytics
from .audit.chain import AuditTrail
from .config import Settings
from .control import make_app as make_control
from .control import serve as serve_control
from .control import socket_path
from .core.bus import EventBus
from .core.events import (
    CallbackAttempted,
    CallbackFinished,
    CallbackScheduled,
    CallPaymentCaptured,
    CallPaymentFailed,
    CallPaymentStarted,
    EnginePbxLink,
    EngineResynced,
    Event,
)
from .ivr.connectors import Directory, HttpDirectory, NoDirectory
from .ivr.pci import secure_windows
from .ivr.prompts import PromptCache
from .ivr.registry import TreeRegistry
from .payment.connector import make_connector
from .payment.control import payment_routes
from .pbx.asterisk.adapter import AsteriskAdapter
from .pbx.protocol import (
    ChannelEntered,
    ChannelHungUp,
    ChannelLeft,
    DtmfReceived,
    PbxAdapter,
    PbxDisconnected,
    PbxError,
    PbxEvent,
    PbxReconnected,
    PlaybackFinished,
    RecordingChanged,
)
from .recording.keeping import Keeping
from .recording.retention import load_retention
from .recording.vault import Vault
from .speech import synthesize
from .store.database import make_engine, upgrade
from .store.schema import CallRow, EventRow, LegRow, RecordingRow
from .store.writer import StoreWriter
from .yamlconf import ConfigError, ConfigIssue

log = logging.getLogger(__name__)

CALLBACK_EVENTS = [cls.TYPE for cls in (CallbackScheduled, CallbackAttempted, CallbackFinished)]

PAYMENT_EVENTS = (CallPaymentStarted.TYPE, CallPaymentCaptured.TYPE, CallPaymentFailed.TYPE)
PROMPTS = {
    "welcome": "Welcome to Lab Bank. Accounts, press 1. Cards, 2. Fraud, 3.",
    "callback_offer": "All advisers are busy. To keep your place and be called back, press 1.",
    "callback_thanks": "Thank you. We will call you back shortly. Goodbye.",
    "closed": "Lab Bank is closed now. Please call again during our opening hours. Goodbye.",
    "closed_callback_offer": "Lab Bank is closed now. To be called back when we open, press 1.",
    "closed_callback_thanks": "Thank you. We will call you back when we open. Goodbye.",
    "max_wait": "We are sorry, all advisers are still busy. Please call again later. Goodbye.",
    "recording_failed": "We are sorry, this call cannot continue because it cannot be recorded. "
                        "Please call again. Goodbye.",
    "voicemail": "All advisers are busy. Please leave your name, number and message after the tone, "
                 "then press hash or hang up.",
}


class Engine:
    def __init__(self, settings: Settings, pbx: PbxAdapter | None = None):
        self.settings = settings
        self.bus = EventBus()
        self.db = make_engine(settings.database.url, synchronous=settings.database.sqlite_synchronous)
        self.writer = StoreWriter(self.db, self.bus, linger=settings.database.write_linger,
                                  min_batch=settings.database.write_min_batch)
        self.pbx: PbxAdapter = pbx or AsteriskAdapter(settings.pbx)
        # queue definitions are validated before anything starts: a bad file stops the engine
        self.acd = Acd(load_queue_config(settings.acd.queues), self.bus.publish,
                       rona_pause=settings.acd.rona_pause)
        if settings.ivr.tree is None:
            self._check_menu()
        # the IVR tree is checked against the queues and skills: a bad tree stops the engine
        self.ivr = TreeRegistry(settings.ivr.tree, settings.flow, lambda: self.acd.config.queues,
                                lambda: self.acd.config.skills)
        self.directory: Directory = (HttpDirectory(settings.ivr.directory_url) if settings.ivr.directory_url
                                     else NoDirectory())
        self.prompt_cache = PromptCache(settings.paths.sounds_dir, settings.ivr.voice)
        # call audio analytics only when configured; a bad analytics file stops the engine like a bad queue file
        self.analytics = (AudioAnalytics(load_analytics(settings.analytics), self.pbx, self.bus.publish)
                          if settings.analytics is not None else None)
        self.app: InboundApp | None = None
        self.supervision = Supervision(self.pbx, settings.pbx.agent_dial)
        # recordings: sealed into the vault, kept per the retention policies (a bad policy file stops the engine)
        self.retention = load_retention(settings.recording.retention)
        self.vault = Vault(settings.recording.vault_dir) if settings.recording.seal else None
        self.keeping = (Keeping(self.db, self.vault, AuditTrail(self.db), self.retention)
                        if self.vault is not None else None)
        self._dispatcher: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._first_sync = asyncio.Event()

    def _check_menu(self) -> None:
        flow = self.settings.flow
        unknown = sorted({*flow.menu.values(), flow.default_queue} - set(self.acd.config.queues))
        if unknown:
            raise ConfigError([ConfigIssue(str(self.settings.acd.queues), 1, 1, "queues",
                                           f"flow menu routes to unknown queue(s): {', '.join(unknown)}")])

    def agent_call(self, agent_id: str) -> CallSession | None:
        """The live call ``agent_id`` is on, if any."""
        app = self.app
        if app is None:
            return None
        return next((c for c in app.sessions.values() if c.agent_id == agent_id and not c.finished), None)

    def reload_queues(self) -> bool:
        """Hot reload of the queue definitions (SIGHUP); a bad file keeps the running ones."""
        try:
            config = load_queue_config(self.settings.acd.queues)
        except ConfigError as exc:
            for issue in exc.issues:
                log.error("queue reload refused: %s", issue)
            return False
        self.acd.reload(config)
        self.acd.login_all()  # until agents log in through the API, configured agents are logged in
        return self.reload_ivr()

    def reload_ivr(self) -> bool:
        """New callers get the new tree; callers in the IVR finish on the version they started."""
        if not self.ivr.reload():
            return False
        try:
            self.prompt_cache.warm(self.ivr.tree)
        except Exception:  # speech is regenerated on demand if warming fails
            log.exception("IVR prompts could not be generated in advance")
        return True

    def prompts(self) -> dict[str, str]:
        """Prompt media URIs; generated with espeak-ng (cached) unless a media URI is configured."""
        out = {}
        for name, text in {**PROMPTS, **PAYMENT_PROMPTS}.items():
            wav = synthesize(text, self.settings.paths.sounds_dir / f"{name}.wav", speed=185)
            out[name] = f"sound:{wav.with_suffix('')}"
        if self.settings.flow.prompt:
            out["welcome"] = self.settings.flow.prompt
        return out

    async def start(self) -> None:
        settings = self.settings
        log.log(logging.WARNING if ACD_ROUTER.refused else logging.INFO, "ACD router: %s", ACD_ROUTER.note)
        await asyncio.to_thread(upgrade, settings.database.url)
        settings.paths.recordings_dir.mkdir(parents=True, exist_ok=True)
        prompts = await asyncio.to_thread(self.prompts)
        try:
            await asyncio.to_thread(self.prompt_cache.warm, self.ivr.tree)
        except Exception:  # speech is generated on demand if warming fails
            log.exception("IVR prompts could not be generated in advance")
        await asyncio.to_thread(self._seed_affinity)
        await asyncio.to_thread(self._load_callbacks)
        self.app = InboundApp(self.pbx, self.bus, settings.flow, self.acd, agent_dial=settings.pbx.agent_dial,
                              customer_dial=settings.pbx.customer_dial, prompts=prompts,
                              recordings_dir=settings.paths.recordings_dir,
                              vault=self.vault, retention=self.retention,
                              ivr=self.ivr, directory=self.directory, prompt_cache=self.prompt_cache,
                              voicemail_dir=settings.paths.state_dir / "voicemail",
                              line_hold_music=settings.acd.line_hold_music,
                              line_release_key=settings.acd.line_release_key, payment=settings.payment,
                              payment_connector=make_connector(settings.payment.connector))
        if self.analytics is not None:
            await self.analytics.start()
            self.app.on_connected = self.analytics.call_connected
            self.app.on_finished = self.analytics.call_ended
            self.app.on_transferred = self.analytics.call_transferred
            self.analytics.on_card_spoken = self.app.mask_spoken_card
        self.app.stored = functools.partial(self.writer.flush, within=5)
        self.writer.start()
        await self.pbx.start()
        self._dispatcher = asyncio.create_task(self._dispatch(), name="engine-dispatcher")
        self._ticker = asyncio.create_task(self._tick(), name="acd-ticker")
        await self._first_sync.wait()

    async def stop(self) -> None:
        for task in (self._ticker, self._dispatcher):
            if task:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self.analytics is not None:
            await self.analytics.stop()
        await self.pbx.close()
        await self.directory.close()
        await self.writer.close()
        self.db.dispose()

    async def _tick(self) -> None:
        """Overflow rules, announcements and the recording watchdog run on the clock."""
        while True:
            await asyncio.sleep(1.0)
            try:
                self.acd.tick()
                if self.app is not None:
                    self.app.check_recordings()
            except Exception:
                log.exception("tick failed")

    async def _dispatch(self) -> None:
        async for event in self.pbx.events():
            try:
                await self._handle(event)
            except Exception:
                log.exception("event %r could not be handled", event)

    async def _handle(self, event: PbxEvent) -> None:
        app = self.app
        assert app is not None
        if self._is_tap_channel(event):
            return
        if isinstance(event, ChannelEntered):
            role = event.channel.app_args[0] if event.channel.app_args else "inbound"
            if role in ("snoop", "supervisor"):
                self.supervision.on_entered(event.channel, role)
            elif role == "agent":
                app.on_agent_answered(event.channel)
            elif role == LINE_ROLE:
                app.lines.on_answered(event.channel)
            elif role == "callback":
                app.on_callback_answered(event.channel)
            elif role == "transfer":
                app.on_transfer_answered(event.channel)
            else:
                app.on_customer(event.channel)
        elif isinstance(event, ChannelHungUp | ChannelLeft) and self.supervision.owns(event.channel_id):
            self.supervision.on_hangup(event.channel_id)
        elif isinstance(event, ChannelHungUp):
            app.on_hangup(event.channel_id, event.cause_text)
        elif isinstance(event, ChannelLeft):
            app.on_hangup(event.channel_id, "left the application")
        elif isinstance(event, DtmfReceived):
            app.on_dtmf(event.channel_id, event.digit)
        elif isinstance(event, PlaybackFinished):
            app.on_playback_finished(event.playback_id)
        elif isinstance(event, RecordingChanged):
            app.on_recording(event)
        elif isinstance(event, PbxReconnected):
            self.bus.publish(Event.of(EnginePbxLink(link=event.link, up=True, reason="connected")))
            if event.link == "ari":
                await self.resync()
        elif isinstance(event, PbxDisconnected):
            self.bus.publish(Event.of(EnginePbxLink(link=event.link, up=False, reason=event.reason)))

    def _is_tap_channel(self, event: PbxEvent) -> bool:
        """The audio tap's snoop/externalMedia channels are not calls: the call flow never sees them."""
        if self.analytics is None:
            return False
        if isinstance(event, ChannelEntered):
            return self.analytics.owns(event.channel.id)
        if isinstance(event, (ChannelHungUp, ChannelLeft)):
            return self.analytics.owns(event.channel_id)
        return False

    async def resync(self) -> None:
        """Reconcile with the PBX; must run after every ARI (re)connect."""
        app = self.app
        assert app is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await self.writer.flush(within=5)
        try:
            snapshot = await self.pbx.snapshot()
        except PbxError as exc:
            log.error("resync failed: %s", exc)
            return
        if self.analytics is not None:  # live taps are not strangers to hang up
            analytics = self.analytics
            snapshot = replace(snapshot, channels=tuple(c for c in snapshot.channels if not analytics.owns(c.id)))
        stored = await asyncio.to_thread(self._open_calls)
        recovered, closed = await app.reconcile(snapshot, stored)
        self.acd.login_all()
        self.bus.publish(Event.of(EngineResynced(channels=len(snapshot.channels), calls_recovered=recovered,
                                                 calls_closed=closed)))
        log.info("resync: %d channels, %d calls recovered, %d closed", len(snapshot.channels), recovered, closed)
        self._first_sync.set()

    def _seed_affinity(self) -> None:
        """Last agent per caller over the longest affinity window, so affinity survives a restart."""
        window = max((float(q.affinity_window) for q in self.acd.config.queues.values()), default=0.0)
        if window <= 0:
            return
        now = datetime.now(UTC)
        since = now - timedelta(seconds=window)
        with Session(self.db) as session:
            rows = session.execute(select(CallRow.caller_number, CallRow.agent_id, CallRow.ended_at)
                                   .where(CallRow.ended_at >= since, CallRow.agent_id.is_not(None))
                                   .order_by(CallRow.ended_at)).all()
        for caller, agent_id, ended_at in rows:
            if agent_id is None or ended_at is None:
                continue
            ended = ended_at if ended_at.tzinfo else ended_at.replace(tzinfo=UTC)
            self.acd.remember_agent(caller, agent_id, (now - ended).total_seconds())

    def _load_callbacks(self) -> None:
        """Callbacks promised while a queue was closed and not yet settled, rebuilt from the event log."""
        with Session(self.db) as session:
            rows = session.execute(select(EventRow.type, EventRow.occurred_at, EventRow.call_id, EventRow.data)
                                   .where(EventRow.type.in_(CALLBACK_EVENTS)).order_by(EventRow.seq)).all()
        for event_type, occurred_at, call_id, data in rows:
            at = occurred_at if occurred_at.tzinfo else occurred_at.replace(tzinfo=UTC)
            self.acd.replay_callback(event_type, at, call_id, data)
        if self.acd.callbacks.pending:
            log.info("%d callback(s) promised while closed are pending", len(self.acd.callbacks.pending))

    def _open_calls(self) -> list[StoredCall]:
        with Session(self.db) as session:
            calls = session.scalars(select(CallRow).where(CallRow.ended_at.is_(None))  # re-queued in arrival order
                                    .order_by(CallRow.queued_at.asc().nulls_last(), CallRow.offered_at)).all()
            result: list[StoredCall] = []
            for call in calls:
                legs = list(session.scalars(select(LegRow).where(LegRow.call_id == call.id)
                                            .order_by(LegRow.created_at)))
                recording = session.scalars(select(RecordingRow).where(RecordingRow.call_id == call.id)
                                            .order_by(RecordingRow.started_at.desc())).first()
                last_payment = session.scalars(select(EventRow).where(EventRow.call_id == call.id,
                                                                      EventRow.type.in_(PAYMENT_EVENTS))
                                               .order_by(EventRow.seq.desc())).first()
                open_payment = (dict(last_payment.data) if last_payment is not None
                                and last_payment.type == CallPaymentStarted.TYPE else None)
                result.append((call, legs, recording, secure_windows(self.db, call.id), open_payment))
            session.expunge_all()
            return result


def pid_file(settings: Settings) -> Path:
    return settings.paths.state_dir / "engine.pid"


async def run_engine(settings: Settings, stop: asyncio.Event) -> None:
    """Run until ``stop``; SIGHUP reloads the queue definitions (`ccengine queues reload`)."""
    engine = Engine(settings)
    await engine.start()
    gc.collect()
    gc.freeze()  # start-up objects (config, modules, indexes) leave the collector's working set
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, engine.reload_queues)
    pid = pid_file(settings)
    pid.write_text(f"{os.getpid()}\n")
    from .dialer.host import CampaignHost  # blended campaigns run here, on the engine's ACD

    campaigns = CampaignHost(settings, engine.acd, engine.db, engine.app.lines if engine.app is not None else None)
    extra = campaigns.routes()
    if engine.app is not None and settings.payment.enabled:
        extra += payment_routes(engine.app.payments, engine.agent_call, AuditTrail(engine.db))
    control = await serve_control(make_control(engine.acd, settings.acd.not_ready_reasons, engine.reload_queues,
                                               extra),
                                  socket_path(settings.paths.state_dir))
    from .api.server import start_for_engine

    stop_api = await start_for_engine(engine, settings, campaigns) if settings.api.enabled else None
    log.info("engine running (ARI app %s, API on port %d)", settings.pbx.ari.app, settings.http_port)
    try:
        await stop.wait()
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        pid.unlink(missing_ok=True)
        if stop_api is not None:
            await stop_api()
        await control.cleanup()
        await campaigns.close()
        await engine.stop()
