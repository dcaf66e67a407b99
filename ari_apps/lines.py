"""Persistent ("nailed-up") agent lines: the agent's phone is called once, not for every call.

When an agent with ``connection: persistent`` becomes ready without a line, the
ACD asks for one (``Acd.dial_line``): the phone is called like any agent leg
(ARI originate, app arguments ``line,<agent>``) and, once answered, waits in
its own holding bridge (silence, or ``acd.line_hold_music``). A routed call is
delivered by moving the line into the caller's bridge - no INVITE, no ringing,
no ring-no-answer - and a zip tone tells the agent; after the call the line
goes back to its holding bridge for wrap-up. A line that drops makes the agent
not ready (``line_down``, or ``line_no_answer`` if it was never answered).

Lines survive an engine restart: the channels carry their agent in their app
arguments and the holding bridge is named after the channel, so
:meth:`AgentLines.reconcile` adopts them from the PBX snapshot.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from ccengine.acd.service import Acd
from ccengine.pbx.protocol import ChannelInfo, OriginateRequest, PbxAdapter, PbxError, PbxSnapshot

log = logging.getLogger(__name__)

ROLE = "line"  # first app argument of a line's channel
ZIP_TONE = "sound:beep"
Spawn = Callable[[Coroutine[Any, Any, None], str], object]


@dataclass
class Line:
    agent_id: str
    channel_id: str
    up: bool = False  # answered and in its holding bridge
    call_id: str | None = None  # the call it carries now

    @property
    def holding_bridge(self) -> str:
        return f"hold-{self.channel_id}"


class AgentLines:
    def __init__(self, pbx: PbxAdapter, acd: Acd, spawn: Spawn, *, agent_dial: str, ring_timeout: int,
                 hold_music: str | None):
        self.pbx = pbx
        self.acd = acd
        self._spawn = spawn
        self.agent_dial = agent_dial
        self.ring_timeout = ring_timeout
        self.hold_music = hold_music
        self.by_agent: dict[str, Line] = {}
        self.by_channel: dict[str, Line] = {}
        acd.dial_line = self._dial
        acd.drop_line = self._drop

    def owns(self, channel_id: str) -> bool:
        return channel_id in self.by_channel

    def take(self, agent_id: str, call_id: str) -> str | None:
        """The agent's idle line, now carrying ``call_id``; None if the agent has no line up."""
        line = self.by_agent.get(agent_id)
        if line is None or not line.up or line.call_id is not None:
            return None
        line.call_id = call_id
        return line.channel_id

    # -- set up and tear down ------------------------------------------------------------------
    def _dial(self, agent_id: str) -> None:
        if agent_id in self.by_agent:
            return
        line = Line(agent_id, f"line-{uuid.uuid4().hex[:16]}")
        self._track(line)
        self._spawn(self._call_phone(line), f"line-dial-{agent_id}")

    def _track(self, line: Line) -> None:
        self.by_agent[line.agent_id] = line
        self.by_channel[line.channel_id] = line

    async def _call_phone(self, line: Line) -> None:
        try:
            await self.pbx.originate(OriginateRequest(
                endpoint=self.agent_dial.format(agent=line.agent_id), app_args=(ROLE, line.agent_id),
                caller_id='"ccengine line" <line>', timeout=self.ring_timeout, channel_id=line.channel_id))
        except PbxError as exc:
            log.warning("line for agent %s could not be called (%s)", line.agent_id, exc)
            self.lost(line.channel_id)

    def on_answered(self, channel: ChannelInfo) -> None:
        """The phone answered the line: park it in its holding bridge; the agent may become ready."""
        line = self.by_channel.get(channel.id)
        if line is None or line.up:
            self._spawn(self.pbx.hangup(channel.id), "hangup-stray-line")
            return
        self._spawn(self._hold_new(line), f"line-up-{line.agent_id}")

    async def _hold_new(self, line: Line) -> None:
        try:
            await self._ensure_holding(line, exists=False)
            await self.pbx.add_to_bridge(line.holding_bridge, [line.channel_id])
        except PbxError as exc:
            log.warning("line for agent %s could not be held (%s)", line.agent_id, exc)
            with contextlib.suppress(PbxError):
                await self.pbx.hangup(line.channel_id)
            return
        if self.by_channel.get(line.channel_id) is line:  # not hung up meanwhile
            line.up = True
            self.acd.line_up(line.agent_id)

    async def _ensure_holding(self, line: Line, *, exists: bool) -> None:
        if exists:
            return
        await self.pbx.create_bridge(line.holding_bridge)
        if self.hold_music:
            await self.pbx.start_bridge_moh(line.holding_bridge, self.hold_music)

    def lost(self, channel_id: str, reason: str | None = None) -> None:
        """The line's channel hung up (or could not be created): the agent is not ready."""
        line = self.by_channel.pop(channel_id, None)
        if line is None:
            return
        if self.by_agent.get(line.agent_id) is line:
            del self.by_agent[line.agent_id]
        self.acd.line_down(line.agent_id, reason or ("line_down" if line.up else "line_no_answer"))
        self._spawn(self._destroy_holding(line), f"line-gone-{line.agent_id}")

    def _drop(self, agent_id: str) -> None:
        """The agent logged out (or is no longer on a persistent line): hang the line up."""
        line = self.by_agent.pop(agent_id, None)
        if line is None:
            return
        self.by_channel.pop(line.channel_id, None)

        async def hang_up() -> None:
            with contextlib.suppress(PbxError):
                await self.pbx.hangup(line.channel_id)
            await self._destroy_holding(line)

        self._spawn(hang_up(), f"line-drop-{agent_id}")

    async def _destroy_holding(self, line: Line) -> None:
        with contextlib.suppress(PbxError):
            await self.pbx.destroy_bridge(line.holding_bridge)

    # -- calls on the line -----------------------------------------------------------------------
    def zip_tone(self, channel_id: str) -> None:
        """A short tone to the agent as a call is put through (the caller does not hear it)."""
        async def play() -> None:
            with contextlib.suppress(PbxError):
                await self.pbx.play(channel_id, ZIP_TONE)

        self._spawn(play(), f"zip-{channel_id}")

    async def hold(self, channel_id: str) -> None:
        """The call is over: the line goes back to its holding bridge (the agent wraps up there)."""
        line = self.by_channel.get(channel_id)
        if line is None:
            return
        line.call_id = None
        await self.pbx.add_to_bridge(line.holding_bridge, [channel_id])

    # -- reconciliation --------------------------------------------------------------------------
    async def reconcile(self, snapshot: PbxSnapshot, carrying: Mapping[str, str]) -> set[str]:
        """Align the lines with the PBX after a (re)connect: lines gone are lost, live lines are
        adopted (engine restart), idle lines are put back in their holding bridge. ``carrying``
        maps line channels to the calls they carry now. Returns the line channels kept."""
        live = {c.id: c for c in snapshot.channels if c.app_args[:1] == (ROLE,)}
        bridge_of = {ch: b.id for b in snapshot.bridges for ch in b.channel_ids}
        bridges = {b.id for b in snapshot.bridges}
        for line in list(self.by_channel.values()):
            if line.channel_id not in live:
                self.lost(line.channel_id)
        for channel in live.values():
            agent_id = channel.app_args[1] if len(channel.app_args) > 1 else ""
            known = self.by_channel.get(channel.id)
            if known is not None:
                line = known
            else:
                if (channel.state != "Up" or not self.acd.persistent(agent_id) or agent_id in self.by_agent
                        or agent_id not in self.acd.agents):
                    with contextlib.suppress(PbxError):
                        await self.pbx.hangup(channel.id)
                    continue
                line = Line(agent_id, channel.id, up=True)
                self._track(line)
                log.info("adopted the persistent line of agent %s", agent_id)
            line.call_id = carrying.get(channel.id)
            held = [line.holding_bridge] if line.holding_bridge in bridges else []
            await self.pbx.watch([channel.id], held)
            if line.call_id is None and bridge_of.get(channel.id) != line.holding_bridge and line.up:
                try:
                    await self._ensure_holding(line, exists=bool(held))
                    await self.pbx.add_to_bridge(line.holding_bridge, [channel.id])
                except PbxError as exc:
                    log.warning("line of agent %s not put back on hold (%s)", agent_id, exc)
            if line.up:
                self.acd.line_up(agent_id)
        return set(self.by_channel)
