"""Live tap wiring: per call direction, a snoop channel bridged to an externalMedia channel.

Only PbxAdapter protocol methods are used, so any backend that implements
snoop/external_media works. Each direction is tapped on its own (spy="in":
what that party says), which makes diarization of a two-leg call exact.
The tap never touches the call's own bridge or recording; tearing it down
only hangs up the channels it created. Channel ids are chosen here before
each request, so the engine recognises the tap's channels when their first
event arrives (which may be before the request returns).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from ccengine.pbx.protocol import ChannelGone, PbxAdapter, PbxError

from .events import Direction
from .rtp import Codec, RtpReceiver, StreamStats

log = logging.getLogger(__name__)


@dataclass
class TapLeg:
    direction: Direction
    channel_id: str
    stream: str
    snoop_id: str = ""
    media_id: str = ""
    bridge_id: str = ""


@dataclass
class CallTap:
    """Sets up and tears down the taps of one call; RTP goes to ``receiver`` at ``host``."""

    pbx: PbxAdapter
    receiver: RtpReceiver
    host: str  # "ip:port" the PBX sends RTP to (the receiver's address as the PBX sees it)
    call_id: str
    codec: Codec = "slin16"
    legs: list[TapLeg] = field(default_factory=list)
    channels: set[str] = field(default_factory=set)  # every channel this tap created (or is creating)
    claim: Callable[[str], None] | None = None  # told each channel id before the PBX is asked to create it
    closed: list[StreamStats] = field(default_factory=list)  # counters of legs already torn down

    async def start(self, channels: dict[Direction, str]) -> list[TapLeg]:
        """Tap each ``direction -> channel id``; a leg that fails is logged and skipped, never fatal."""
        legs = [TapLeg(direction, channel_id, f"{self.call_id}:{direction}")
                for direction, channel_id in channels.items()]
        # Both directions at once, so their frame counters start (nearly) together.
        results = await asyncio.gather(*(self._start_leg(leg) for leg in legs), return_exceptions=True)
        for leg, result in zip(legs, results, strict=True):
            if isinstance(result, PbxError):
                log.warning("tap %s %s not started: %s", self.call_id, leg.direction, result)
                await self._stop_leg(leg)
            elif isinstance(result, BaseException):
                await self._stop_leg(leg)
                raise result
            else:
                self.legs.append(leg)
        return self.legs

    async def _start_leg(self, leg: TapLeg) -> None:
        args = ("tap", self.call_id, leg.direction)
        leg.snoop_id, leg.media_id = str(uuid.uuid4()), str(uuid.uuid4())
        self.channels |= {leg.snoop_id, leg.media_id}
        if self.claim is not None:
            self.claim(leg.snoop_id)
            self.claim(leg.media_id)
        await self.pbx.snoop(leg.channel_id, spy="in", whisper="none", app_args=args, snoop_id=leg.snoop_id)
        await self.pbx.external_media(self.host, audio_format=self.codec, app_args=args, channel_id=leg.media_id)
        # Asterisk reports where it sends from; that address identifies the stream on our socket.
        addr = await self.pbx.get_variable(leg.media_id, "UNICASTRTP_LOCAL_ADDRESS")
        port = await self.pbx.get_variable(leg.media_id, "UNICASTRTP_LOCAL_PORT")
        self.receiver.register(leg.stream, self.codec, addr=(addr, int(port)))
        leg.bridge_id = await self.pbx.create_bridge()
        for attempt in range(10):
            try:
                await self.pbx.add_to_bridge(leg.bridge_id, [leg.snoop_id, leg.media_id])
                return
            except ChannelGone:
                raise
            except PbxError:
                # a new channel joins the application just after its creation request returns
                if attempt == 9:
                    raise
                await asyncio.sleep(0.05)

    async def _stop_leg(self, leg: TapLeg) -> StreamStats | None:
        stats = self.receiver.unregister(leg.stream)
        for channel in (leg.snoop_id, leg.media_id):
            if channel:
                try:
                    await self.pbx.hangup(channel)
                except ChannelGone:
                    pass
                except PbxError as exc:
                    log.warning("tap %s: hangup %s failed: %s", self.call_id, channel, exc)
        if leg.bridge_id:
            try:
                await self.pbx.destroy_bridge(leg.bridge_id)
            except PbxError as exc:
                log.debug("tap %s: bridge %s: %s", self.call_id, leg.bridge_id, exc)
        return stats

    async def stop_direction(self, direction: Direction) -> None:
        """Untap one direction (its party left the call, e.g. an agent released by a transfer)."""
        leaving = [leg for leg in self.legs if leg.direction == direction]
        self.legs = [leg for leg in self.legs if leg.direction != direction]
        stats = await asyncio.gather(*(self._stop_leg(leg) for leg in leaving))
        self.closed += [s for s in stats if s is not None]

    async def stop(self) -> list[StreamStats]:
        """Tear every leg down; returns the receiver's counters of every leg the call had (frames, drops, losses)."""
        stats = await asyncio.gather(*(self._stop_leg(leg) for leg in self.legs))
        self.legs = []
        return self.closed + [s for s in stats if s is not None]
