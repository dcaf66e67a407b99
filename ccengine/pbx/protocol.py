"""The one small protocol every PBX backend implements.

Call control is expressed in terms any switch offers (channels, bridges,
media, DTMF, variables, taps); backends translate. The surface is deliberately
small so a FreeSWITCH ESL backend fits it as well as Asterisk ARI/AMI.

Events arrive as typed, immutable values on one async iterator. After any
reconnect the backend emits :class:`PbxReconnected`; the consumer must then
call :meth:`PbxAdapter.snapshot` and reconcile, because a PBX does not replay
what happened while the link was down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class ChannelInfo:
    id: str
    name: str
    state: str
    caller_number: str = ""
    caller_name: str = ""
    dialed: str = ""
    created: datetime | None = None
    app_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class BridgeInfo:
    id: str
    channel_ids: tuple[str, ...]


@dataclass(frozen=True)
class PbxSnapshot:
    """What the switch holds right now, for reconciliation."""

    channels: tuple[ChannelInfo, ...]
    bridges: tuple[BridgeInfo, ...]
    taken_at: datetime


@dataclass(frozen=True)
class PbxEvent:
    received_at: datetime


@dataclass(frozen=True)
class ChannelEntered(PbxEvent):
    """A channel came under the engine's control (ARI StasisStart)."""

    channel: ChannelInfo


@dataclass(frozen=True)
class ChannelLeft(PbxEvent):
    """A channel left the engine's control without necessarily hanging up (StasisEnd)."""

    channel_id: str


@dataclass(frozen=True)
class ChannelHungUp(PbxEvent):
    channel_id: str
    cause: int = 16
    cause_text: str = "Normal Clearing"


@dataclass(frozen=True)
class ChannelStateChanged(PbxEvent):
    channel_id: str
    state: str


@dataclass(frozen=True)
class DtmfReceived(PbxEvent):
    channel_id: str
    digit: str = field(repr=False)  # may be a card digit: never in a log line
    duration_ms: int = 0


@dataclass(frozen=True)
class PlaybackFinished(PbxEvent):
    playback_id: str
    target: str
    state: str = "done"


@dataclass(frozen=True)
class RecordingChanged(PbxEvent):
    """A recording started, stopped or was muted on a channel (MixMonitor or ARI)."""

    channel_id: str
    state: str  # started | stopped | muted | unmuted | failed
    path: str = ""


@dataclass(frozen=True)
class PbxReconnected(PbxEvent):
    """A control link came (back) up; events may have been lost before it."""

    link: str  # "ari" | "ami"


@dataclass(frozen=True)
class PbxDisconnected(PbxEvent):
    link: str
    reason: str = ""


@dataclass(frozen=True)
class OriginateRequest:
    endpoint: str
    app_args: tuple[str, ...] = ()
    caller_id: str = ""
    timeout: int = 30
    variables: Mapping[str, str] = field(default_factory=dict)
    channel_id: str | None = None


class PbxError(RuntimeError):
    """A PBX request failed; ``status`` carries the backend's code when known."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ChannelGone(PbxError):
    """The channel no longer exists (it hung up meanwhile); usually benign."""


@runtime_checkable
class PbxAdapter(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    def events(self) -> AsyncIterator[PbxEvent]: ...
    async def snapshot(self) -> PbxSnapshot: ...
    async def watch(self, channel_ids: list[str], bridge_ids: list[str]) -> None:
        """Resume event delivery for channels/bridges found in a snapshot."""
    async def answer(self, channel_id: str) -> None: ...
    async def hangup(self, channel_id: str, reason: str = "normal") -> None: ...
    async def originate(self, request: OriginateRequest) -> str: ...
    async def create_bridge(self, bridge_id: str | None = None) -> str: ...
    async def add_to_bridge(self, bridge_id: str, channel_ids: list[str]) -> None: ...
    async def remove_from_bridge(self, bridge_id: str, channel_ids: list[str]) -> None: ...
    async def destroy_bridge(self, bridge_id: str) -> None: ...
    async def play(self, channel_id: str, media: str, playback_id: str | None = None) -> str: ...
    async def stop_playback(self, playback_id: str) -> None: ...
    async def start_moh(self, channel_id: str, moh_class: str = "default") -> None: ...
    async def stop_moh(self, channel_id: str) -> None: ...
    async def start_bridge_moh(self, bridge_id: str, moh_class: str = "default") -> None:
        """Music for every channel in the bridge (heard only while they are in it)."""
    async def start_silence(self, channel_id: str) -> None:
        """Send silence to a channel that is in no bridge (a recording's clock keeps running on
        the frames); a playback ends it."""
    async def stop_silence(self, channel_id: str) -> None: ...
    async def start_recording(self, channel_id: str, path: str, options: str = "") -> None: ...
    async def stop_recording(self, channel_id: str) -> None: ...
    async def unmute_recording(self, channel_id: str) -> None: ...
    async def send_dtmf(self, channel_id: str, digits: str) -> None: ...
    async def set_variable(self, channel_id: str, name: str, value: str) -> None: ...
    async def get_variable(self, channel_id: str, name: str) -> str: ...
    async def snoop(self, channel_id: str, *, spy: str = "both", whisper: str = "none",
                    app_args: tuple[str, ...] = (), snoop_id: str | None = None) -> str: ...
    async def external_media(self, host: str, *, audio_format: str = "slin16",
                             app_args: tuple[str, ...] = (), channel_id: str | None = None) -> str:
        """A channel exchanging RTP with ``host`` ("ip:port"); ids chosen by the caller are known
        before the channel's first event arrives."""
