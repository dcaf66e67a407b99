"""Supervisor listen / whisper / barge on a live call, through ARI snoop channels.

* listen: a snoop on the customer's channel hears both directions; the supervisor only hears.
* whisper: a snoop on the agent's channel hears both directions and whispers into the agent's
  ear; the customer does not hear the supervisor.
* barge: the supervisor joins the call's own bridge and is heard by both.

The supervisor's phone is originated into the application (role ``supervisor``); the snoop
channel arrives as role ``snoop``; when both are present they share a private bridge. Either
side hanging up ends the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

from ccengine.pbx.protocol import ChannelInfo, OriginateRequest, PbxAdapter, PbxError

log = logging.getLogger(__name__)
Mode = Literal["listen", "whisper", "barge"]


class SupervisionError(Exception):
    """The request cannot be served (no such call, not talking, ...); the message says why."""


@dataclass
class Session:
    id: str
    call_id: str
    mode: Mode
    supervisor: str  # user name
    call_bridge: str | None
    snoop: str | None = None
    phone: str | None = None
    bridge: str | None = None
    entered: set[str] = field(default_factory=set)
    connecting: bool = False
    ended: bool = False


class Supervision:
    def __init__(self, pbx: PbxAdapter, dial: str):
        self.pbx = pbx
        self.dial = dial  # dial string template of a supervisor's phone ({agent})
        self.sessions: dict[str, Session] = {}
        self._by_channel: dict[str, Session] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, *, call_id: str, customer: str, agent_channel: str | None, call_bridge: str | None,
                    mode: Mode, phone: str, supervisor: str) -> Session:
        """Ring the supervisor's ``phone`` and prepare what it will be connected to."""
        if mode == "whisper" and agent_channel is None:
            raise SupervisionError("whisper needs an agent on the call")
        if mode == "barge" and call_bridge is None:
            raise SupervisionError("barge needs a connected call")
        session = Session(uuid.uuid4().hex, call_id, mode, supervisor, call_bridge)
        self.sessions[session.id] = session
        try:
            if mode != "barge":
                target = customer if mode == "listen" else agent_channel
                assert target is not None
                session.snoop = await self.pbx.snoop(target, spy="both",
                                                     whisper="out" if mode == "whisper" else "none",
                                                     app_args=("snoop", session.id))
                self._by_channel[session.snoop] = session
            session.phone = await self.pbx.originate(OriginateRequest(
                endpoint=self.dial.format(agent=phone), app_args=("supervisor", session.id),
                caller_id=f"{mode} {call_id[:8]}", timeout=30))
            self._by_channel[session.phone] = session
        except PbxError:
            await self._end(session)
            raise
        return session

    def on_entered(self, channel: ChannelInfo, role: str) -> None:
        session = self.sessions.get(channel.app_args[1]) if len(channel.app_args) > 1 else None
        if session is None or session.ended:
            self._spawn(self._hangup(channel.id))
            return
        session.entered.add(role)
        if role == "supervisor":
            self._spawn(self._supervisor_in(session))
        elif "supervisor" in session.entered:
            self._spawn(self._connect(session))

    async def stop_listening(self, call_id: str) -> int:
        """End the listen sessions on ``call_id`` (its caller is about to key a card: the snoop would
        carry the tones); returns how many."""
        listening = [s for s in self.sessions.values() if s.call_id == call_id and s.mode == "listen"]
        for session in listening:
            await self._end(session)
        return len(listening)

    def owns(self, channel_id: str) -> bool:
        return channel_id in self._by_channel

    def on_hangup(self, channel_id: str) -> None:
        session = self._by_channel.pop(channel_id, None)
        if session is not None:
            self._spawn(self._end(session))

    async def _supervisor_in(self, session: Session) -> None:
        assert session.phone is not None
        await self.pbx.answer(session.phone)
        if session.mode == "barge":
            assert session.call_bridge is not None
            await self.pbx.add_to_bridge(session.call_bridge, [session.phone])
        elif "snoop" in session.entered:
            await self._connect(session)

    async def _connect(self, session: Session) -> None:
        if session.connecting or session.snoop is None or session.phone is None:
            return
        session.connecting = True
        session.bridge = await self.pbx.create_bridge()
        await self.pbx.add_to_bridge(session.bridge, [session.snoop, session.phone])

    async def _end(self, session: Session) -> None:
        if session.ended:
            return
        session.ended = True
        self.sessions.pop(session.id, None)
        for channel in (session.snoop, session.phone):
            if channel is not None:
                self._by_channel.pop(channel, None)
                await self._hangup(channel)
        if session.bridge is not None:
            with contextlib.suppress(PbxError):
                await self.pbx.destroy_bridge(session.bridge)

    async def _hangup(self, channel_id: str) -> None:
        with contextlib.suppress(PbxError):  # already gone
            await self.pbx.hangup(channel_id)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        async def guarded() -> None:
            try:
                await coro
            except Exception:
                log.exception("supervision step failed")

        task = asyncio.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
