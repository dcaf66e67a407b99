"""Asterisk backend of :class:`~ccengine.pbx.protocol.PbxAdapter`.

ARI carries call control and per-channel events for the engine's Stasis
application; AMI carries what ARI lacks (MixMonitor, system-wide channel
lists, recording tamper signals). Both links feed one bounded event queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from ...config import PbxSettings
from ..protocol import (
    BridgeInfo,
    ChannelEntered,
    ChannelGone,
    ChannelHungUp,
    ChannelInfo,
    ChannelLeft,
    ChannelStateChanged,
    DtmfReceived,
    OriginateRequest,
    PbxDisconnected,
    PbxError,
    PbxEvent,
    PbxReconnected,
    PbxSnapshot,
    PlaybackFinished,
    RecordingChanged,
)
from .ami import AmiClient, AmiEvent
from .ari import AriClient, Json

log = logging.getLogger(__name__)

_MIXMONITOR_STATES = {"mixmonitorstart": "started", "mixmonitorstop": "stopped"}


def _now() -> datetime:
    return datetime.now(UTC)


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z")
    except ValueError:
        return None


def channel_from_json(data: Json, args: list[str] | None = None) -> ChannelInfo:
    caller = data.get("caller") or {}
    dialplan = data.get("dialplan") or {}
    if args is None:
        app_data = str(dialplan.get("app_data", ""))
        args = app_data.split(",")[1:] if dialplan.get("app_name") == "Stasis" else []
    return ChannelInfo(
        id=data["id"], name=data.get("name", ""), state=data.get("state", ""),
        caller_number=caller.get("number", ""), caller_name=caller.get("name", ""),
        dialed=str(dialplan.get("exten", "")), created=_parse_time(data.get("creationtime")),
        app_args=tuple(args),
    )


def translate_ari(message: Json) -> PbxEvent | None:
    """Map one ARI event to a protocol event (None for events the engine ignores)."""
    kind = message.get("type")
    now = _now()
    channel = message.get("channel") or {}
    if kind == "StasisStart":
        return ChannelEntered(now, channel_from_json(channel, list(message.get("args", []))))
    if kind == "StasisEnd":
        return ChannelLeft(now, channel["id"])
    if kind in ("ChannelHangupRequest", "ChannelDestroyed"):
        # Asterisk stops sending a channel's events once it leaves the application, so
        # ChannelDestroyed may never come: the hang-up request is the reliable signal.
        cause = int(message.get("cause", 16))
        return ChannelHungUp(now, channel["id"], cause, message.get("cause_txt", "") or f"cause {cause}")
    if kind == "ChannelDtmfReceived":
        return DtmfReceived(now, channel["id"], message["digit"], int(message.get("duration_ms", 0)))
    if kind == "ChannelStateChange":
        return ChannelStateChanged(now, channel["id"], channel.get("state", ""))
    if kind == "PlaybackFinished":
        playback = message["playback"]
        target = str(playback.get("target_uri", "")).partition(":")[2]
        return PlaybackFinished(now, playback["id"], target, playback.get("state", "done"))
    return None


def translate_ami(event: AmiEvent) -> PbxEvent | None:
    name = str(event.get("Event", "")).lower()
    now = _now()
    if name in _MIXMONITOR_STATES:
        return RecordingChanged(now, event.get("Uniqueid", ""), _MIXMONITOR_STATES[name])
    if name == "mixmonitormute":
        state = "muted" if event.get("State") in ("1", "on", "true") else "unmuted"
        return RecordingChanged(now, event.get("Uniqueid", ""), state)
    return None


class AsteriskAdapter:
    def __init__(self, settings: PbxSettings):
        self.settings = settings
        self.ari = AriClient(settings.ari.url, settings.ari.username, settings.ari.password, settings.ari.app,
                             max_backoff=settings.reconnect_max_delay)
        self.ami = AmiClient(settings.ami.host, settings.ami.port, settings.ami.username, settings.ami.secret,
                             ping_interval=settings.ami.ping_interval, ping_timeout=settings.ami.ping_timeout,
                             max_backoff=settings.reconnect_max_delay, queue_size=settings.event_queue_size)
        self._events: asyncio.Queue[PbxEvent] = asyncio.Queue(maxsize=settings.event_queue_size)
        self._names: dict[str, str] = {}
        self._ami_pump: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.ami.start(self._link("ami"), wait=False)
        self._ami_pump = asyncio.create_task(self._pump_ami(), name="ami-pump")
        await self.ari.start(self._on_ari, self._link("ari"))

    async def close(self) -> None:
        if self._ami_pump:
            self._ami_pump.cancel()
            await asyncio.gather(self._ami_pump, return_exceptions=True)
        await self.ari.close()
        await self.ami.close()

    def _link(self, name: str) -> Any:
        async def on_link(up: bool, reason: str) -> None:
            event: PbxEvent = PbxReconnected(_now(), name) if up else PbxDisconnected(_now(), name, reason)
            await self._events.put(event)
        return on_link

    async def _on_ari(self, message: Json) -> None:
        event = translate_ari(message)
        if event is None:
            return
        if isinstance(event, ChannelEntered):
            self._names[event.channel.id] = event.channel.name
        elif isinstance(event, ChannelHungUp):
            self._names.pop(event.channel_id, None)
        await self._events.put(event)

    async def _pump_ami(self) -> None:
        while True:
            raw = await self.ami.queue.get()
            event = translate_ami(raw)
            if event is not None:
                await self._events.put(event)

    async def events(self) -> AsyncIterator[PbxEvent]:
        while True:
            event = await self._events.get()
            yield event

    # -- reconciliation -------------------------------------------------------------------------
    async def snapshot(self) -> PbxSnapshot:
        """Channels and bridges of the engine's application, from ARI (AMI if ARI is down)."""
        app = self.settings.ari.app
        try:
            channels = await self.ari.request("GET", "/channels")
            bridges = await self.ari.request("GET", "/bridges")
        except PbxError:
            return await self._ami_snapshot()
        mine = tuple(
            channel_from_json(c) for c in channels
            if (c.get("dialplan") or {}).get("app_name") == "Stasis"
            and str((c.get("dialplan") or {}).get("app_data", "")).split(",")[0] == app
        )
        for channel in mine:
            self._names[channel.id] = channel.name
        return PbxSnapshot(
            channels=mine,
            bridges=tuple(BridgeInfo(b["id"], tuple(b.get("channels", []))) for b in bridges),
            taken_at=_now(),
        )

    async def _ami_snapshot(self) -> PbxSnapshot:
        rows = await self.ami.action({"Action": "CoreShowChannels"}, as_list=True)
        app = self.settings.ari.app
        channels = tuple(
            ChannelInfo(id=r.get("Uniqueid", ""), name=r.get("Channel", ""), state=r.get("ChannelStateDesc", ""),
                        caller_number=r.get("CallerIDNum", ""), dialed=r.get("Exten", ""),
                        app_args=tuple(str(r.get("ApplicationData", "")).split(",")[1:]))
            for r in rows
            if r.get("Event") == "CoreShowChannel" and r.get("Application") == "Stasis"
            and str(r.get("ApplicationData", "")).split(",")[0] == app
        )
        return PbxSnapshot(channels=channels, bridges=(), taken_at=_now())

    async def watch(self, channel_ids: list[str], bridge_ids: list[str]) -> None:
        sources = [f"channel:{c}" for c in channel_ids] + [f"bridge:{b}" for b in bridge_ids]
        if sources:
            await self.ari.request("POST", f"/applications/{self.settings.ari.app}/subscription",
                                   params={"eventSource": sources})

    # -- call control ---------------------------------------------------------------------------
    async def answer(self, channel_id: str) -> None:
        await self.ari.request("POST", f"/channels/{channel_id}/answer")

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        with contextlib.suppress(ChannelGone):
            await self.ari.request("DELETE", f"/channels/{channel_id}", params={"reason": reason})

    async def originate(self, request: OriginateRequest) -> str:
        channel_id = request.channel_id or str(uuid.uuid4())
        body = {"variables": dict(request.variables)} if request.variables else None
        await self.ari.request("POST", "/channels", params={
            "endpoint": request.endpoint, "app": self.settings.ari.app,
            "appArgs": list(request.app_args) or None, "callerId": request.caller_id or None,
            "timeout": request.timeout, "channelId": channel_id,
        }, body=body)
        return channel_id

    async def create_bridge(self, bridge_id: str | None = None) -> str:
        bridge_id = bridge_id or str(uuid.uuid4())
        await self.ari.request("POST", f"/bridges/{bridge_id}", params={"type": "mixing"})
        return bridge_id

    async def add_to_bridge(self, bridge_id: str, channel_ids: list[str]) -> None:
        await self.ari.request("POST", f"/bridges/{bridge_id}/addChannel", params={"channel": channel_ids})

    async def remove_from_bridge(self, bridge_id: str, channel_ids: list[str]) -> None:
        await self.ari.request("POST", f"/bridges/{bridge_id}/removeChannel", params={"channel": channel_ids})

    async def destroy_bridge(self, bridge_id: str) -> None:
        with contextlib.suppress(ChannelGone):
            await self.ari.request("DELETE", f"/bridges/{bridge_id}")

    async def play(self, channel_id: str, media: str, playback_id: str | None = None) -> str:
        playback_id = playback_id or str(uuid.uuid4())
        await self.ari.request("POST", f"/channels/{channel_id}/play",
                               params={"media": media, "playbackId": playback_id})
        return playback_id

    async def stop_playback(self, playback_id: str) -> None:
        with contextlib.suppress(ChannelGone):
            await self.ari.request("DELETE", f"/playbacks/{playback_id}")

    async def start_moh(self, channel_id: str, moh_class: str = "default") -> None:
        await self.ari.request("POST", f"/channels/{channel_id}/moh", params={"mohClass": moh_class})

    async def stop_moh(self, channel_id: str) -> None:
        await self.ari.request("DELETE", f"/channels/{channel_id}/moh")

    async def start_bridge_moh(self, bridge_id: str, moh_class: str = "default") -> None:
        await self.ari.request("POST", f"/bridges/{bridge_id}/moh", params={"mohClass": moh_class})

    async def start_silence(self, channel_id: str) -> None:
        await self.ari.request("POST", f"/channels/{channel_id}/silence")

    async def stop_silence(self, channel_id: str) -> None:
        await self.ari.request("DELETE", f"/channels/{channel_id}/silence")

    async def _channel_name(self, channel_id: str) -> str:
        name = self._names.get(channel_id)
        if name is None:
            data = await self.ari.request("GET", f"/channels/{channel_id}")
            name = str(data["name"])
            self._names[channel_id] = name
        return name

    async def start_recording(self, channel_id: str, path: str, options: str = "") -> None:
        """MixMonitor on the channel: both directions, from now until hangup."""
        action = {"Action": "MixMonitor", "Channel": await self._channel_name(channel_id), "File": path}
        if options:
            action["Options"] = options
        await self.ami.action(action)

    async def stop_recording(self, channel_id: str) -> None:
        await self.ami.action({"Action": "StopMixMonitor", "Channel": await self._channel_name(channel_id)})

    async def unmute_recording(self, channel_id: str) -> None:
        await self.ami.action({"Action": "MixMonitorMute", "Channel": await self._channel_name(channel_id),
                               "Direction": "both", "State": "0"})

    async def send_dtmf(self, channel_id: str, digits: str) -> None:
        await self.ari.request("POST", f"/channels/{channel_id}/dtmf", params={"dtmf": digits})

    async def set_variable(self, channel_id: str, name: str, value: str) -> None:
        await self.ari.request("POST", f"/channels/{channel_id}/variable",
                               params={"variable": name, "value": value})

    async def get_variable(self, channel_id: str, name: str) -> str:
        data = await self.ari.request("GET", f"/channels/{channel_id}/variable", params={"variable": name})
        return str(data.get("value", ""))

    async def snoop(self, channel_id: str, *, spy: str = "both", whisper: str = "none",
                    app_args: tuple[str, ...] = (), snoop_id: str | None = None) -> str:
        snoop_id = snoop_id or str(uuid.uuid4())
        await self.ari.request("POST", f"/channels/{channel_id}/snoop", params={
            "spy": spy, "whisper": whisper, "app": self.settings.ari.app,
            "appArgs": list(app_args) or None, "snoopId": snoop_id})
        return snoop_id

    async def external_media(self, host: str, *, audio_format: str = "slin16",
                             app_args: tuple[str, ...] = (), channel_id: str | None = None) -> str:
        channel_id = channel_id or str(uuid.uuid4())
        await self.ari.request("POST", "/channels/externalMedia", params={
            "channelId": channel_id, "app": self.settings.ari.app, "external_host": host,
            "format": audio_format, "data": ",".join(app_args) or None})
        return channel_id
